"""Workarounds for moto defects that the local target meets, each with the defect it fixes.

They patch the moto running in this process (the embedded ThreadedMotoServer of
:mod:`mlserve.local.aws`); :func:`apply` is idempotent.
"""

from __future__ import annotations

import json
from typing import Any, Final

# The Deny statement of a TLS-only bucket policy: every request over plain HTTP is refused.
INSECURE_TRANSPORT: Final = {"Bool": {"aws:SecureTransport": "false"}}


def _is_tls_only_deny(statement: Any) -> bool:
    return (
        isinstance(statement, dict)
        and statement.get("Effect") == "Deny"
        and statement.get("Condition") == INSECURE_TRANSPORT
    )


def _bucket_permission_over_tls(bucket: Any, action: str, resource: str) -> Any:
    """moto's FakeBucket.get_permission, with the request taken as made over TLS.

    moto defect (moto 5.2, moto/iam/access_control.py IAMPolicyStatement._check_conditions):
    a bucket-policy statement whose Condition moto cannot evaluate (it passes no request context,
    so aws:SecureTransport has no value) answers DENIED whatever its Effect, so a TLS-only policy
    (Deny s3:* when aws:SecureTransport is false) refuses every request, PutObject included.
    Every request in the emulator stands for one boto3 makes over HTTPS to AWS (the loopback
    endpoint is plain HTTP only because it is local), under which that statement never applies:
    it is left out of the evaluation. The stored policy (GetBucketPolicy) is unchanged.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(bucket.policy.decode())
    statements = document.get("Statement")
    if not isinstance(statements, list):
        statements = [statements]
    kept = [s for s in statements if not _is_tls_only_deny(s)]
    if not kept:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(
        action, resource
    )


def apply() -> None:
    """Install every workaround in this process's moto."""
    from moto.s3.models import FakeBucket

    FakeBucket.get_permission = _bucket_permission_over_tls  # type: ignore[method-assign,assignment]


# The keys of an OpenAPI Path Item that are operations (everything else is shared by them).
HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})


def openapi_for_moto(document: dict[str, Any]) -> dict[str, Any]:
    """The same API with path-level fields folded into the operations, for PutRestApi.

    moto defect (moto 5.2, moto/apigateway/models.py put_rest_api): every key of a Path Item is
    taken for an HTTP method, so a path-level ``parameters`` list (valid OpenAPI 3, e.g. the
    ``{id}`` of /jobs/{id}) fails the import with a 500 ('list' object has no attribute 'get').
    Path-level parameters apply to every operation of the path unless an operation redefines
    one (same name and location), so they are copied into the operations; path-level
    ``summary``/``description``/``servers`` describe nothing moto imports. The Deployment keeps
    the program's document unchanged.
    """
    paths: dict[str, Any] = {}
    for path, item in document.get("paths", {}).items():
        shared = item.get("parameters", [])
        operations: dict[str, Any] = {}
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            own = operation.get("parameters", [])
            redefined = {(p.get("name"), p.get("in")) for p in own if isinstance(p, dict)}
            inherited = [
                p
                for p in shared
                if not (isinstance(p, dict) and (p.get("name"), p.get("in")) in redefined)
            ]
            operations[method] = (
                {**operation, "parameters": [*inherited, *own]} if inherited or own else operation
            )
        paths[path] = operations
    return {**document, "paths": paths}


def batch_service_role(iam: Any) -> str:
    """The ARN of AWS Batch's service-linked role, created as AWS creates it on first use.

    moto defect (moto 5.2, moto/batch/models.py create_compute_environment): a managed compute
    environment without ``serviceRole`` is refused ("ServiceRole is required"), while AWS Batch
    then uses its service-linked role AWSServiceRoleForBatch, creating it if needed. The mapper
    passes that role explicitly, so moto accepts what AWS accepts.
    """
    path = "/aws-service-role/batch.amazonaws.com/"
    existing = iam.list_roles(PathPrefix=path)["Roles"]
    if existing:
        return str(existing[0]["Arn"])
    created = iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")
    return str(created["Role"]["Arn"])

"""Who calls which AWS action on which resource, while the emulator runs (least-privilege proof).

Off unless ``MLSERVE_RECORD_CALLS`` names a directory: then every boto3 call made on behalf of an
identity of the emulated stack is appended, as one JSON line, to ``calls-<pid>.jsonl`` there, with
the IAM action and resource ARN(s) AWS would authorise it against, and the condition keys that
request carries (``ecs:cluster``, ``s3:prefix``, ``iam:PassedToService``). tests/verify/
test_least_privilege.py evaluates them against the role policies the program deployed
(:func:`describe`: GetRolePolicy of every role, and who assumes which).

The identities:

- a Lambda function: :class:`mlserve.local.functions.LocalFunction` ``invoke`` runs the handler
  under :func:`acting_as` (a thread-local: the handlers make their calls in the invoking thread);
- a state machine: the calls of moto's Step Functions engine (its clients sign with the access
  key ``"ak"``), attributed to the state machine of the execution found on the call stack;
- the ECS task role and the Batch job role: the scoring processes are started through
  ``python -m mlserve.local.recorded_entry <file> <identity> runtime.scoring ...`` (see
  :func:`entrypoint`), which installs the same hook and then runs the module as ``__main__``.
  runtime/ knows nothing of this.

Each call also records its call site in runtime/ (``site``: the innermost runtime/ frame's path
and line, which mlserve/callsites.py maps to a named site); a request boto3's S3 transfer threads
send for ``upload_file`` gets the site of that ``upload_file`` call.

Calls made by nobody of the stack (the emulator provisioning, the tests' own checks) are not
recorded. One line per call *attempt*, before it is sent: a call that fails still needed its grant.
Each emulator start also writes a ``stack`` line: the ARNs the policies are built from.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from mlserve.local import container
from mlserve.local.aws import ACCOUNT_ID, REGION
from runtime import contract

RECORD_ENV = "MLSERVE_RECORD_CALLS"
ENTRY_MODULE = "mlserve.local.recorded_entry"  # python -m it FILE IDENTITY MODULE ARGS...
# moto's Step Functions engine signs its clients with this access key
# (moto.stepfunctions.parser.asl.utils.boto_client.boto_client_for).
ENGINE_ACCESS_KEY = "ak"
ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"
# The id standing for the job a SubmitJob creates (IAM authorises it on the new job's ARN).
NEW_BATCH_JOB_ID = "00000000-0000-0000-0000-000000000000"

_state = threading.local()
_write_lock = threading.Lock()
_install_lock = threading.Lock()
_installed: dict[str, Any] = {}  # "original" -> BaseClient._make_api_call, "file" -> path
_stack: dict[str, str] = {"id": ""}


class UnmappedCall(Exception):
    """A recorded call of an operation this module does not know the IAM action/resource of."""


# --- turning a call into what IAM authorises ---
def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _table(name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"


def _ecs_cluster(value: str | None) -> str:
    value = value or "default"
    if value.startswith("arn:"):
        return value
    return f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/{value}"


def _ecs_task(cluster_arn: str, task: str) -> str:
    if task.startswith("arn:"):
        return task
    return f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/{cluster_arn.rsplit('/', 1)[-1]}/{task}"


def _ecs_task_definition(value: str) -> tuple[str, str | None, str | None]:
    """(task definition ARN, task role ARN, execution role ARN), asking moto's ECS backend
    in-process (the function runs in the emulator's process; ``family`` or ``family:rev``)."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[ACCOUNT_ID][REGION]
    definition = backend.describe_task_definition(value)
    return (
        str(definition.arn),
        getattr(definition, "task_role_arn", None),
        getattr(definition, "execution_role_arn", None),
    )


def _batch_arn(kind: str, value: str) -> str:
    if value.startswith("arn:"):
        return value
    if kind == "job-definition" and ":" not in value:
        from moto.batch.models import batch_backends

        found = batch_backends[ACCOUNT_ID][REGION].get_job_definition(value)
        return str(found.arn) if found is not None else value
    return f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:{kind}/{value}"


def _function(name: str, qualifier: str | None) -> str:
    arn = (
        name
        if name.startswith("arn:")
        else (f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
    )
    return f"{arn}:{qualifier}" if qualifier and arn.count(":") == 6 else arn


Authorisation = tuple[str, str, dict[str, str]]  # (action, resource ARN, condition keys)

_S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
}


def _s3(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    if operation in _S3_OBJECT_ACTIONS:
        return [(_S3_OBJECT_ACTIONS[operation], _s3_object(p["Bucket"], p["Key"]), {})]
    if operation == "CopyObject":
        source = p["CopySource"]
        if isinstance(source, str):
            src_bucket, _, src_key = source.lstrip("/").partition("/")
        else:
            src_bucket, src_key = source["Bucket"], source["Key"]
        return [
            ("s3:GetObject", _s3_object(src_bucket, src_key), {}),
            ("s3:PutObject", _s3_object(p["Bucket"], p["Key"]), {}),
        ]
    if operation in ("ListObjectsV2", "ListObjects"):
        context = {"s3:prefix": str(p.get("Prefix", ""))}
        return [("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", context)]
    if operation == "DeleteObjects":
        objects = p["Delete"]["Objects"]
        return [("s3:DeleteObject", _s3_object(p["Bucket"], o["Key"]), {}) for o in objects]
    return None


_DYNAMODB_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _dynamodb(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Scan", "Query"):
        resource = _table(p["TableName"])
        if p.get("IndexName"):
            resource = f"{resource}/index/{p['IndexName']}"
        return [(f"dynamodb:{operation}", resource, {})]
    if operation == "TransactWriteItems":
        return [
            (f"dynamodb:{_DYNAMODB_TRANSACT[kind]}", _table(body["TableName"]), {})
            for item in p["TransactItems"]
            for kind, body in item.items()
        ]
    return None


def _ecs(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    cluster = _ecs_cluster(p.get("cluster"))
    if operation == "RunTask":
        definition, task_role, execution_role = _ecs_task_definition(p["taskDefinition"])
        found: list[Authorisation] = [("ecs:RunTask", definition, {"ecs:cluster": cluster})]
        overrides = p.get("overrides") or {}
        for role in (
            overrides.get("taskRoleArn") or task_role,
            overrides.get("executionRoleArn") or execution_role,
        ):
            if role:  # ECS checks that the caller may pass the task's roles
                found.append(("iam:PassRole", role, {"iam:PassedToService": ECS_TASKS_SERVICE}))
        return found
    if operation == "DescribeTasks":
        context = {"ecs:cluster": cluster}
        return [("ecs:DescribeTasks", _ecs_task(cluster, t), context) for t in p["tasks"]]
    if operation == "StopTask":
        return [("ecs:StopTask", _ecs_task(cluster, p["task"]), {"ecs:cluster": cluster})]
    return None


def _states(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    if operation == "StartExecution":
        return [("states:StartExecution", p["stateMachineArn"], {})]
    if operation in ("StopExecution", "DescribeExecution", "GetExecutionHistory"):
        return [(f"states:{operation}", p["executionArn"], {})]
    return None


def _batch(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    if operation == "SubmitJob":
        found: list[Authorisation] = [
            ("batch:SubmitJob", _batch_arn("job-queue", p["jobQueue"]), {}),
            ("batch:SubmitJob", _batch_arn("job-definition", p["jobDefinition"]), {}),
            # and on the job it creates (its id is not known before: a new job's ARN)
            ("batch:SubmitJob", _batch_arn("job", NEW_BATCH_JOB_ID), {}),
        ]
        if p.get("tags"):  # tags on create: batch:TagResource on the new job
            found.append(("batch:TagResource", _batch_arn("job", NEW_BATCH_JOB_ID), {}))
        return found
    if operation == "DescribeJobs":
        return [("batch:DescribeJobs", "*", {})]  # no resource-level permissions
    if operation in ("TerminateJob", "CancelJob"):
        return [(f"batch:{operation}", _batch_arn("job", p["jobId"]), {})]
    return None


def _lambda(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    if operation == "Invoke":
        return [("lambda:InvokeFunction", _function(p["FunctionName"], p.get("Qualifier")), {})]
    return None


def _logs(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    if operation in ("CreateLogStream", "PutLogEvents"):
        group = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{p['logGroupName']}"
        return [(f"logs:{operation}", f"{group}:log-stream:{p['logStreamName']}", {})]
    return None


def _sts(operation: str, p: dict[str, Any]) -> list[Authorisation] | None:
    return [] if operation == "GetCallerIdentity" else None  # it needs no permission


_SERVICES = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "ecs": _ecs,
    "stepfunctions": _states,
    "batch": _batch,
    "lambda": _lambda,
    "logs": _logs,
    "sts": _sts,
}


_ACTION_PREFIXES = {"stepfunctions": "states"}
_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
}
_ACTIONS |= {("s3", op): (action,) for op, action in _S3_OBJECT_ACTIONS.items()}
_ACTIONS |= {
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("lambda", "Invoke"): ("lambda:InvokeFunction",),
    ("sts", "GetCallerIdentity"): (),
}


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """The IAM actions an API operation is authorised as (whatever the resource), as
    :func:`authorisations` maps them: ``("s3", "HeadObject")`` -> ``("s3:GetObject",)``."""
    found = _ACTIONS.get((service, operation))
    if found is not None:
        return found
    return (f"{_ACTION_PREFIXES.get(service, service)}:{operation}",)


def authorisations(service: str, operation: str, params: dict[str, Any]) -> list[Authorisation]:
    """What IAM evaluates for one API call: ``[(action, resource, condition keys), ...]``.

    The service authorisation reference's resource types and condition keys for each action
    (an ``s3:HeadObject`` is authorised as ``s3:GetObject`` on the object; ``ecs:RunTask`` on
    the task definition with ``ecs:cluster``, plus ``iam:PassRole`` of the task definition's
    roles to ``ecs-tasks.amazonaws.com``). Raises :class:`UnmappedCall` for anything else.
    """
    mapper = _SERVICES.get(service)
    found = None if mapper is None else mapper(operation, params)
    if found is None:
        raise UnmappedCall(f"no IAM mapping for {service}:{operation}")
    return found


# --- the hook ---
def _engine_identity() -> dict[str, str]:
    """The state machine whose execution made this call: the engine passes its ``env``
    (moto.stepfunctions.parser.asl.eval.environment.Environment) down every frame."""
    frame = sys._getframe(2)
    while frame is not None:
        env = frame.f_locals.get("env")
        states = getattr(env, "states", None)
        if states is not None:
            data = states.context_object.context_object_data
            return {"kind": "state-machine", "arn": str(data["StateMachine"]["Id"])}
        frame = frame.f_back  # type: ignore[assignment]
    # the engine's client, but no execution found: recorded so that the test reports it
    return {"kind": "state-machine", "arn": "unknown"}


def _identity(client: Any) -> dict[str, str] | None:
    return _signer_identity(client._request_signer)


def _signer_identity(signer: Any) -> dict[str, str] | None:
    stack = getattr(_state, "identity", None)
    if stack:
        return dict(stack[-1])
    credentials = getattr(signer, "_credentials", None)
    if credentials is not None and credentials.access_key == ENGINE_ACCESS_KEY:
        return _engine_identity()
    process = _installed.get("process_identity")  # a scoring process: every thread of it
    return dict(process) if process else None


def _write(line: dict[str, Any]) -> None:
    path = _installed.get("file")
    if not path:
        return
    text = json.dumps(line, default=str) + "\n"
    with _write_lock, open(path, "a", encoding="utf-8") as out:
        out.write(text)


def _site(client: Any) -> dict[str, Any] | None:
    """Where in runtime/ this call was made: the innermost runtime/ frame of this thread, else
    (a transfer thread of boto3's S3 upload_file) the site of the transfer using ``client``."""
    from mlserve.callsites import runtime_frames

    found = next(runtime_frames(sys._getframe(3)), None)
    if found is None:
        return _transfer_sites.get(id(client))
    return {"path": found[0], "line": found[1]}


def _record(client: Any, operation: str, params: dict[str, Any]) -> None:
    identity = _identity(client)
    if identity is not None:
        service = client.meta.service_model.service_name
        _write(_line(identity, service, operation, params, site=_site(client)))


def _line(
    identity: dict[str, str], service: str, operation: str, params: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The record of one call: who, what, and the authorisations IAM checks for it."""
    line: dict[str, Any] = {
        "type": "call",
        "identity": identity,
        "service": service,
        "operation": operation,
        **extra,
    }
    try:
        line["authorisations"] = [
            {"action": action, "resource": resource, "context": context}
            for action, resource, context in authorisations(service, operation, params)
        ]
    except Exception as exc:  # recorded: the test fails on it, the call goes on
        line["error"] = f"{type(exc).__name__}: {exc}"
    return line


def _record_presign(signer: Any, request: dict[str, Any], operation: str) -> None:
    """A presigned S3 URL (result_url, an upload URL): whoever uses it is authorised as the
    signer, so the signing identity needs the grant; recorded like a call of that operation on
    the object the URL names (path-style on the emulator: ``/bucket/key``)."""
    from urllib.parse import unquote, urlsplit

    identity = _signer_identity(signer)
    if identity is None:
        return
    service = str(getattr(signer, "signing_name", "") or "s3")
    bucket, _, key = unquote(urlsplit(str(request.get("url", ""))).path).lstrip("/").partition("/")
    params = {"Bucket": bucket, "Key": key}
    _write(_line(identity, service, operation, params, presigned=True, site=_site(signer)))


def _install(path: str) -> None:
    from botocore.client import BaseClient
    from botocore.signers import RequestSigner

    with _install_lock:
        _installed["file"] = path
        if "original" in _installed:
            return
        original = BaseClient._make_api_call
        _installed["original"] = original
        original_presign = RequestSigner.generate_presigned_url
        _installed["original_presign"] = original_presign

        def _make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            _record(self, operation_name, api_params)
            return original(self, operation_name, api_params)

        def generate_presigned_url(
            self: Any, request_dict: dict[str, Any], operation_name: str, *args: Any, **kw: Any
        ) -> Any:
            _record_presign(self, request_dict, operation_name)
            return original_presign(self, request_dict, operation_name, *args, **kw)

        BaseClient._make_api_call = _make_api_call
        RequestSigner.generate_presigned_url = generate_presigned_url
        _install_transfer_sites()
        _install_object_reader()


def _install_object_reader() -> None:
    """The predictor's GetObject without boto3 (runtime/s3object.py) is recorded like a boto3
    call of the same operation, with the runtime/ site that made it."""
    from mlserve.callsites import runtime_frames
    from runtime.s3object import OPERATION, SERVICE, ObjectReader

    original = ObjectReader.get_object
    _installed["object_reader"] = original

    def get_object(self: Any, **params: Any) -> Any:
        stack = getattr(_state, "identity", None)
        identity = dict(stack[-1]) if stack else _installed.get("process_identity")
        if identity is not None:
            found = next(runtime_frames(sys._getframe(1)), None)
            site = {"path": found[0], "line": found[1]} if found else None
            _write(_line(dict(identity), SERVICE, OPERATION, params, site=site))
        return original(self, **params)

    ObjectReader.get_object = get_object  # type: ignore[method-assign]


_transfer_sites: dict[int, dict[str, Any]] = {}  # id(client) -> the running transfer's site


def _install_transfer_sites() -> None:
    """While ``S3Transfer.upload_file``/``download_file`` run, the requests their worker
    threads send with the transfer's client belong to the calling runtime/ site."""
    from boto3.s3.transfer import S3Transfer

    from mlserve.callsites import runtime_frames

    for name in ("upload_file", "download_file"):
        original = getattr(S3Transfer, name)
        _installed[f"transfer.{name}"] = original

        def wrapper(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            client = getattr(getattr(self, "_manager", None), "_client", None)
            found = next(runtime_frames(sys._getframe(1)), None)
            if client is None or found is None:
                return __original(self, *args, **kwargs)
            _transfer_sites[id(client)] = {"path": found[0], "line": found[1]}
            try:
                return __original(self, *args, **kwargs)
            finally:
                _transfer_sites.pop(id(client), None)

        setattr(S3Transfer, name, wrapper)


def uninstall() -> None:
    """Stop recording in this process (the hook off, the file forgotten)."""
    from botocore.client import BaseClient
    from botocore.signers import RequestSigner

    with _install_lock:
        original = _installed.pop("original", None)
        if original is not None:
            BaseClient._make_api_call = original
            from boto3.s3.transfer import S3Transfer

            for name in ("upload_file", "download_file"):
                setattr(S3Transfer, name, _installed.pop(f"transfer.{name}"))
        reader = _installed.pop("object_reader", None)
        if reader is not None:
            from runtime.s3object import ObjectReader

            ObjectReader.get_object = reader  # type: ignore[method-assign]
        original_presign = _installed.pop("original_presign", None)
        if original_presign is not None:
            RequestSigner.generate_presigned_url = original_presign
        _installed.clear()


def _record_dir() -> str | None:
    return os.environ.get(RECORD_ENV) or None


def active() -> bool:
    return "original" in _installed


@contextlib.contextmanager
def acting_as(kind: str, name: str) -> Iterator[None]:
    """The calls made in this thread meanwhile are ``kind`` ``name``'s (e.g. a function)."""
    if not active():
        yield
        return
    stack = getattr(_state, "identity", None)
    if stack is None:
        stack = _state.identity = []
    stack.append({"kind": kind, "name": name, "stack": _stack["id"]})
    try:
        yield
    finally:
        stack.pop()


def command(module: str, kind: str, args: Sequence[str] = ()) -> list[str]:
    """The argv of the local process that runs ``module`` as ``kind`` (``ecs-task``,
    ``batch-job``): the container's (mlserve.local.container), or, while recording, through
    this module's recording wrapper."""
    path = _installed.get("file")
    if not active() or not path:
        return container.command(module, args)
    identity = json.dumps({"kind": kind, "stack": _stack["id"]})
    return [sys.executable, "-m", ENTRY_MODULE, path, identity, module, *args]


def deployed(emulator: Any) -> None:
    """Called when an emulator has started: start recording if ``MLSERVE_RECORD_CALLS`` is set,
    and write the stack's ARNs (what the policies are built from)."""
    directory = _record_dir()
    if directory is None:
        return
    os.makedirs(directory, exist_ok=True)
    _install(os.path.join(directory, f"calls-{os.getpid()}.jsonl"))
    _stack["id"] = f"{os.getpid()}-{id(emulator)}-{len(_installed)}-{os.urandom(4).hex()}"
    _write({"type": "stack", "id": _stack["id"], **_describe(emulator)})


def _describe(emulator: Any) -> dict[str, Any]:
    return describe(emulator.require_deployment())


def describe(deployment: Any) -> dict[str, Any]:
    """What the least-privilege check reads of a deployed stack: its functions (handler,
    ARCHITECTURE), who assumes which role, and every role's inline policies as deployed
    (GetRolePolicy): the calls are evaluated against those, never against policies of its own."""
    configurations = deployment.functions()
    model_uri = str(deployment.outputs["modelUri"])
    bucket, _, model_key = model_uri.removeprefix("s3://").partition("/")
    _, name, version, _ = model_key.split("/", 3)
    outputs = {k: v for k, v in deployment.outputs.items() if k not in deployment.secret_outputs}
    return {
        "architectures": list(deployment.outputs["architecture"]),
        "polling": deployment.config["mlserve:polling"],
        "bucket": bucket,
        "table": str(deployment.outputs["jobTable"]),
        "model_key": model_key,
        "metadata_key": contract.model_metadata_key(name, version),
        "functions": sorted(configurations),
        "handlers": {name: str(c["Handler"]) for name, c in configurations.items()},
        "function_architectures": {
            name: c.get("Environment", {}).get("Variables", {}).get(contract.ENV_ARCHITECTURE, "")
            for name, c in configurations.items()
        },
        "outputs": outputs,
        "assumes": deployment.assumed_roles(),
        "role_policies": deployment.role_policies(),
    }


def run_recorded(argv: list[str]) -> None:
    """``FILE IDENTITY MODULE ARGS...``: run MODULE as ``__main__`` (as ``python -m`` does) with
    every AWS call of this process recorded as IDENTITY (a JSON object)."""
    path, identity, module, *args = argv
    container.hide_packages_not_in_image()
    _install(path)
    _installed["process_identity"] = json.loads(identity)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)

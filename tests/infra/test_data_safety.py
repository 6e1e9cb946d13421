"""Data safety of the shared stores, across every architecture (Pulumi mocks, the real program).

The model bucket and the job table hold what a user cannot get back (models, job records):

- switching ``mlserve:architecture`` between any two architectures (or to a combination) must
  not replace, change or delete them: every resource of the ModelStore and JobTable components
  keeps its URN and its inputs, so ``pulumi up`` sees no change to them at all;
- while ``protectData`` is true both are ``retain_on_delete`` (a ``pulumi destroy`` or removing
  them from the program leaves them in AWS), the bucket cannot be force-destroyed and the table
  has DynamoDB deletion protection;
- the bucket denies every request that does not use TLS, whatever else the architecture adds;
- the table has point-in-time recovery and server-side encryption.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pulumi
import pytest

from runtime import contract
from tests.infra.conftest import Registered, StackRun, run_stack

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
TABLE = "aws:dynamodb/table:Table"
DATA_COMPONENTS = ("mlserve:index:ModelStore", "mlserve:index:JobTable")
SETUPS = (
    contract.ARCH_LAMBDA,
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
    f"{contract.ARCH_LAMBDA},{contract.ARCH_STEPFUNCTIONS_BATCH}",
    f"{contract.ARCH_STEPFUNCTIONS_ECS},{contract.ARCH_LAMBDA_ECS}",
)


@pytest.fixture(scope="module")
def runs(base_config: dict[str, str]) -> dict[str, StackRun]:
    """The program once per setup, protectData at its default (true)."""
    return {setup: run_stack({**base_config, "architecture": setup}) for setup in SETUPS}


@pytest.fixture(scope="module")
def unprotected_runs(base_config: dict[str, str]) -> dict[str, StackRun]:
    return {
        setup: run_stack({**base_config, "architecture": setup, "protectData": False})
        for setup in SETUPS[:4]
    }


def data_resources(run: StackRun) -> dict[str, Registered]:
    """URN -> every resource of the data components (the components and their descendants)."""
    found = {r.urn: r for r in run.resources if r.type in DATA_COMPONENTS}
    assert len(found) == len(DATA_COMPONENTS), sorted(r.type for r in found.values())
    grew = True
    while grew:
        children = {r.urn: r for r in run.resources if r.parent in found and r.urn not in found}
        found.update(children)
        grew = bool(children)
    return found


def plain(value: Any) -> Any:
    """Inputs with assets as what they stand for (an asset object has no equality)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return (type(value).__name__, vars(value))
    return value


def comparable(resource: Registered) -> dict[str, Any]:
    """What pulumi up diffs, and how the resource is protected."""
    return {
        "type": resource.type,
        "parent": resource.parent,
        "inputs": plain(resource.inputs),
        "retain_on_delete": resource.retain_on_delete,
        "protect": resource.protect,
        "delete_before_replace": resource.delete_before_replace,
    }


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(SETUPS, 2)))
def test_switching_architecture_changes_nothing_in_the_data_stores(
    runs: dict[str, StackRun], before: str, after: str
) -> None:
    old, new = data_resources(runs[before]), data_resources(runs[after])
    assert sorted(new) == sorted(old), "a data resource would be created or deleted"
    for urn, resource in old.items():
        assert comparable(new[urn]) == comparable(resource), urn
    # the same physical bucket and table: no replacement, no second copy
    assert runs[after].one(BUCKET).outputs["bucket"] == runs[before].one(BUCKET).outputs["bucket"]
    assert runs[after].one(TABLE).outputs["name"] == runs[before].one(TABLE).outputs["name"]


@pytest.mark.parametrize("setup", SETUPS)
def test_bucket_and_table_are_retained_on_delete_while_data_is_protected(
    runs: dict[str, StackRun], setup: str
) -> None:
    run = runs[setup]
    bucket, table = run.one(BUCKET), run.one(TABLE)
    assert bucket.retain_on_delete is True
    assert table.retain_on_delete is True
    assert bucket.inputs["forceDestroy"] is False  # never emptied by a destroy
    assert table.inputs["deletionProtectionEnabled"] is True


@pytest.mark.parametrize("setup", SETUPS[:4])
def test_without_protect_data_the_stack_owns_its_data(
    unprotected_runs: dict[str, StackRun], runs: dict[str, StackRun], setup: str
) -> None:
    run = unprotected_runs[setup]
    bucket, table = run.one(BUCKET), run.one(TABLE)
    assert (bucket.retain_on_delete, table.retain_on_delete) == (False, False)
    assert bucket.inputs["forceDestroy"] is True
    assert table.inputs["deletionProtectionEnabled"] is False
    # turning protection on or off updates the stores in place: same URNs, no replacement
    assert bucket.urn == runs[setup].one(BUCKET).urn
    assert table.urn == runs[setup].one(TABLE).urn


def _denies_insecure_transport(statement: dict[str, Any], bucket_arn: str) -> bool:
    resources = statement.get("Resource")
    resources = [resources] if isinstance(resources, str) else list(resources or [])
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else list(actions or [])
    condition = (statement.get("Condition") or {}).get("Bool") or {}
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and "s3:*" in actions
        and {bucket_arn, f"{bucket_arn}/*"} <= set(resources)
        and str(condition.get("aws:SecureTransport")).lower() == "false"
    )


@pytest.mark.parametrize("setup", SETUPS)
def test_the_bucket_denies_every_request_without_tls(runs: dict[str, StackRun], setup: str) -> None:
    run = runs[setup]
    bucket = run.one(BUCKET)
    arn, name = bucket.outputs["arn"], bucket.outputs["bucket"]
    # S3 keeps one policy per bucket: a second BucketPolicy would silently replace this one.
    (policy,) = [p for p in run.of_type(BUCKET_POLICY) if p.inputs["bucket"] == name]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    assert any(_denies_insecure_transport(s, arn) for s in statements), statements
    # nothing in it allows anyone in: grants belong to the roles' own policies
    assert all(s["Effect"] == "Deny" for s in statements), statements


@pytest.mark.parametrize("setup", SETUPS)
def test_the_job_table_has_point_in_time_recovery_and_encryption(
    runs: dict[str, StackRun], setup: str
) -> None:
    table = runs[setup].one(TABLE).inputs
    assert table["pointInTimeRecovery"] == {"enabled": True}
    assert table["serverSideEncryption"] == {"enabled": True}
    assert table["billingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize("setup", SETUPS)
def test_the_model_bucket_is_versioned_encrypted_and_private(
    runs: dict[str, StackRun], setup: str
) -> None:
    """Versioning keeps an overwritten or deleted model recoverable."""
    run = runs[setup]
    name = run.one(BUCKET).outputs["bucket"]
    (versioning,) = [
        r
        for r in run.of_type("aws:s3/bucketVersioning:BucketVersioning")
        if r.inputs["bucket"] == name
    ]
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    (encryption,) = [
        r
        for r in run.of_type(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        if r.inputs["bucket"] == name
    ]
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    (block,) = [
        r
        for r in run.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        if r.inputs["bucket"] == name
    ]
    assert all(
        block.inputs[flag] is True
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )


def test_the_caller_index_is_added_to_the_table_in_place(runs: dict[str, StackRun]) -> None:
    """GET /jobs's index (issue 16) joined a table that existed without it: an UpdateTable, not
    a new table. The provider replaces a DynamoDB table only when its name, hash key or range
    key change (ForceNew in the AWS provider); attributes and global secondary indexes are
    updated in place. So the table keeps the logical name and the parent of every earlier
    version of the program (its URN), an auto-generated name and its hash key, and gains no
    range key; the index lives only in ``globalSecondaryIndexes``."""
    for run in runs.values():
        table = run.one(TABLE)
        assert table.urn.endswith(
            "::mlserve:index:JobTable$aws:dynamodb/table:Table::job-table-table"
        ), table.urn
        assert table.inputs["hashKey"] == contract.JOB_TABLE_HASH_KEY
        assert "rangeKey" not in table.inputs
        assert "name" not in table.inputs  # auto-named: the same physical table stays
        (index,) = table.inputs["globalSecondaryIndexes"]
        assert index["name"] == contract.JOB_TABLE_CALLER_INDEX
        assert (index["hashKey"], index["rangeKey"]) == (
            contract.JOB_TABLE_CALLER_ATTRIBUTE,
            contract.JOB_TABLE_CREATED_ATTRIBUTE,
        )
        # jobs without a caller (S3 job configs) stay out of the index; listed attributes only
        assert index["projectionType"] == "INCLUDE"
        assert "predictions" not in index["nonKeyAttributes"]
        assert "instances" not in index["nonKeyAttributes"]

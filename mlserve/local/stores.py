"""The shared stores, provisioned in the embedded AWS the way the Pulumi program provisions them.

- Model bucket: versioning, default encryption, every public-access block, owner-enforced
  object ownership; the model at ``models/{name}/{version}/model.ubj`` (version = first 12 hex
  digits of the sha256) with the digest in its metadata, ``metadata.json`` beside it.
- Job table: hash key ``job_id``, on-demand, encrypted, point-in-time recovery, TTL on
  ``expires_at``.

Names come from runtime.contract, so the runtime finds what this module creates.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import contract

if TYPE_CHECKING:
    from mlserve.local.functions import RuntimeSettings

MODEL_VERSION_LENGTH = 12  # models/{name}/{sha256[:12]}/model.ubj, as the Pulumi program names it


class ModelNotFound(FileNotFoundError):
    """The model directory has no model.ubj nor model.json."""


@dataclass(frozen=True)
class ModelArtifact:
    """A model on disk, ``model.ubj`` or ``model.json``, with the metadata the Pulumi program
    records for it (components/compatibility.model_metadata: a ``metadata.json`` beside it is
    optional)."""

    name: str
    version: str
    sha256: str
    model_path: Path
    metadata_path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, model_dir: Path, name: str | None = None) -> ModelArtifact:
        """The model in ``model_dir``; raises :class:`ModelNotFound`, or
        components.compatibility.ModelRefused for a model mlserve cannot serve."""
        names = contract.MODEL_FILE_NAMES
        found = [model_dir / n for n in names if (model_dir / n).is_file()]
        if not found:
            raise ModelNotFound(
                f"no model at {model_dir} (looked for {' or '.join(names)}): save one with "
                "Booster.save_model, or train the example with `python -m mlserve "
                f"train-example --out {model_dir}`"
            )
        if len(found) > 1:
            raise ModelNotFound(f"{model_dir} holds both {' and '.join(names)}: keep one")
        return cls.from_file(found[0], name)

    @classmethod
    def from_file(cls, model_path: Path, name: str | None = None) -> ModelArtifact:
        from components.compatibility import model_metadata
        from mlserve.train import sha256_file

        if not model_path.is_file():
            raise ModelNotFound(f"no model file at {model_path}")
        metadata_path: Path | None = model_path.parent / contract.MODEL_METADATA_NAME
        given: dict[str, Any] = {}
        if metadata_path is not None and metadata_path.is_file():
            with contextlib.suppress(ValueError):  # model_metadata refuses it, with why
                given = json.loads(metadata_path.read_text())
        else:
            metadata_path = None
        digest = sha256_file(model_path)
        version = digest[:MODEL_VERSION_LENGTH]
        recorded_name = given.get("name") if isinstance(given, dict) else None
        model_name = name or str(recorded_name or model_path.parent.resolve().name)
        metadata = model_metadata(model_path, model_name, version, digest)
        return cls(model_name, version, digest, model_path, metadata_path, metadata)

    @property
    def categories_env(self) -> str:
        """MODEL_CATEGORIES, as the Pulumi program sets it."""
        from components.compatibility import model_categories_env

        return model_categories_env(self.metadata)


@dataclass(frozen=True)
class SharedStores:
    """What the architectures share: one model store, one job table."""

    bucket: str
    table: str
    model: ModelArtifact
    model_key: str
    metadata_key: str

    @property
    def model_uri(self) -> str:
        return f"s3://{self.bucket}/{self.model_key}"


def input_environment(
    settings: RuntimeSettings, stores: SharedStores, *, loader: bool = True
) -> dict[str, str]:
    """ALLOW_MISSING, UNKNOWN_CATEGORY and, for the model loaders (predictor, scoring task,
    Batch job), MODEL_CATEGORIES: runtime.contract.input_environment, as components set it."""
    return contract.input_environment(
        settings.allow_missing,
        settings.unknown_category,
        stores.model.categories_env if loader else "",
    )


def physical_name(role: str) -> str:
    """Like Pulumi's auto-naming: a logical name plus a random suffix."""
    return f"mlserve-local-{role}-{secrets.token_hex(4)}"


def create_model_bucket(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name)  # us-east-1 takes no LocationConstraint
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    # Not applied here: the TLS-only bucket policy (Deny when aws:SecureTransport is false).
    # The embedded endpoint is plain HTTP on loopback and moto evaluates that statement, so it
    # would (rightly) refuse every call; on AWS every SDK call uses HTTPS and the policy holds.


def upload_model(s3: Any, bucket: str, model: ModelArtifact) -> tuple[str, str]:
    """Upload model.ubj (with its sha256 as object metadata) and metadata.json; return the keys."""
    key = contract.model_key(model.name, model.version)
    metadata_key = contract.model_metadata_key(model.name, model.version)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=model.model_path.read_bytes(),
        ContentType="application/octet-stream",
        Metadata={"sha256": model.sha256},
    )
    metadata = dict(model.metadata)
    metadata.update({"name": model.name, "version": model.version, "sha256": model.sha256})
    s3.put_object(
        Bucket=bucket,
        Key=metadata_key,
        Body=(json.dumps(metadata, indent=2) + "\n").encode(),
        ContentType="application/json",
    )
    return key, metadata_key


def create_job_table(dynamodb: Any, name: str) -> None:
    key = contract.JOB_TABLE_HASH_KEY
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": key, "AttributeType": "S"},
            {"AttributeName": contract.JOB_TABLE_CALLER_ATTRIBUTE, "AttributeType": "S"},
            {"AttributeName": contract.JOB_TABLE_CREATED_ATTRIBUTE, "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        # components/storage.py JobTable: the caller index behind GET /jobs
        GlobalSecondaryIndexes=[
            {
                "IndexName": contract.JOB_TABLE_CALLER_INDEX,
                "KeySchema": [
                    {"AttributeName": contract.JOB_TABLE_CALLER_ATTRIBUTE, "KeyType": "HASH"},
                    {"AttributeName": contract.JOB_TABLE_CREATED_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(contract.JOB_TABLE_CALLER_INDEX_ATTRIBUTES),
                },
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True},
    )
    dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={
            "Enabled": True,
            "AttributeName": contract.JOB_TABLE_TTL_ATTRIBUTE,
        },
    )
    dynamodb.update_continuous_backups(
        TableName=name,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )


def provision_shared_stores(s3: Any, dynamodb: Any, model: ModelArtifact) -> SharedStores:
    bucket = physical_name("models")
    table = physical_name("jobs")
    create_model_bucket(s3, bucket)
    key, metadata_key = upload_model(s3, bucket, model)
    create_job_table(dynamodb, table)
    return SharedStores(bucket, table, model, key, metadata_key)

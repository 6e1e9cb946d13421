"""Shared data stores: the model bucket (ModelStore) and the job table (JobTable).

Both live outside the architecture components and keep stable logical names, so switching
`mlserve:architecture` never replaces them; while `protectData` is true they are
``retain_on_delete`` (removing them from the stack leaves the AWS resources in place).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.compatibility import model_metadata
from runtime import contract
from runtime.modelfile import sha256_file

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
_SseDefault = (
    aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
)


@dataclass(frozen=True)
class CanaryModel:
    """The canary's files and names (mlserve:canaryModelPath, canaryModelName/Version)."""

    model_path: Path
    model_name: str
    model_version: str
    model_sha256: str
    metadata: Mapping[str, Any] = field(compare=False)
    onnx_path: Path | None = None
    onnx_sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.model_path.is_file():
            raise ValueError(f"CanaryModel.model_path: no model file at {self.model_path}")
        if not self.model_name or "/" in self.model_name:
            raise ValueError(f"CanaryModel.model_name: invalid name {self.model_name!r}")
        if not self.model_version or "/" in self.model_version:
            raise ValueError(f"CanaryModel.model_version: invalid version {self.model_version!r}")
        if (self.onnx_path is None) != (self.onnx_sha256 is None):
            raise ValueError("CanaryModel: onnx_path and onnx_sha256 go together")


@dataclass(frozen=True)
class ServedCanary:
    """The canary as a set of functions serves it (issue 17): its object for their engine, digest
    and ARN, its MODEL_CATEGORIES-style categories, and its share of requests or new jobs.

    The lambda predictor gets all of it (components/realtime.py, with CANARY_MODE). On the job
    architectures (lambda-ecs, stepfunctions-ecs, stepfunctions-batch) the scoring task/job
    definitions get the object, its model.ubj (the containers score with XGBoost):
    :meth:`container_environment` (they load the version a job record names); the functions that
    create jobs get what assigns it: :meth:`assignment_environment` (the version, from the URI,
    and the percent)."""

    uri: pulumi.Input[str] = field(compare=False)
    sha256: pulumi.Input[str] = field(compare=False)
    object_arn: pulumi.Input[str] = field(compare=False)
    categories: str = ""  # CANARY_MODEL_CATEGORIES, as model_categories
    percent: int = 0  # CANARY_PERCENT: the share of new jobs the canary scores

    def __post_init__(self) -> None:
        if self.uri is None or self.sha256 is None or self.object_arn is None:
            raise ValueError("ServedCanary: uri, sha256 and object_arn go together")
        if not 0 <= self.percent <= 100:
            raise ValueError(f"ServedCanary.percent {self.percent} not in 0-100")

    def container_environment(self) -> dict[str, pulumi.Input[str]]:
        env: dict[str, pulumi.Input[str]] = {
            contract.ENV_CANARY_MODEL_URI: self.uri,
            contract.ENV_CANARY_MODEL_SHA256: self.sha256,
        }
        if self.categories:
            env[contract.ENV_CANARY_MODEL_CATEGORIES] = self.categories
        return env

    def assignment_environment(self) -> dict[str, pulumi.Input[str]]:
        return {
            contract.ENV_CANARY_MODEL_URI: self.uri,
            contract.ENV_CANARY_MODEL_SHA256: self.sha256,
            contract.ENV_CANARY_PERCENT: str(self.percent),
        }


def canary_container_environment(canary: ServedCanary | None) -> dict[str, pulumi.Input[str]]:
    """A scoring container's canary variables; none without a canary."""
    return canary.container_environment() if canary is not None else {}


def canary_assignment_environment(canary: ServedCanary | None) -> dict[str, pulumi.Input[str]]:
    """A job-creating function's canary variables; none without a canary."""
    return canary.assignment_environment() if canary is not None else {}


@dataclass(frozen=True)
class ModelStoreArgs:
    model_path: Path
    model_name: str
    model_version: str
    model_sha256: str | None = None  # computed from model_path when None
    protect_data: bool = True
    kms_key_arn: str | None = None  # SSE-KMS with a bucket key when set, else SSE-S3 (AES256)
    # The onnx engine's converted model (components/engine.py), uploaded next to the XGBoost one.
    onnx_path: Path | None = None
    onnx_sha256: str | None = None  # computed from onnx_path when None
    # metadata.json (components/compatibility.model_metadata); computed from model_path when None
    metadata: Mapping[str, Any] | None = field(default=None, compare=False)
    # The canary (issue 17): a second model version beside the stable one, with its own
    # name/version, sha256, metadata.json and (onnx engine) model.onnx.
    canary: CanaryModel | None = None

    def __post_init__(self) -> None:
        if not self.model_path.is_file():
            raise ValueError(f"ModelStoreArgs.model_path: no model file at {self.model_path}")
        if not self.model_name or "/" in self.model_name:
            raise ValueError(f"ModelStoreArgs.model_name: invalid name {self.model_name!r}")
        if not self.model_version or "/" in self.model_version:
            raise ValueError(
                f"ModelStoreArgs.model_version: invalid version {self.model_version!r}"
            )
        if self.model_sha256 is not None and self.model_sha256 != sha256_file(self.model_path):
            raise ValueError(
                f"ModelStoreArgs.model_sha256: {self.model_sha256} is not the sha256 of "
                f"{self.model_path}"
            )
        if self.kms_key_arn is not None and not self.kms_key_arn.startswith("arn:"):
            raise ValueError(f"ModelStoreArgs.kms_key_arn: not an ARN: {self.kms_key_arn!r}")
        if self.onnx_path is None and self.onnx_sha256 is not None:
            raise ValueError("ModelStoreArgs.onnx_sha256 is given without onnx_path")
        if self.onnx_path is not None:
            if not self.onnx_path.is_file():
                raise ValueError(f"ModelStoreArgs.onnx_path: no ONNX model at {self.onnx_path}")
            if self.onnx_sha256 is not None and self.onnx_sha256 != sha256_file(self.onnx_path):
                raise ValueError(
                    f"ModelStoreArgs.onnx_sha256: {self.onnx_sha256} is not the sha256 of "
                    f"{self.onnx_path}"
                )

    @property
    def sha256(self) -> str:
        return self.model_sha256 or sha256_file(self.model_path)


class ModelStore(pulumi.ComponentResource):
    """Versioned, encrypted, private, TLS-only bucket holding the model and its metadata."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    model_key: str
    metadata_key: str
    model_uri: pulumi.Output[str]
    model_object_arn: pulumi.Output[str]
    model_sha256: str
    model_version: str
    # Set when the store holds the onnx engine's model.onnx (ModelStoreArgs.onnx_path), else None.
    onnx_key: str | None
    onnx_uri: pulumi.Output[str] | None
    onnx_object_arn: pulumi.Output[str] | None
    onnx_sha256: str | None
    # Set when the store holds a canary (ModelStoreArgs.canary), else None: the object the
    # predictor loads for it (model.onnx with the onnx engine), its sha256 and ARN.
    canary_uri: pulumi.Output[str] | None
    canary_sha256: str | None
    canary_object_arn: pulumi.Output[str] | None
    canary_onnx_uri: pulumi.Output[str] | None
    canary_onnx_sha256: str | None
    canary_onnx_object_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        sha256 = args.sha256

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            # With protectData off the stack owns the data: allow deleting a non-empty bucket.
            force_destroy=not args.protect_data,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect_data),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        if args.kms_key_arn is None:
            rule = aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=_SseDefault(sse_algorithm=SSE_S3)
            )
        else:
            rule = aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=_SseDefault(
                    sse_algorithm=SSE_KMS, kms_master_key_id=args.kms_key_arn
                ),
                bucket_key_enabled=True,
            )
        # One configuration change of the bucket at a time: S3 answers 409 OperationAborted
        # ("A conflicting conditional operation is currently in progress") to concurrent ones,
        # so each sub-resource waits for the one before (versioning, encryption, public access
        # block, ownership, policy), and the objects for all of them.
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[rule],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[encryption]),
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        bucket_policy = aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(policies.tls_only_bucket_policy(arn))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ownership]),
        )

        self.model_key = contract.model_key(args.model_name, args.model_version)
        self.metadata_key = contract.model_metadata_key(args.model_name, args.model_version)
        # Objects are written once the bucket is locked down and encrypted.
        after_bucket_setup = pulumi.ResourceOptions(
            parent=self,
            depends_on=[versioning, encryption, public_access, ownership, bucket_policy],
        )
        model_object = aws.s3.BucketObjectv2(
            f"{name}-model",
            bucket=bucket.id,
            key=self.model_key,
            source=pulumi.FileAsset(str(args.model_path)),
            content_type="application/octet-stream",
            metadata={"sha256": sha256},
            opts=after_bucket_setup,
        )
        metadata = args.metadata or model_metadata(
            args.model_path, args.model_name, args.model_version, sha256
        )
        aws.s3.BucketObjectv2(
            f"{name}-metadata",
            bucket=bucket.id,
            key=self.metadata_key,
            content=json.dumps(metadata, indent=2, sort_keys=True) + "\n",
            content_type="application/json",
            metadata={"sha256": sha256},
            opts=after_bucket_setup,
        )

        self.onnx_key = self.onnx_uri = self.onnx_object_arn = self.onnx_sha256 = None
        if args.onnx_path is not None:
            onnx_sha256 = args.onnx_sha256 or sha256_file(args.onnx_path)
            onnx_key = contract.onnx_model_key(args.model_name, args.model_version)
            onnx_object = aws.s3.BucketObjectv2(
                f"{name}-onnx-model",
                bucket=bucket.id,
                key=onnx_key,
                source=pulumi.FileAsset(str(args.onnx_path)),
                content_type="application/octet-stream",
                metadata={"sha256": onnx_sha256, "source-sha256": sha256},
                opts=after_bucket_setup,
            )
            self.onnx_key, self.onnx_sha256 = onnx_key, onnx_sha256
            self.onnx_uri = pulumi.Output.concat("s3://", onnx_object.bucket, "/", onnx_key)
            self.onnx_object_arn = pulumi.Output.concat(bucket.arn, "/", onnx_key)

        self.canary_uri = self.canary_sha256 = self.canary_object_arn = None
        self.canary_onnx_uri = self.canary_onnx_sha256 = self.canary_onnx_object_arn = None
        if args.canary is not None:
            self._canary_objects(name, bucket, args.canary, after_bucket_setup)

        # Whatever else writes to the bucket (the Lambda package objects, the job-config
        # notification of stepfunctions-batch) gets its name once the configuration is done.
        self.bucket_name = pulumi.Output.all(bucket.bucket, bucket_policy.id).apply(
            lambda values: str(values[0])
        )
        self.bucket_arn = bucket.arn
        self.model_sha256 = sha256
        self.model_version = args.model_version
        key = self.model_key
        self.model_uri = pulumi.Output.concat("s3://", model_object.bucket, "/", key)
        self.model_object_arn = pulumi.Output.concat(bucket.arn, "/", key)
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "model_key": self.model_key,
                "model_uri": self.model_uri,
                "model_object_arn": self.model_object_arn,
                "model_sha256": self.model_sha256,
                "model_version": self.model_version,
                "onnx_uri": self.onnx_uri,
                "onnx_sha256": self.onnx_sha256,
                "canary_uri": self.canary_uri,
                "canary_sha256": self.canary_sha256,
            }
        )

    def _canary_objects(
        self,
        name: str,
        bucket: aws.s3.Bucket,
        canary: CanaryModel,
        opts: pulumi.ResourceOptions,
    ) -> None:
        """The canary's model.ubj, metadata.json and (onnx engine) model.onnx, beside the stable
        model's under its own name/version."""
        after_bucket_setup = opts
        canary_key = contract.model_key(canary.model_name, canary.model_version)
        canary_object = aws.s3.BucketObjectv2(
            f"{name}-canary-model",
            bucket=bucket.id,
            key=canary_key,
            source=pulumi.FileAsset(str(canary.model_path)),
            content_type="application/octet-stream",
            metadata={"sha256": canary.model_sha256},
            opts=after_bucket_setup,
        )
        aws.s3.BucketObjectv2(
            f"{name}-canary-metadata",
            bucket=bucket.id,
            key=contract.model_metadata_key(canary.model_name, canary.model_version),
            content=json.dumps(dict(canary.metadata), indent=2, sort_keys=True) + "\n",
            content_type="application/json",
            metadata={"sha256": canary.model_sha256},
            opts=after_bucket_setup,
        )
        self.canary_sha256 = canary.model_sha256
        self.canary_uri = pulumi.Output.concat("s3://", canary_object.bucket, "/", canary_key)
        self.canary_object_arn = pulumi.Output.concat(bucket.arn, "/", canary_key)
        if canary.onnx_path is not None:
            canary_onnx_key = contract.onnx_model_key(canary.model_name, canary.model_version)
            canary_onnx = aws.s3.BucketObjectv2(
                f"{name}-canary-onnx-model",
                bucket=bucket.id,
                key=canary_onnx_key,
                source=pulumi.FileAsset(str(canary.onnx_path)),
                content_type="application/octet-stream",
                metadata={
                    "sha256": str(canary.onnx_sha256),
                    "source-sha256": canary.model_sha256,
                },
                opts=after_bucket_setup,
            )
            self.canary_onnx_sha256 = canary.onnx_sha256
            self.canary_onnx_uri = pulumi.Output.concat(
                "s3://", canary_onnx.bucket, "/", canary_onnx_key
            )
            self.canary_onnx_object_arn = pulumi.Output.concat(bucket.arn, "/", canary_onnx_key)


@dataclass(frozen=True)
class JobTableArgs:
    protect_data: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.protect_data, bool):
            raise ValueError(f"JobTableArgs.protect_data must be a bool, got {self.protect_data!r}")


class JobTable(pulumi.ComponentResource):
    """On-demand DynamoDB table of jobs: key ``job_id``, SSE, point-in-time recovery, TTL, and
    the ``by-caller`` index (caller, created_at) behind GET /jobs."""

    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: JobTableArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:JobTable", name, None, opts)
        table = aws.dynamodb.Table(
            f"{name}-table",
            billing_mode="PAY_PER_REQUEST",
            hash_key=contract.JOB_TABLE_HASH_KEY,
            attributes=[
                {"name": contract.JOB_TABLE_HASH_KEY, "type": "S"},
                {"name": contract.JOB_TABLE_CALLER_ATTRIBUTE, "type": "S"},
                {"name": contract.JOB_TABLE_CREATED_ATTRIBUTE, "type": "S"},
            ],
            # GET /jobs: the caller's jobs, newest first. Adding an index updates the table in
            # place (UpdateTable), never replaces it (tests/infra/test_data_safety.py).
            global_secondary_indexes=[
                {
                    "name": contract.JOB_TABLE_CALLER_INDEX,
                    "hash_key": contract.JOB_TABLE_CALLER_ATTRIBUTE,
                    "range_key": contract.JOB_TABLE_CREATED_ATTRIBUTE,
                    "projection_type": "INCLUDE",
                    "non_key_attributes": list(contract.JOB_TABLE_CALLER_INDEX_ATTRIBUTES),
                }
            ],
            server_side_encryption={"enabled": True},
            point_in_time_recovery={"enabled": True},
            ttl={"attribute_name": contract.JOB_TABLE_TTL_ATTRIBUTE, "enabled": True},
            # protectData also guards the table against a DeleteTable outside Pulumi
            deletion_protection_enabled=args.protect_data,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect_data),
        )
        self.name = table.name
        self.arn = table.arn
        self.register_outputs({"name": self.name, "arn": self.arn})

"""components/policies.py: whole IAM documents, compared exactly (pure)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components import policies

MODEL_ARN = "arn:aws:s3:::bucket-123/models/example/abc/model.ubj"
LOG_GROUP_ARN = "arn:aws:logs:us-east-1:123456789012:log-group:predictor-logs-1a2b3c"


def test_module_is_pure() -> None:
    tree = ast.parse(Path(policies.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= {"__future__", "typing"}


def test_lambda_assume_role_policy() -> None:
    assert policies.lambda_assume_role_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def test_realtime_predictor_policy_is_exactly_two_grants() -> None:
    assert policies.realtime_predictor_policy(MODEL_ARN, LOG_GROUP_ARN) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadModel",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [MODEL_ARN],
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{LOG_GROUP_ARN}:*"],
            },
        ],
    }


def test_realtime_predictor_policy_accepts_a_log_group_arn_with_stream_suffix() -> None:
    doc = policies.realtime_predictor_policy(MODEL_ARN, f"{LOG_GROUP_ARN}:*")
    assert doc["Statement"][1]["Resource"] == [f"{LOG_GROUP_ARN}:*"]


@pytest.mark.parametrize(
    ("model", "logs"), [("bucket/key", LOG_GROUP_ARN), (MODEL_ARN, "predictor-logs"), ("", "")]
)
def test_realtime_predictor_policy_needs_arns(model: str, logs: str) -> None:
    with pytest.raises(ValueError, match="must be an ARN"):
        policies.realtime_predictor_policy(model, logs)


def test_tls_only_bucket_policy() -> None:
    bucket = "arn:aws:s3:::bucket-123"
    assert policies.tls_only_bucket_policy(bucket) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket, f"{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def test_tls_only_bucket_policy_needs_an_arn() -> None:
    with pytest.raises(ValueError, match="bucket_arn must be an ARN"):
        policies.tls_only_bucket_policy("bucket-123")

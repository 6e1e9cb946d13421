"""IAM policy documents as plain dicts: pure functions, no Pulumi inside.

Each function returns exactly the grants its caller needs (least privilege), so tests can compare
whole documents. Callers pass resolved ARNs (inside ``Output.apply``) and ``json.dumps`` the result.
"""

from __future__ import annotations

from typing import Any, Final

PolicyDocument = dict[str, Any]

VERSION: Final = "2012-10-17"


def _document(*statements: dict[str, Any]) -> PolicyDocument:
    return {"Version": VERSION, "Statement": list(statements)}


def lambda_assume_role_policy() -> PolicyDocument:
    """Trust policy letting the Lambda service assume a function's execution role."""
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )


def realtime_predictor_policy(model_object_arn: str, log_group_arn: str) -> PolicyDocument:
    """The predictor's only grants: read its model object, write to its own log group.

    No ``logs:CreateLogGroup``: the log group is created by the stack, not by the function.
    ``log_group_arn`` is the group's ARN without the trailing ``:*`` (as CloudWatch reports it);
    log streams live under ``{log_group_arn}:*``.
    """
    _require_arn(model_object_arn, "model_object_arn")
    _require_arn(log_group_arn, "log_group_arn")
    return _document(
        {
            "Sid": "ReadModel",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [model_object_arn],
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn.removesuffix(':*')}:*"],
        },
    )


def tls_only_bucket_policy(bucket_arn: str) -> PolicyDocument:
    """Bucket policy denying every request made without TLS, on the bucket and its objects."""
    _require_arn(bucket_arn, "bucket_arn")
    return _document(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )


def _require_arn(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.startswith("arn:"):
        raise ValueError(f"{name} must be an ARN (arn:...), got {value!r}")

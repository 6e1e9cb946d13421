"""IAM policy documents as plain dicts: pure functions, no Pulumi inside.

Each function returns exactly the grants its caller needs (least privilege), so tests can compare
whole documents. Callers pass resolved ARNs (inside ``Output.apply``) and ``json.dumps`` the result.
"""

from __future__ import annotations

from typing import Any, Final

PolicyDocument = dict[str, Any]

VERSION: Final = "2012-10-17"
# S3 prefixes of the model bucket (runtime/contract.py's INPUTS_PREFIX / RESULTS_PREFIX: this
# module stays import-free, tests/infra/test_policies.py checks they are equal).
INPUTS_PREFIX: Final = "inputs/"
RESULTS_PREFIX: Final = "results/"


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


# --- ECS (lambda-ecs; shared with stepfunctions-ecs) ---------------------------------------------
ECS_TASKS_SERVICE: Final = "ecs-tasks.amazonaws.com"


def ecs_tasks_assume_role_policy() -> PolicyDocument:
    """Trust policy letting ECS tasks assume a role (the task role and the execution role)."""
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": ECS_TASKS_SERVICE},
            "Action": "sts:AssumeRole",
        }
    )


def scoring_task_policy(table_arn: str, bucket_arn: str, model_object_arn: str) -> PolicyDocument:
    """The scoring container's grants (``python -m runtime.scoring``, job mode).

    It reads and conditionally updates its job record, reads the model object and the job's
    input under ``inputs/``, and writes predictions under ``results/``. Nothing else: no
    ``PutItem`` (the job API creates records), no listing, no other prefix.
    """
    _require_arn(table_arn, "table_arn")
    _require_arn(bucket_arn, "bucket_arn")
    _require_arn(model_object_arn, "model_object_arn")
    return _document(
        {
            "Sid": "JobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        {
            "Sid": "ReadModelAndInputs",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [model_object_arn, _prefix_arn(bucket_arn, INPUTS_PREFIX)],
        },
        {
            "Sid": "WriteResults",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [_prefix_arn(bucket_arn, RESULTS_PREFIX)],
        },
    )


def task_execution_policy(log_group_arn: str, repository_arn: str | None) -> PolicyDocument:
    """What ECS itself needs to start the scoring task: pull the image, ship its logs.

    ``repository_arn``: the ECR repository holding the image, or None when the image is not in
    ECR (then no ECR grant at all: the image is pulled anonymously from its registry).
    """
    _require_arn(log_group_arn, "log_group_arn")
    statements: list[dict[str, Any]] = []
    if repository_arn is not None:
        _require_arn(repository_arn, "repository_arn")
        statements += [
            {
                "Sid": "EcrAuthentication",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                # The one wildcard: GetAuthorizationToken supports no resource-level
                # permissions, AWS requires Resource "*" for it.
                "Resource": ["*"],
            },
            {
                "Sid": "PullScoringImage",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": [repository_arn],
            },
        ]
    statements.append(
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [_log_streams_arn(log_group_arn)],
        }
    )
    return _document(*statements)


def job_api_ecs_policy(
    *,
    table_arn: str,
    bucket_arn: str,
    metadata_object_arn: str,
    task_definition_arn: str,
    cluster_arn: str,
    task_role_arn: str,
    execution_role_arn: str,
    log_group_arn: str,
) -> PolicyDocument:
    """The lambda-ecs job API's grants: job records, its S3 prefixes, the scoring task.

    * ``ecs:RunTask`` on the scoring task definition's family (every revision:
      ``task-definition/<family>:*``), only in the scoring cluster (``ecs:cluster``). Allowing
      the family rather than one revision keeps the function working while a deployment moves it
      from the old revision to the new one (the policy and the function's environment are
      updated one after the other).
    * ``ecs:DescribeTasks`` / ``ecs:StopTask`` on the tasks of that cluster only.
    * ``iam:PassRole`` on the task and execution roles, and only to ECS tasks.

    ``task_definition_arn`` may be given with or without its ``:<revision>``.
    """
    for value, name in (
        (table_arn, "table_arn"),
        (bucket_arn, "bucket_arn"),
        (metadata_object_arn, "metadata_object_arn"),
        (task_definition_arn, "task_definition_arn"),
        (cluster_arn, "cluster_arn"),
        (task_role_arn, "task_role_arn"),
        (execution_role_arn, "execution_role_arn"),
        (log_group_arn, "log_group_arn"),
    ):
        _require_arn(value, name)
    return _document(
        {
            "Sid": "JobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        {
            "Sid": "ReadMetadataAndResults",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [metadata_object_arn, _prefix_arn(bucket_arn, RESULTS_PREFIX)],
        },
        {
            "Sid": "WriteInputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [_prefix_arn(bucket_arn, INPUTS_PREFIX)],
        },
        {
            "Sid": "RunScoringTask",
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": [task_definition_family_arn(task_definition_arn)],
            "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
        },
        {
            "Sid": "WatchScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": [cluster_tasks_arn(cluster_arn)],
        },
        {
            "Sid": "PassScoringRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [task_role_arn, execution_role_arn],
            "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_SERVICE}},
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [_log_streams_arn(log_group_arn)],
        },
    )


def task_definition_family_arn(task_definition_arn: str) -> str:
    """``arn:...:task-definition/<family>:<rev>`` (or without ``:<rev>``) -> ``...<family>:*``."""
    _require_arn(task_definition_arn, "task_definition_arn")
    head, sep, family = task_definition_arn.partition(":task-definition/")
    if not sep or not family:
        raise ValueError(f"not an ECS task definition ARN: {task_definition_arn!r}")
    return f"{head}{sep}{family.split(':', 1)[0]}:*"


def cluster_tasks_arn(cluster_arn: str) -> str:
    """``arn:...:cluster/<name>`` -> ``arn:...:task/<name>/*`` (the cluster's tasks)."""
    _require_arn(cluster_arn, "cluster_arn")
    head, sep, name = cluster_arn.partition(":cluster/")
    if not sep or not name or "/" in name:
        raise ValueError(f"not an ECS cluster ARN: {cluster_arn!r}")
    return f"{head}:task/{name}/*"


def _prefix_arn(bucket_arn: str, prefix: str) -> str:
    """The objects under ``prefix`` (``"inputs/"``) of a bucket: ``arn:aws:s3:::b/inputs/*``."""
    return f"{bucket_arn}/{prefix}*"


def _log_streams_arn(log_group_arn: str) -> str:
    return f"{log_group_arn.removesuffix(':*')}:*"


def _require_arn(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.startswith("arn:"):
        raise ValueError(f"{name} must be an ARN (arn:...), got {value!r}")

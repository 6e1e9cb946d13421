"""components/policies.py: whole IAM documents, compared exactly (pure)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from components import policies
from runtime import contract

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


# --- ECS (lambda-ecs) -----------------------------------------------------------------------------
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs-1a2b3c"
BUCKET_ARN = "arn:aws:s3:::bucket-123"
METADATA_ARN = "arn:aws:s3:::bucket-123/models/example/abc/metadata.json"
REPOSITORY_ARN = "arn:aws:ecr:us-east-1:123456789012:repository/scoring-1a2b3c"
TASK_LOGS_ARN = "arn:aws:logs:us-east-1:123456789012:log-group:scoring-logs-1a2b3c"
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/scoring-cluster-1a2b3c"
TASK_DEFINITION_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/mlserve-dev-scoring:7"
TASK_ROLE_ARN = "arn:aws:iam::123456789012:role/scoring-task-role-1a2b3c"
EXECUTION_ROLE_ARN = "arn:aws:iam::123456789012:role/scoring-execution-role-1a2b3c"


def job_api_policy() -> dict[str, Any]:
    return policies.job_api_ecs_policy(
        table_arn=TABLE_ARN,
        bucket_arn=BUCKET_ARN,
        metadata_object_arn=METADATA_ARN,
        task_definition_arn=TASK_DEFINITION_ARN,
        cluster_arn=CLUSTER_ARN,
        task_role_arn=TASK_ROLE_ARN,
        execution_role_arn=EXECUTION_ROLE_ARN,
        log_group_arn=LOG_GROUP_ARN,
    )


def assert_least_privilege(document: dict[str, Any]) -> None:
    """No wildcard action anywhere; a "*" resource only for ecr:GetAuthorizationToken."""
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert all("*" not in action for action in actions), statement
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if "*" in resources:
            assert actions == ["ecr:GetAuthorizationToken"], statement
            assert resources == ["*"], statement


def test_prefixes_equal_the_contract() -> None:
    assert policies.INPUTS_PREFIX == contract.INPUTS_PREFIX
    assert policies.RESULTS_PREFIX == contract.RESULTS_PREFIX


def test_ecs_tasks_assume_role_policy() -> None:
    assert policies.ecs_tasks_assume_role_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def test_scoring_task_policy_is_exactly_the_entrypoints_calls() -> None:
    model = f"{BUCKET_ARN}/models/example/abc/model.ubj"
    document = policies.scoring_task_policy(TABLE_ARN, BUCKET_ARN, model)
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "JobRecord",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                "Resource": [TABLE_ARN],
            },
            {
                "Sid": "ReadModelAndInputs",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [model, f"{BUCKET_ARN}/inputs/*"],
            },
            {
                "Sid": "WriteResults",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"{BUCKET_ARN}/results/*"],
            },
        ],
    }
    assert_least_privilege(document)


def test_task_execution_policy_with_an_ecr_repository() -> None:
    document = policies.task_execution_policy(TASK_LOGS_ARN, REPOSITORY_ARN)
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EcrAuthentication",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": ["*"],
            },
            {
                "Sid": "PullScoringImage",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": [REPOSITORY_ARN],
            },
            {
                "Sid": "WriteTaskLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{TASK_LOGS_ARN}:*"],
            },
        ],
    }
    assert_least_privilege(document)


def test_task_execution_policy_without_ecr_has_no_ecr_grant() -> None:
    document = policies.task_execution_policy(f"{TASK_LOGS_ARN}:*", None)
    assert document["Statement"] == [
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{TASK_LOGS_ARN}:*"],
        }
    ]


def test_job_api_ecs_policy_is_exactly_the_specified_grants() -> None:
    document = job_api_policy()
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "JobRecords",
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
                "Resource": [TABLE_ARN],
            },
            {
                "Sid": "ReadMetadataAndResults",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [METADATA_ARN, f"{BUCKET_ARN}/results/*"],
            },
            {
                "Sid": "WriteInputs",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"{BUCKET_ARN}/inputs/*"],
            },
            {
                "Sid": "RunScoringTask",
                "Effect": "Allow",
                "Action": ["ecs:RunTask"],
                "Resource": [
                    "arn:aws:ecs:us-east-1:123456789012:task-definition/mlserve-dev-scoring:*"
                ],
                "Condition": {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}},
            },
            {
                "Sid": "WatchScoringTasks",
                "Effect": "Allow",
                "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                "Resource": ["arn:aws:ecs:us-east-1:123456789012:task/scoring-cluster-1a2b3c/*"],
            },
            {
                "Sid": "PassScoringRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [TASK_ROLE_ARN, EXECUTION_ROLE_ARN],
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{LOG_GROUP_ARN}:*"],
            },
        ],
    }
    assert_least_privilege(document)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/fam:12",
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/fam",
    ],
)
def test_task_definition_family_arn(arn: str) -> None:
    assert policies.task_definition_family_arn(arn) == (
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/fam:*"
    )


def test_cluster_tasks_arn_keeps_partition_region_and_account() -> None:
    arn = "arn:aws-cn:ecs:cn-north-1:123456789012:cluster/c1"
    assert policies.cluster_tasks_arn(arn) == "arn:aws-cn:ecs:cn-north-1:123456789012:task/c1/*"


@pytest.mark.parametrize(
    ("function", "value", "message"),
    [
        (policies.task_definition_family_arn, "mlserve-dev-scoring:1", "must be an ARN"),
        (policies.task_definition_family_arn, CLUSTER_ARN, "not an ECS task definition ARN"),
        (policies.cluster_tasks_arn, TASK_DEFINITION_ARN, "not an ECS cluster ARN"),
        (policies.cluster_tasks_arn, "scoring-cluster", "must be an ARN"),
    ],
)
def test_ecs_arn_helpers_reject(function: Any, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(value)


@pytest.mark.parametrize(
    "field",
    [
        "table_arn",
        "bucket_arn",
        "metadata_object_arn",
        "task_definition_arn",
        "cluster_arn",
        "task_role_arn",
        "execution_role_arn",
        "log_group_arn",
    ],
)
def test_job_api_ecs_policy_needs_arns(field: str) -> None:
    arguments = {
        "table_arn": TABLE_ARN,
        "bucket_arn": BUCKET_ARN,
        "metadata_object_arn": METADATA_ARN,
        "task_definition_arn": TASK_DEFINITION_ARN,
        "cluster_arn": CLUSTER_ARN,
        "task_role_arn": TASK_ROLE_ARN,
        "execution_role_arn": EXECUTION_ROLE_ARN,
        "log_group_arn": LOG_GROUP_ARN,
        field: "not-an-arn",
    }
    with pytest.raises(ValueError, match=f"{field} must be an ARN"):
        policies.job_api_ecs_policy(**arguments)


def test_scoring_and_execution_policies_need_arns() -> None:
    with pytest.raises(ValueError, match="table_arn must be an ARN"):
        policies.scoring_task_policy("jobs", BUCKET_ARN, MODEL_ARN)
    with pytest.raises(ValueError, match="repository_arn must be an ARN"):
        policies.task_execution_policy(TASK_LOGS_ARN, "scoring")


def test_every_policy_is_least_privilege() -> None:
    for document in (
        policies.realtime_predictor_policy(MODEL_ARN, LOG_GROUP_ARN),
        policies.scoring_task_policy(TABLE_ARN, BUCKET_ARN, MODEL_ARN),
        policies.task_execution_policy(TASK_LOGS_ARN, REPOSITORY_ARN),
        policies.task_execution_policy(TASK_LOGS_ARN, None),
        job_api_policy(),
    ):
        assert_least_privilege(document)

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


# The only actions AWS allows on Resource "*" alone (no resource-level permissions exist).
WILDCARD_RESOURCE_ACTIONS = (
    ["ecr:GetAuthorizationToken"],
    list(policies.LOG_DELIVERY_ACTIONS),
    list(policies.XRAY_ACTIONS),
)


def assert_least_privilege(document: dict[str, Any]) -> None:
    """No wildcard action anywhere; a "*" resource only for ecr:GetAuthorizationToken, the
    CloudWatch Logs delivery actions and X-Ray (each alone in its statement)."""
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert all("*" not in action for action in actions), statement
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if "*" in resources:
            assert actions in WILDCARD_RESOURCE_ACTIONS, statement
            assert resources == ["*"], statement


def test_prefixes_equal_the_contract() -> None:
    assert policies.INPUTS_PREFIX == contract.INPUTS_PREFIX
    assert policies.RESULTS_PREFIX == contract.RESULTS_PREFIX
    assert policies.CAPTURE_PREFIX == contract.CAPTURE_PREFIX
    assert policies.JOB_TABLE_CALLER_INDEX == contract.JOB_TABLE_CALLER_INDEX


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
                "Sid": "ListCallerJobs",
                "Effect": "Allow",
                "Action": ["dynamodb:Query"],
                "Resource": [f"{TABLE_ARN}/index/by-caller"],
            },
            {
                "Sid": "ReadMetadataInputsAndResults",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [METADATA_ARN, f"{BUCKET_ARN}/inputs/*", f"{BUCKET_ARN}/results/*"],
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
        sfn_job_api_policy(),
        run_ecs_policy(),
        check_job_status_policy(),
        lambda_state_machine_policy(),
        native_state_machine_policy(),
    ):
        assert_least_privilege(document)


# --- stepfunctions-ecs ----------------------------------------------------------------------------
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:workflow-1a2b3c"
EXECUTIONS_ARN = "arn:aws:states:us-east-1:123456789012:execution:workflow-1a2b3c:*"
TASKS_ARN = "arn:aws:ecs:us-east-1:123456789012:task/scoring-cluster-1a2b3c/*"
FAMILY_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/mlserve-dev-scoring:*"
RUN_ECS_ARN = "arn:aws:lambda:us-east-1:123456789012:function:run-ecs-1a2b3c"
CHECK_ARN = "arn:aws:lambda:us-east-1:123456789012:function:check-job-status-1a2b3c"
SYNC_RULE_ARN = "arn:aws:events:us-east-1:123456789012:rule/StepFunctionsGetEventsForECSTaskRule"

RUN_SCORING_TASK = {
    "Sid": "RunScoringTask",
    "Effect": "Allow",
    "Action": ["ecs:RunTask"],
    "Resource": [FAMILY_ARN],
    "Condition": {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}},
}
PASS_SCORING_ROLES = {
    "Sid": "PassScoringRoles",
    "Effect": "Allow",
    "Action": ["iam:PassRole"],
    "Resource": [TASK_ROLE_ARN, EXECUTION_ROLE_ARN],
    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
}
OWN_LOGS = {
    "Sid": "WriteOwnLogs",
    "Effect": "Allow",
    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
    "Resource": [f"{LOG_GROUP_ARN}:*"],
}
DELIVER_LOGS = {
    "Sid": "DeliverLogs",
    "Effect": "Allow",
    "Action": [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ],
    "Resource": ["*"],
}
XRAY = {
    "Sid": "XRayTracing",
    "Effect": "Allow",
    "Action": [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    ],
    "Resource": ["*"],
}
UPDATE_JOB_RECORDS = {
    "Sid": "UpdateJobRecords",
    "Effect": "Allow",
    "Action": ["dynamodb:UpdateItem"],
    "Resource": [TABLE_ARN],
}


def sfn_job_api_policy(**overrides: str) -> dict[str, Any]:
    arguments = {
        "table_arn": TABLE_ARN,
        "bucket_arn": BUCKET_ARN,
        "metadata_object_arn": METADATA_ARN,
        "state_machine_arn": STATE_MACHINE_ARN,
        "cluster_arn": CLUSTER_ARN,
        "log_group_arn": LOG_GROUP_ARN,
        **overrides,
    }
    return policies.job_api_sfn_policy(**arguments)


def run_ecs_policy(**overrides: str) -> dict[str, Any]:
    arguments = {
        "table_arn": TABLE_ARN,
        "task_definition_arn": TASK_DEFINITION_ARN,
        "cluster_arn": CLUSTER_ARN,
        "task_role_arn": TASK_ROLE_ARN,
        "execution_role_arn": EXECUTION_ROLE_ARN,
        "log_group_arn": LOG_GROUP_ARN,
        **overrides,
    }
    return policies.run_ecs_policy(**arguments)


def check_job_status_policy(**overrides: str) -> dict[str, Any]:
    arguments = {
        "table_arn": TABLE_ARN,
        "cluster_arn": CLUSTER_ARN,
        "log_group_arn": LOG_GROUP_ARN,
        **overrides,
    }
    return policies.check_job_status_policy(**arguments)


def lambda_state_machine_policy() -> dict[str, Any]:
    return policies.state_machine_policy(
        table_arn=TABLE_ARN, function_arns=[RUN_ECS_ARN, CHECK_ARN], native=False
    )


def native_state_machine_policy(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "table_arn": TABLE_ARN,
        "function_arns": [],
        "native": True,
        "task_definition_arn": TASK_DEFINITION_ARN,
        "cluster_arn": CLUSTER_ARN,
        "task_role_arn": TASK_ROLE_ARN,
        "execution_role_arn": EXECUTION_ROLE_ARN,
        **overrides,
    }
    return policies.state_machine_policy(**arguments)


def test_states_assume_role_policy() -> None:
    assert policies.states_assume_role_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "states.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def test_sfn_job_api_policy_is_exactly_the_specified_grants() -> None:
    assert sfn_job_api_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            *job_api_policy()["Statement"][:4],  # job records, caller index, reads, inputs
            {
                "Sid": "StartWorkflow",
                "Effect": "Allow",
                "Action": ["states:StartExecution"],
                "Resource": [STATE_MACHINE_ARN],
            },
            {
                "Sid": "WatchWorkflows",
                "Effect": "Allow",
                "Action": ["states:StopExecution", "states:DescribeExecution"],
                "Resource": [EXECUTIONS_ARN],
            },
            {
                "Sid": "StopScoringTasks",
                "Effect": "Allow",
                "Action": ["ecs:StopTask"],
                "Resource": [TASKS_ARN],
            },
            OWN_LOGS,
        ],
    }
    # the data grants are those of the lambda-ecs job API, word for word
    assert [s["Sid"] for s in job_api_policy()["Statement"][:4]] == [
        "JobRecords",
        "ListCallerJobs",
        "ReadMetadataInputsAndResults",
        "WriteInputs",
    ]


def test_run_ecs_policy_is_exactly_the_specified_grants() -> None:
    # RunECS reads the job after RunTask (GetItem) and stops the task of a job cancelled
    # meanwhile (StopTask): tests/verify/test_least_privilege.py records both calls
    assert run_ecs_policy()["Statement"] == [
        RUN_SCORING_TASK,
        PASS_SCORING_ROLES,
        {
            "Sid": "StopCancelledTask",
            "Effect": "Allow",
            "Action": ["ecs:StopTask"],
            "Resource": ["arn:aws:ecs:us-east-1:123456789012:task/scoring-cluster-1a2b3c/*"],
        },
        {
            "Sid": "RecordTask",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [TABLE_ARN],
        },
        OWN_LOGS,
    ]


def test_check_job_status_policy_is_exactly_the_specified_grants() -> None:
    assert check_job_status_policy()["Statement"] == [
        {
            "Sid": "DescribeScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks"],
            "Resource": [TASKS_ARN],
        },
        {
            "Sid": "ReadJobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem"],
            "Resource": [TABLE_ARN],
        },
        OWN_LOGS,
    ]


def test_lambda_state_machine_policy_is_exactly_the_specified_grants() -> None:
    assert lambda_state_machine_policy()["Statement"] == [
        {
            "Sid": "InvokeStepFunctions",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            # the unqualified ARNs the definition's Lambda tasks name, no version or alias
            "Resource": [RUN_ECS_ARN, CHECK_ARN],
        },
        UPDATE_JOB_RECORDS,
        DELIVER_LOGS,
        XRAY,
    ]


def test_native_state_machine_policy_is_exactly_the_specified_grants() -> None:
    assert native_state_machine_policy()["Statement"] == [
        UPDATE_JOB_RECORDS,
        RUN_SCORING_TASK,
        {
            "Sid": "WatchScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:StopTask", "ecs:DescribeTasks"],
            "Resource": [TASKS_ARN],
        },
        PASS_SCORING_ROLES,
        {
            "Sid": "ManageEcsSyncRule",
            "Effect": "Allow",
            "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            "Resource": [SYNC_RULE_ARN],
        },
        DELIVER_LOGS,
        XRAY,
    ]


def test_native_state_machine_policy_needs_the_ecs_arns() -> None:
    with pytest.raises(ValueError, match="native polling needs task_definition_arn"):
        native_state_machine_policy(cluster_arn=None)
    with pytest.raises(ValueError, match="task_role_arn must be an ARN"):
        native_state_machine_policy(task_role_arn="scoring-task-role")


def test_state_machine_policy_needs_arns() -> None:
    with pytest.raises(ValueError, match="table_arn must be an ARN"):
        policies.state_machine_policy(table_arn="jobs", function_arns=[], native=False)
    with pytest.raises(ValueError, match=r"function_arns\[1\] must be an ARN"):
        policies.state_machine_policy(
            table_arn=TABLE_ARN, function_arns=[RUN_ECS_ARN, "check"], native=False
        )


@pytest.mark.parametrize(
    ("builder", "field"),
    [
        (sfn_job_api_policy, "state_machine_arn"),
        (sfn_job_api_policy, "metadata_object_arn"),
        (sfn_job_api_policy, "log_group_arn"),
        (run_ecs_policy, "task_definition_arn"),
        (run_ecs_policy, "execution_role_arn"),
        (check_job_status_policy, "cluster_arn"),
        (check_job_status_policy, "table_arn"),
    ],
)
def test_step_functions_policies_need_arns(builder: Any, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be an ARN"):
        builder(**{field: "not-an-arn"})


def test_state_machine_executions_arn() -> None:
    assert policies.state_machine_executions_arn(STATE_MACHINE_ARN) == EXECUTIONS_ARN
    assert policies.state_machine_executions_arn(
        "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:m"
    ) == ("arn:aws-cn:states:cn-north-1:123456789012:execution:m:*")


def test_ecs_sync_rule_arn_keeps_partition_region_and_account() -> None:
    assert policies.ecs_sync_rule_arn(CLUSTER_ARN) == SYNC_RULE_ARN
    assert policies.ecs_sync_rule_arn("arn:aws-cn:ecs:cn-north-1:210987654321:cluster/c") == (
        "arn:aws-cn:events:cn-north-1:210987654321:rule/StepFunctionsGetEventsForECSTaskRule"
    )


@pytest.mark.parametrize(
    ("function", "value", "message"),
    [
        (policies.state_machine_executions_arn, "workflow", "must be an ARN"),
        (policies.state_machine_executions_arn, CLUSTER_ARN, "not a state machine ARN"),
        (
            policies.state_machine_executions_arn,
            f"{STATE_MACHINE_ARN}:v1",
            "not a state machine ARN",
        ),
        (policies.ecs_sync_rule_arn, TASK_DEFINITION_ARN, "not an ECS cluster ARN"),
        (policies.ecs_sync_rule_arn, "scoring-cluster", "must be an ARN"),
    ],
)
def test_step_functions_arn_helpers_reject(function: Any, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(value)


def test_the_alarm_topic_policy_needs_an_sns_topic_arn() -> None:
    from components.policies import alarm_topic_policy

    document = alarm_topic_policy("arn:aws:sns:eu-west-1:210987654321:alarms-1")
    (allow,) = [s for s in document["Statement"] if s["Effect"] == "Allow"]
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": "210987654321"}}
    assert allow["Action"] == "sns:Publish"  # publishing only: no subscribe, no topic changes
    for bad in ("arn:aws:sqs:eu-west-1:210987654321:q", "arn:aws:sns:eu-west-1::t", "topic"):
        with pytest.raises(ValueError):
            alarm_topic_policy(bad)


CANARY_ARN = "arn:aws:s3:::bucket-123/models/example/def/model.ubj"


def test_the_predictor_of_a_canary_reads_both_model_objects_only() -> None:
    (read, _) = policies.realtime_predictor_policy(MODEL_ARN, LOG_GROUP_ARN, CANARY_ARN)[
        "Statement"
    ]
    assert read == {
        "Sid": "ReadModel",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": [MODEL_ARN, CANARY_ARN],
    }
    with pytest.raises(ValueError, match="canary_object_arn"):
        policies.realtime_predictor_policy(MODEL_ARN, LOG_GROUP_ARN, "bucket/key")


def test_the_scoring_containers_of_a_canary_read_both_model_objects_only() -> None:
    """The ECS task and the Batch job score a job with the version its record names: they may
    read the canary's object too, nothing else more (the canary listed last)."""
    plain = policies.scoring_task_policy(TABLE_ARN, BUCKET_ARN, MODEL_ARN)
    with_canary = policies.scoring_task_policy(TABLE_ARN, BUCKET_ARN, MODEL_ARN, CANARY_ARN)
    (read,) = [s for s in with_canary["Statement"] if s["Sid"] == "ReadModelAndInputs"]
    assert read["Resource"] == [MODEL_ARN, f"{BUCKET_ARN}/inputs/*", CANARY_ARN]
    others = [s for s in with_canary["Statement"] if s["Sid"] != "ReadModelAndInputs"]
    assert others == [s for s in plain["Statement"] if s["Sid"] != "ReadModelAndInputs"]

    batch = policies.batch_job_policy(
        table_arn=TABLE_ARN,
        bucket_arn=BUCKET_ARN,
        model_object_arn=MODEL_ARN,
        canary_object_arn=CANARY_ARN,
    )
    plain = policies.batch_job_policy(
        table_arn=TABLE_ARN, bucket_arn=BUCKET_ARN, model_object_arn=MODEL_ARN
    )
    (read,) = [s for s in batch["Statement"] if s["Sid"] == "ReadModelAndInputs"]
    assert read["Resource"] == [MODEL_ARN, f"{BUCKET_ARN}/inputs/*", CANARY_ARN]
    others = [s for s in batch["Statement"] if s["Sid"] != "ReadModelAndInputs"]
    assert others == [s for s in plain["Statement"] if s["Sid"] != "ReadModelAndInputs"]
    for bad in (
        lambda: policies.scoring_task_policy(TABLE_ARN, BUCKET_ARN, MODEL_ARN, "bucket/key"),
        lambda: policies.batch_job_policy(
            table_arn=TABLE_ARN,
            bucket_arn=BUCKET_ARN,
            model_object_arn=MODEL_ARN,
            canary_object_arn="*",
        ),
    ):
        with pytest.raises(ValueError, match="canary_object_arn"):
            bad()


def test_capture_writer_policy_writes_under_capture_only() -> None:
    bucket = "arn:aws:s3:::bucket-123"
    assert policies.capture_writer_policy(bucket, LOG_GROUP_ARN) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteCapture",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": ["arn:aws:s3:::bucket-123/capture/*"],
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{LOG_GROUP_ARN}:*"],
            },
        ],
    }

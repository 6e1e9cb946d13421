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
CAPTURE_PREFIX: Final = "capture/"  # runtime/contract.py's CAPTURE_PREFIX (checked equal too)
# The job table's caller index (runtime/contract.py's JOB_TABLE_CALLER_INDEX; checked equal too).
JOB_TABLE_CALLER_INDEX: Final = "by-caller"


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


def realtime_predictor_policy(
    model_object_arn: str, log_group_arn: str, canary_object_arn: str | None = None
) -> PolicyDocument:
    """The predictor's only grants: read its model object (and the canary's, when one is
    deployed), write to its own log group.

    No ``logs:CreateLogGroup``: the log group is created by the stack, not by the function.
    ``log_group_arn`` is the group's ARN without the trailing ``:*`` (as CloudWatch reports it);
    log streams live under ``{log_group_arn}:*``. Data capture adds nothing here: the
    predictor only writes capture lines to its own log.
    """
    _require_arn(model_object_arn, "model_object_arn")
    _require_arn(log_group_arn, "log_group_arn")
    return _document(
        {
            "Sid": "ReadModel",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [model_object_arn, *_canary_objects(canary_object_arn)],
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn.removesuffix(':*')}:*"],
        },
    )


def capture_writer_policy(bucket_arn: str, log_group_arn: str) -> PolicyDocument:
    """The capture function's grants: write objects under ``capture/`` of the model bucket,
    write to its own log group. Nothing to read: CloudWatch Logs invokes it with the records."""
    _require_arn(bucket_arn, "bucket_arn")
    _require_arn(log_group_arn, "log_group_arn")
    return _document(
        {
            "Sid": "WriteCapture",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [_prefix_arn(bucket_arn, CAPTURE_PREFIX)],
        },
        _own_logs_statement(log_group_arn),
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


def _canary_objects(canary_object_arn: str | None) -> list[str]:
    """The canary's model object when one is deployed (issue 17), else nothing. Listed after
    a statement's other resources, so theirs keep their places whether or not a canary is."""
    if canary_object_arn is None:
        return []
    _require_arn(canary_object_arn, "canary_object_arn")
    return [canary_object_arn]


def scoring_task_policy(
    table_arn: str, bucket_arn: str, model_object_arn: str, canary_object_arn: str | None = None
) -> PolicyDocument:
    """The scoring container's grants (``python -m runtime.scoring``, job mode).

    It reads and conditionally updates its job record, reads the model object (and the
    canary's, when one is deployed: a job names the version that scores it) and the job's
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
            "Resource": [
                model_object_arn,
                _prefix_arn(bucket_arn, INPUTS_PREFIX),
                *_canary_objects(canary_object_arn),
            ],
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
    _require_arns(
        table_arn=table_arn,
        bucket_arn=bucket_arn,
        metadata_object_arn=metadata_object_arn,
        task_definition_arn=task_definition_arn,
        cluster_arn=cluster_arn,
        task_role_arn=task_role_arn,
        execution_role_arn=execution_role_arn,
        log_group_arn=log_group_arn,
    )
    return _document(
        *_job_api_data_statements(table_arn, bucket_arn, metadata_object_arn),
        _run_scoring_task_statement(task_definition_arn, cluster_arn),
        {
            "Sid": "WatchScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": [cluster_tasks_arn(cluster_arn)],
        },
        _pass_scoring_roles_statement(task_role_arn, execution_role_arn),
        _own_logs_statement(log_group_arn),
    )


def _job_api_data_statements(
    table_arn: str, bucket_arn: str, metadata_object_arn: str
) -> list[dict[str, Any]]:
    """What every job API (``runtime.handlers.jobs``) does with its data, whatever the compute:
    create/read/update job records and list the caller's (``Query`` on the caller index), read
    the model metadata, read results (a finished job's ``predictions.json`` answered by
    ``POST /predict``; the presigned ``result_url`` of GET /jobs/{id} is signed with this role,
    so it needs ``s3:GetObject`` on ``results/*`` itself), read inputs (``HeadObject`` of an
    upload before POST /jobs/{id}/start) and write inputs (spilled rows, and the presigned
    upload URLs, signed with this role)."""
    return [
        {
            "Sid": "JobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        {
            "Sid": "ListCallerJobs",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [job_table_caller_index_arn(table_arn)],
        },
        {
            "Sid": "ReadMetadataInputsAndResults",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [
                metadata_object_arn,
                _prefix_arn(bucket_arn, INPUTS_PREFIX),
                _prefix_arn(bucket_arn, RESULTS_PREFIX),
            ],
        },
        {
            "Sid": "WriteInputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [_prefix_arn(bucket_arn, INPUTS_PREFIX)],
        },
    ]


def job_table_caller_index_arn(table_arn: str) -> str:
    """``arn:...:table/<name>`` -> its caller index (GET /jobs): ``.../index/by-caller``."""
    return f"{table_arn}/index/{JOB_TABLE_CALLER_INDEX}"


def _run_scoring_task_statement(task_definition_arn: str, cluster_arn: str) -> dict[str, Any]:
    """``ecs:RunTask`` on every revision of the scoring family, only in the scoring cluster."""
    return {
        "Sid": "RunScoringTask",
        "Effect": "Allow",
        "Action": ["ecs:RunTask"],
        "Resource": [task_definition_family_arn(task_definition_arn)],
        "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
    }


def _pass_scoring_roles_statement(task_role_arn: str, execution_role_arn: str) -> dict[str, Any]:
    """``iam:PassRole`` on the scoring task's two roles, and only to ECS tasks."""
    return {
        "Sid": "PassScoringRoles",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [task_role_arn, execution_role_arn],
        "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_SERVICE}},
    }


def _own_logs_statement(log_group_arn: str) -> dict[str, Any]:
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [_log_streams_arn(log_group_arn)],
    }


# --- Step Functions (stepfunctions-ecs) -----------------------------------------------------------
STATES_SERVICE: Final = "states.amazonaws.com"
# The EventBridge rule Step Functions creates and manages itself for `ecs:runTask.sync`.
ECS_SYNC_RULE_NAME: Final = "StepFunctionsGetEventsForECSTaskRule"
# Actions AWS supports only with Resource "*": a state machine's CloudWatch Logs delivery (Step
# Functions sets up a vended log delivery to the group) and X-Ray tracing. No resource-level
# permissions exist for them, so "*" is the only possible grant.
LOG_DELIVERY_ACTIONS: Final = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
XRAY_ACTIONS: Final = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)


def states_assume_role_policy() -> PolicyDocument:
    """Trust policy letting Step Functions assume a state machine's role."""
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": STATES_SERVICE},
            "Action": "sts:AssumeRole",
        }
    )


def job_api_sfn_policy(
    *,
    table_arn: str,
    bucket_arn: str,
    metadata_object_arn: str,
    state_machine_arn: str,
    cluster_arn: str,
    log_group_arn: str,
) -> PolicyDocument:
    """The stepfunctions-ecs job API's grants: job records, its S3 prefixes, the workflow.

    It starts executions of its state machine (one per job, named after the job id), stops and
    describes them (cancel, reconcile), and stops a recorded scoring task on cancel. It never
    runs a task itself: the workflow does.
    """
    _require_arns(
        table_arn=table_arn,
        bucket_arn=bucket_arn,
        metadata_object_arn=metadata_object_arn,
        state_machine_arn=state_machine_arn,
        cluster_arn=cluster_arn,
        log_group_arn=log_group_arn,
    )
    return _document(
        *_job_api_data_statements(table_arn, bucket_arn, metadata_object_arn),
        {
            "Sid": "StartWorkflow",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [state_machine_arn],
        },
        {
            "Sid": "WatchWorkflows",
            "Effect": "Allow",
            "Action": ["states:StopExecution", "states:DescribeExecution"],
            "Resource": [state_machine_executions_arn(state_machine_arn)],
        },
        {
            "Sid": "StopScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:StopTask"],
            "Resource": [cluster_tasks_arn(cluster_arn)],
        },
        _own_logs_statement(log_group_arn),
    )


def run_ecs_policy(
    *,
    table_arn: str,
    task_definition_arn: str,
    cluster_arn: str,
    task_role_arn: str,
    execution_role_arn: str,
    log_group_arn: str,
) -> PolicyDocument:
    """The RunECS step's grants: run the scoring task, read the job and record the task's ARN
    on it (``GetItem``, ``UpdateItem``), and stop the task it just started when the job was
    cancelled meanwhile (``ecs:StopTask`` on the cluster's tasks)."""
    _require_arns(
        table_arn=table_arn,
        task_definition_arn=task_definition_arn,
        cluster_arn=cluster_arn,
        task_role_arn=task_role_arn,
        execution_role_arn=execution_role_arn,
        log_group_arn=log_group_arn,
    )
    return _document(
        _run_scoring_task_statement(task_definition_arn, cluster_arn),
        _pass_scoring_roles_statement(task_role_arn, execution_role_arn),
        {
            "Sid": "StopCancelledTask",
            "Effect": "Allow",
            "Action": ["ecs:StopTask"],
            "Resource": [cluster_tasks_arn(cluster_arn)],
        },
        {
            "Sid": "RecordTask",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        _own_logs_statement(log_group_arn),
    )


def check_job_status_policy(
    *, table_arn: str, cluster_arn: str, log_group_arn: str
) -> PolicyDocument:
    """The CheckJobStatus step's grants: describe the scoring tasks, read the job record."""
    _require_arns(table_arn=table_arn, cluster_arn=cluster_arn, log_group_arn=log_group_arn)
    return _document(
        {
            "Sid": "DescribeScoringTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks"],
            "Resource": [cluster_tasks_arn(cluster_arn)],
        },
        {
            "Sid": "ReadJobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem"],
            "Resource": [table_arn],
        },
        _own_logs_statement(log_group_arn),
    )


def state_machine_policy(
    *,
    table_arn: str,
    function_arns: list[str] | tuple[str, ...],
    native: bool,
    task_definition_arn: str | None = None,
    cluster_arn: str | None = None,
    task_role_arn: str | None = None,
    execution_role_arn: str | None = None,
) -> PolicyDocument:
    """The stepfunctions-ecs state machine's grants.

    * ``lambda:InvokeFunction`` on the step functions (``function_arns``: RunECS and
      CheckJobStatus with ``polling: lambda``; none with ``polling: native``): their
      unqualified ARNs, the ones the definition's Lambda tasks name (no version or alias).
    * ``dynamodb:UpdateItem`` on the job table (RecordRunning, MarkSucceeded, MarkFailed).
    * ``native`` (``ecs:runTask.sync``): run the scoring task in its cluster, pass its two roles
      to ECS, stop and describe its tasks, and manage the EventBridge rule Step Functions uses
      to learn that a task stopped (``rule/StepFunctionsGetEventsForECSTaskRule``).
    * CloudWatch Logs delivery and X-Ray: Resource "*" (see LOG_DELIVERY_ACTIONS).
    """
    _require_arns(table_arn=table_arn)
    for index, function_arn in enumerate(function_arns):
        _require_arn(function_arn, f"function_arns[{index}]")
    statements: list[dict[str, Any]] = []
    if function_arns:
        statements.append(
            {
                "Sid": "InvokeStepFunctions",
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction"],
                "Resource": list(function_arns),
            }
        )
    statements.append(
        {
            "Sid": "UpdateJobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [table_arn],
        }
    )
    if native:
        if (
            task_definition_arn is None
            or cluster_arn is None
            or task_role_arn is None
            or execution_role_arn is None
        ):
            raise ValueError(
                "native polling needs task_definition_arn, cluster_arn, task_role_arn "
                "and execution_role_arn"
            )
        _require_arns(
            task_definition_arn=task_definition_arn,
            cluster_arn=cluster_arn,
            task_role_arn=task_role_arn,
            execution_role_arn=execution_role_arn,
        )
        statements += [
            _run_scoring_task_statement(task_definition_arn, cluster_arn),
            {
                "Sid": "WatchScoringTasks",
                "Effect": "Allow",
                "Action": ["ecs:StopTask", "ecs:DescribeTasks"],
                "Resource": [cluster_tasks_arn(cluster_arn)],
            },
            _pass_scoring_roles_statement(task_role_arn, execution_role_arn),
            {
                "Sid": "ManageEcsSyncRule",
                "Effect": "Allow",
                "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                "Resource": [ecs_sync_rule_arn(cluster_arn)],
            },
        ]
    statements += [
        {
            "Sid": "DeliverLogs",
            "Effect": "Allow",
            "Action": list(LOG_DELIVERY_ACTIONS),
            # AWS requires "*": the log delivery actions have no resource-level permissions.
            "Resource": ["*"],
        },
        {
            "Sid": "XRayTracing",
            "Effect": "Allow",
            "Action": list(XRAY_ACTIONS),
            # AWS requires "*": the X-Ray actions have no resource-level permissions.
            "Resource": ["*"],
        },
    ]
    return _document(*statements)


def state_machine_executions_arn(state_machine_arn: str) -> str:
    """``arn:...:stateMachine:<name>`` -> ``arn:...:execution:<name>:*`` (its executions)."""
    _require_arn(state_machine_arn, "state_machine_arn")
    head, sep, name = state_machine_arn.partition(":stateMachine:")
    if not sep or not name or ":" in name:
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return f"{head}:execution:{name}:*"


def ecs_sync_rule_arn(cluster_arn: str) -> str:
    """The EventBridge rule of ``ecs:runTask.sync`` in the cluster's partition/region/account."""
    _require_arn(cluster_arn, "cluster_arn")
    parts = cluster_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "ecs" or not parts[5].startswith("cluster/"):
        raise ValueError(f"not an ECS cluster ARN: {cluster_arn!r}")
    _, partition, _, region, account, _ = parts
    return f"arn:{partition}:events:{region}:{account}:rule/{ECS_SYNC_RULE_NAME}"


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


def _require_arns(**arns: str) -> None:
    for name, value in arns.items():
        _require_arn(value, name)


def _require_arn(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.startswith("arn:"):
        raise ValueError(f"{name} must be an ARN (arn:...), got {value!r}")


# --- AWS Batch (stepfunctions-batch) --------------------------------------------------------------
# The S3 prefix of job configs (runtime/contract.py's JOBS_PREFIX / JOBS_REJECTED_PREFIX).
JOBS_PREFIX: Final = "jobs/"
JOBS_REJECTED_PREFIX: Final = "jobs/rejected/"


def batch_job_policy(
    *,
    table_arn: str,
    bucket_arn: str,
    model_object_arn: str,
    input_prefixes: list[str] | tuple[str, ...] = (INPUTS_PREFIX,),
    output_prefixes: list[str] | tuple[str, ...] = (RESULTS_PREFIX,),
    canary_object_arn: str | None = None,
) -> PolicyDocument:
    """The Batch scoring job's grants (``python -m runtime.scoring --mode batch``).

    * its job record: ``UpdateItem`` only (its ``ALL_NEW`` answer is the job's config: the
      attempt count is incremented and the record read in one conditional call; then rows);
    * the model object (and the canary's, when one is deployed) and every object under the
      input prefixes: ``GetObject``;
    * ``ListBucket`` on the bucket, only for keys under the input prefixes (an input given as a
      prefix is listed) and the output prefixes (the last shard checks every part exists);
    * ``PutObject`` under the output prefixes (the parts, uploaded multipart, and
      ``_manifest.json``), ``AbortMultipartUpload`` (boto3's upload_file aborts a failed
      upload), and ``GetObject`` there too (HeadObject of the other parts for the manifest; the
      parts of a small job read back to record its predictions inline).

    Every prefix must end in ``/`` and lie inside the stack's bucket.
    """
    _require_arns(table_arn=table_arn, bucket_arn=bucket_arn, model_object_arn=model_object_arn)
    inputs = _require_prefixes(input_prefixes, "input_prefixes")
    outputs = _require_prefixes(output_prefixes, "output_prefixes")
    listed = list(dict.fromkeys([*inputs, *outputs]))
    return _document(
        {
            "Sid": "JobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        {
            "Sid": "ReadModelAndInputs",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [
                model_object_arn,
                *(_prefix_arn(bucket_arn, p) for p in inputs),
                *_canary_objects(canary_object_arn),
            ],
        },
        {
            "Sid": "ListInputsAndParts",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in listed]}},
        },
        {
            "Sid": "WriteAndReadParts",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"],
            "Resource": [_prefix_arn(bucket_arn, p) for p in outputs],
        },
    )


def _require_prefixes(prefixes: list[str] | tuple[str, ...], name: str) -> list[str]:
    if not prefixes:
        raise ValueError(f"{name} must name at least one prefix")
    for prefix in prefixes:
        if (
            not isinstance(prefix, str)
            or not prefix.endswith("/")
            or prefix.startswith("/")
            or "*" in prefix
            or prefix == "/"
        ):
            raise ValueError(f"{name}: {prefix!r} is not a key prefix ending in '/'")
    return list(dict.fromkeys(prefixes))


def job_config_trigger_policy(
    *, table_arn: str, bucket_arn: str, state_machine_arn: str, log_group_arn: str
) -> PolicyDocument:
    """The trigger Lambda's grants (S3 ObjectCreated on ``jobs/*.json``).

    It reads the job config, checks for a duplicate event (``GetItem``), records the job
    (``PutItem`` with ``attribute_not_exists``: a PENDING job, or a FAILED one for an invalid
    config), completes it (``UpdateItem``: default output_uri/shards/priority; FAILED when the
    execution cannot start), starts the workflow, and moves an invalid config to
    ``jobs/rejected/`` (copy = GetObject on the source + PutObject on the destination, then
    DeleteObject of the source).
    """
    _require_arns(
        table_arn=table_arn,
        bucket_arn=bucket_arn,
        state_machine_arn=state_machine_arn,
        log_group_arn=log_group_arn,
    )
    return _document(
        {
            "Sid": "RecordJobs",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        {
            "Sid": "ReadAndRemoveJobConfigs",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": [_prefix_arn(bucket_arn, JOBS_PREFIX)],
        },
        {
            "Sid": "RejectJobConfigs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [_prefix_arn(bucket_arn, JOBS_REJECTED_PREFIX)],
        },
        {
            "Sid": "StartWorkflow",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [state_machine_arn],
        },
        _own_logs_statement(log_group_arn),
    )


# The EventBridge rule Step Functions creates and manages itself for `batch:submitJob.sync`.
BATCH_SYNC_RULE_NAME: Final = "StepFunctionsGetEventsForBatchJobsRule"


def _submit_scoring_job_statement(
    job_queue_arns: list[str] | tuple[str, ...], job_definition_arn: str
) -> dict[str, Any]:
    """``batch:SubmitJob`` to the scoring queues with every revision of the scoring job
    definition.

    SubmitJob is authorised on three resources, all required: the job queue, the job
    definition and the job it creates (``job/*``: its id does not exist before the call)."""
    if not job_queue_arns:
        raise ValueError("job_queue_arns must name at least one queue")
    for index, queue_arn in enumerate(job_queue_arns):
        _require_arn(queue_arn, f"job_queue_arns[{index}]")
    return {
        "Sid": "SubmitScoringJob",
        "Effect": "Allow",
        "Action": ["batch:SubmitJob"],
        "Resource": [
            *job_queue_arns,
            batch_job_definition_family_arn(job_definition_arn),
            batch_jobs_arn(job_queue_arns[0]),
        ],
    }


def _describe_batch_jobs_statement() -> dict[str, Any]:
    return {
        "Sid": "DescribeScoringJobs",
        "Effect": "Allow",
        "Action": ["batch:DescribeJobs"],
        # AWS requires "*": DescribeJobs has no resource-level permissions.
        "Resource": ["*"],
    }


def submit_batch_job_policy(
    *,
    table_arn: str,
    job_queue_arns: list[str] | tuple[str, ...],
    job_definition_arn: str,
    log_group_arn: str,
) -> PolicyDocument:
    """The SubmitBatchJob step's grants: read the job's shards/priority, submit the scoring
    job (an array job when sharded) to that priority's queue, tagged with its job id
    (``batch:TagResource`` on Batch jobs: SubmitJob passes tags), record its Batch job id, and
    terminate the job it just submitted when the record was cancelled meanwhile."""
    _require_arns(
        table_arn=table_arn, job_definition_arn=job_definition_arn, log_group_arn=log_group_arn
    )
    jobs = batch_jobs_arn(job_queue_arns[0]) if job_queue_arns else ""
    return _document(
        _submit_scoring_job_statement(job_queue_arns, job_definition_arn),
        {
            "Sid": "TagScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TagResource"],
            "Resource": [jobs],
        },
        {
            "Sid": "TerminateScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TerminateJob"],
            "Resource": [jobs],
        },
        {
            "Sid": "JobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        _own_logs_statement(log_group_arn),
    )


def check_batch_status_policy(*, table_arn: str, log_group_arn: str) -> PolicyDocument:
    """The CheckBatchStatus step's grants: describe the Batch job (and its array children's
    summary), read the record and write the progress counts and attempts on it."""
    _require_arns(table_arn=table_arn, log_group_arn=log_group_arn)
    return _document(
        _describe_batch_jobs_statement(),
        {
            "Sid": "JobRecord",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [table_arn],
        },
        _own_logs_statement(log_group_arn),
    )


def batch_state_machine_policy(
    *,
    table_arn: str,
    function_arns: list[str] | tuple[str, ...],
    native: bool,
    job_queue_arns: list[str] | tuple[str, ...] = (),
    job_definition_arn: str | None = None,
) -> PolicyDocument:
    """The stepfunctions-batch state machine's grants.

    * ``polling: lambda``: invoke SubmitBatchJob and CheckBatchStatus (the unqualified ARNs
      the definition names);
    * ``dynamodb:UpdateItem`` on the job table (RecordRunning, MarkSucceeded, MarkFailed);
    * ``polling: native`` (``batch:submitJob.sync``): submit the scoring job, describe and
      terminate it, and manage the EventBridge rule Step Functions uses to learn that a Batch
      job ended (``rule/StepFunctionsGetEventsForBatchJobsRule``);
    * CloudWatch Logs delivery and X-Ray: Resource "*" (see LOG_DELIVERY_ACTIONS).
    """
    _require_arns(table_arn=table_arn)
    for index, function_arn in enumerate(function_arns):
        _require_arn(function_arn, f"function_arns[{index}]")
    statements: list[dict[str, Any]] = []
    if function_arns:
        statements.append(
            {
                "Sid": "InvokeStepFunctions",
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction"],
                "Resource": list(function_arns),
            }
        )
    statements.append(
        {
            "Sid": "UpdateJobRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [table_arn],
        }
    )
    if native:
        if job_definition_arn is None or not job_queue_arns:
            raise ValueError("native polling needs job_queue_arns and job_definition_arn")
        _require_arns(job_definition_arn=job_definition_arn)
        statements += [
            _submit_scoring_job_statement(job_queue_arns, job_definition_arn),
            _describe_batch_jobs_statement(),
            {
                "Sid": "TerminateScoringJobs",
                "Effect": "Allow",
                "Action": ["batch:TerminateJob"],
                "Resource": [batch_jobs_arn(job_queue_arns[0])],
            },
            {
                "Sid": "ManageBatchSyncRule",
                "Effect": "Allow",
                "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                "Resource": [batch_sync_rule_arn(job_queue_arns[0])],
            },
        ]
    statements += [
        {
            "Sid": "DeliverLogs",
            "Effect": "Allow",
            "Action": list(LOG_DELIVERY_ACTIONS),
            # AWS requires "*": the log delivery actions have no resource-level permissions.
            "Resource": ["*"],
        },
        {
            "Sid": "XRayTracing",
            "Effect": "Allow",
            "Action": list(XRAY_ACTIONS),
            # AWS requires "*": the X-Ray actions have no resource-level permissions.
            "Resource": ["*"],
        },
    ]
    return _document(*statements)


def job_api_batch_policy(
    *,
    table_arn: str,
    bucket_arn: str,
    metadata_object_arn: str,
    state_machine_arn: str,
    job_queue_arn: str,
    log_group_arn: str,
) -> PolicyDocument:
    """The stepfunctions-batch job API's grants: job records, its S3 prefixes (inline rows are
    staged under ``inputs/``; the ``result_url`` of a part of a Batch job's output is signed
    with this role), the workflow, and terminating the Batch job on cancel.
    ``job_queue_arn`` (either queue) gives the region and account of the Batch jobs."""
    _require_arns(
        table_arn=table_arn,
        bucket_arn=bucket_arn,
        metadata_object_arn=metadata_object_arn,
        state_machine_arn=state_machine_arn,
        job_queue_arn=job_queue_arn,
        log_group_arn=log_group_arn,
    )
    return _document(
        *_job_api_data_statements(table_arn, bucket_arn, metadata_object_arn),
        {
            "Sid": "StartWorkflow",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [state_machine_arn],
        },
        {
            "Sid": "WatchWorkflows",
            "Effect": "Allow",
            "Action": ["states:StopExecution", "states:DescribeExecution"],
            "Resource": [state_machine_executions_arn(state_machine_arn)],
        },
        {
            "Sid": "TerminateScoringJobs",
            "Effect": "Allow",
            "Action": ["batch:TerminateJob"],
            "Resource": [batch_jobs_arn(job_queue_arn)],
        },
        _own_logs_statement(log_group_arn),
    )


def _batch_arn_parts(arn: str, kind: str) -> tuple[str, str, str, str]:
    """(partition, region, account, resource) of a Batch ARN whose resource is ``kind/...``."""
    _require_arn(arn, f"{kind} ARN")
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "batch" or not parts[5].startswith(f"{kind}/"):
        raise ValueError(f"not a Batch {kind} ARN: {arn!r}")
    _, partition, _, region, account, resource = parts
    return partition, region, account, resource


def batch_jobs_arn(job_queue_arn: str) -> str:
    """``arn:...:batch:<region>:<account>:job-queue/<name>`` -> ``...:job/*`` (Batch jobs)."""
    partition, region, account, _ = _batch_arn_parts(job_queue_arn, "job-queue")
    return f"arn:{partition}:batch:{region}:{account}:job/*"


def batch_job_definition_family_arn(job_definition_arn: str) -> str:
    """``...:job-definition/<name>:<rev>`` (or without ``:<rev>``) -> ``...<name>:*``: every
    revision, so a deployment that registers a new one never breaks a running submitter."""
    partition, region, account, resource = _batch_arn_parts(job_definition_arn, "job-definition")
    name = resource.removeprefix("job-definition/").split(":", 1)[0]
    if not name:
        raise ValueError(f"not a Batch job-definition ARN: {job_definition_arn!r}")
    return f"arn:{partition}:batch:{region}:{account}:job-definition/{name}:*"


def batch_sync_rule_arn(job_queue_arn: str) -> str:
    """The EventBridge rule of ``batch:submitJob.sync`` in the queue's region and account."""
    partition, region, account, _ = _batch_arn_parts(job_queue_arn, "job-queue")
    return f"arn:{partition}:events:{region}:{account}:rule/{BATCH_SYNC_RULE_NAME}"


# --- alarms (CloudWatch -> SNS) -------------------------------------------------------------------
CLOUDWATCH_SERVICE: Final = "cloudwatch.amazonaws.com"


def alarm_topic_policy(topic_arn: str) -> PolicyDocument:
    """The alarm topic's resource policy: CloudWatch alarms of the topic's own account may
    publish to it (``aws:SourceAccount``, read from the topic's ARN), nothing else is granted
    (principals of the account keep what their IAM policies give them), and publishing without
    TLS is denied."""
    _require_arn(topic_arn, "topic_arn")
    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[2] != "sns" or not parts[4]:
        raise ValueError(f"topic_arn must be an SNS topic ARN, got {topic_arn!r}")
    return _document(
        {
            "Sid": "AlarmsOfThisAccountPublish",
            "Effect": "Allow",
            "Principal": {"Service": CLOUDWATCH_SERVICE},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {"StringEquals": {"aws:SourceAccount": parts[4]}},
        },
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    )

"""What a local deployment holds: every resource the program created, and read-backs from moto.

The stand-ins of the emulator are to be built from this (the deployed handler, environment,
memory and timeout of each function; the state machines; the task and job definitions; the
bucket notification; the REST API's OpenAPI body), never from settings of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from mlserve.local.deploy.apigateway import openapi_body
from mlserve.local.deploy.mapping import Context
from mlserve.local.deploy.runner import Registered
from mlserve.local.deploy.substitutions import Substitution

FUNCTION = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
REST_API = "aws:apigateway/restApi:RestApi"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
JOB_QUEUE = "aws:batch/jobQueue:JobQueue"
NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
SUBSCRIPTION_FILTER = "aws:cloudwatch/logSubscriptionFilter:LogSubscriptionFilter"


@dataclass
class Deployment:
    """A stack deployed into the embedded moto."""

    stack: str
    config: dict[str, str]
    endpoint_url: str
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    resources: list[Registered]
    invocations: list[tuple[str, dict[str, Any]]]
    substitutions: tuple[Substitution, ...]
    seconds: float
    _ctx: Context = field(repr=False)
    # an update (deploy(previous=...)): the resources kept as they were, by name
    kept: tuple[str, ...] = ()

    # --- the records ---------------------------------------------------------------------------
    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ and r.custom]

    def one(self, typ: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {typ} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def named(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one resource named {name!r}, found {len(found)}")
        return found[0]

    def client(self, service: str) -> Any:
        """A boto3 client of the moto the stack was deployed into."""
        return self._ctx.client(service)

    # --- read back from moto -------------------------------------------------------------------
    def functions(self) -> dict[str, dict[str, Any]]:
        """Function name -> GetFunctionConfiguration, for every deployed function."""
        client = self.client("lambda")
        found = {}
        for r in self.of_type(FUNCTION):
            configuration = client.get_function_configuration(FunctionName=r.id)
            declared = r.inputs.get("loggingConfig") or {}
            if "LoggingConfig" not in configuration and declared.get("logGroup"):
                # moto defect: CreateFunction stores no LoggingConfig and
                # GetFunctionConfiguration returns none; it is what the program declared
                configuration["LoggingConfig"] = {
                    "LogFormat": declared.get("logFormat", "Text"),
                    "LogGroup": declared["logGroup"],
                }
            found[r.id] = configuration
        return found

    def subscription_filters(self) -> list[dict[str, Any]]:
        """Every deployed log subscription filter, as DescribeSubscriptionFilters reads it back."""
        client = self.client("logs")
        groups = sorted({str(r.inputs["logGroup"]) for r in self.of_type(SUBSCRIPTION_FILTER)})
        return [
            found
            for group in groups
            for found in client.describe_subscription_filters(logGroupName=group)[
                "subscriptionFilters"
            ]
        ]

    def function_by_handler(self, handler: str) -> dict[str, Any]:
        """The configuration of the one deployed function whose handler is ``handler``."""
        found = [c for c in self.functions().values() if c.get("Handler") == handler]
        if len(found) != 1:
            raise LookupError(f"expected one function with handler {handler!r}, found {len(found)}")
        return found[0]

    def role_policies(self) -> dict[str, dict[str, Any]]:
        """Role name -> {policy name: document}: every inline policy, as moto stores it."""
        iam = self.client("iam")
        result: dict[str, dict[str, Any]] = {}
        for role in self.of_type(ROLE):
            names = iam.list_role_policies(RoleName=role.id)["PolicyNames"]
            result[role.id] = {
                n: _document(iam.get_role_policy(RoleName=role.id, PolicyName=n)["PolicyDocument"])
                for n in names
            }
        return result

    def trust_policies(self) -> dict[str, dict[str, Any]]:
        """Role name -> its trust policy (AssumeRolePolicyDocument), as moto stores it."""
        iam = self.client("iam")
        return {
            role.id: _document(iam.get_role(RoleName=role.id)["Role"]["AssumeRolePolicyDocument"])
            for role in self.of_type(ROLE)
        }

    def assumed_roles(self) -> dict[str, str]:
        """Who assumes which deployed role (role name): ``function:NAME`` and
        ``state-machine:ARN`` per resource; ``ecs-task``/``ecs-execution`` and
        ``batch-job``/``batch-execution`` from the task and job definitions."""
        assumes = {f"function:{name}": str(c["Role"]) for name, c in self.functions().items()}
        for arn, machine in self.state_machines().items():
            assumes[f"state-machine:{arn}"] = str(machine["roleArn"])
        for definition in self.task_definitions().values():
            assumes["ecs-task"] = str(definition["taskRoleArn"])
            assumes["ecs-execution"] = str(definition["executionRoleArn"])
        for definition in self.job_definitions().values():
            properties = definition["containerProperties"]
            assumes["batch-job"] = str(properties["jobRoleArn"])
            assumes["batch-execution"] = str(properties["executionRoleArn"])
        return {who: arn.rsplit("/", 1)[-1] for who, arn in assumes.items()}

    @property
    def rest_api_id(self) -> str:
        return self.one(REST_API).id

    def openapi_body(self) -> dict[str, Any]:
        """The OpenAPI document the REST API was deployed with (moto keeps only its routes)."""
        return openapi_body(self.one(REST_API).inputs)

    def api_resources(self) -> dict[str, set[str]]:
        """Path -> HTTP methods of the deployed REST API, as moto imported them."""
        items = self.client("apigateway").get_resources(restApiId=self.rest_api_id)["items"]
        return {i["path"]: set(i.get("resourceMethods", {})) for i in items}

    def state_machines(self) -> dict[str, dict[str, Any]]:
        """State machine ARN -> DescribeStateMachine."""
        client = self.client("stepfunctions")
        return {
            r.id: client.describe_state_machine(stateMachineArn=r.id)
            for r in self.of_type(STATE_MACHINE)
        }

    def task_definitions(self) -> dict[str, dict[str, Any]]:
        """Task definition ARN -> DescribeTaskDefinition."""
        client = self.client("ecs")
        return {
            arn: client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            for arn in (r.outputs["arn"] for r in self.of_type(TASK_DEFINITION))
        }

    def _batch(self, typ: str, kind: str) -> dict[str, dict[str, Any]]:
        """ARN -> the Describe{Kind}s entry, for every deployed Batch resource of ``typ``."""
        arns = [r.id for r in self.of_type(typ)]
        if not arns:
            return {}
        plural = f"{kind[0].lower()}{kind[1:]}s"  # JobQueue -> jobQueues
        found = getattr(self.client("batch"), f"describe_{_snake(kind)}s")(**{plural: arns})
        return {entry[f"{plural[:-1]}Arn"]: entry for entry in found[plural]}

    def job_definitions(self) -> dict[str, dict[str, Any]]:
        """Job definition ARN -> DescribeJobDefinitions entry."""
        return self._batch(JOB_DEFINITION, "JobDefinition")

    def job_queues(self) -> dict[str, dict[str, Any]]:
        """Job queue ARN -> DescribeJobQueues entry."""
        return self._batch(JOB_QUEUE, "JobQueue")

    def notification_configuration(self, bucket: str) -> dict[str, Any]:
        """GetBucketNotificationConfiguration of ``bucket``."""
        found = self.client("s3").get_bucket_notification_configuration(Bucket=bucket)
        found.pop("ResponseMetadata", None)
        return dict(found)

    def notifications(self) -> dict[str, dict[str, Any]]:
        """Bucket -> notification configuration, for every bucket with a deployed notification."""
        return {
            str(r.inputs["bucket"]): self.notification_configuration(str(r.inputs["bucket"]))
            for r in self.of_type(NOTIFICATION)
        }


def _snake(name: str) -> str:
    """``JobQueue`` -> ``job_queue``."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _document(value: Any) -> dict[str, Any]:
    """A policy document as boto3 returns it (already decoded, or URL-decoded JSON text)."""
    if isinstance(value, dict):
        return value
    return dict(json.loads(unquote(str(value))))

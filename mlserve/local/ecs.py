"""What components/network.py and components/ecs.py create, provisioned in the embedded AWS.

- Network: the default VPC's default subnets (moto creates a default VPC per region, as AWS
  does) and one security group in it with no ingress and all egress.
- ECS: a cluster (Container Insights on), the task's log group, a task role and an execution
  role (trusting ecs-tasks.amazonaws.com), and the Fargate task definition with the one essential
  container ``scoring`` and its environment (JOB_TABLE, DATA_BUCKET, MODEL_URI, MODEL_SHA256,
  ALLOW_MISSING; JOB_ID comes per task as a container override).

A change of a setting the task definition depends on (the image, allowMissing) registers a new
revision, as ``pulumi up`` does; :meth:`EcsStack.task_definition` returns the ARN for a setting.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from mlserve.local.aws import REGION, MotoServer
from mlserve.local.fargate import LOCAL_SCORING_IMAGE
from mlserve.local.functions import RuntimeSettings
from mlserve.local.stores import SharedStores, input_environment, physical_name
from runtime import contract

TASK_CPU = 1024  # the mlserve:taskCpu default
TASK_MEMORY = 2048  # the mlserve:taskMemory default
LOG_STREAM_PREFIX = "scoring"  # streams: scoring/<container name>/<task id>, as components/ecs.py
ASSIGN_PUBLIC_IP = "ENABLED"  # the default VPC has no NAT: the task reaches AWS APIs directly
_ECS_TASKS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass
class EcsStack:
    """The cluster, network and task definition(s) of the ``lambda-ecs`` scoring task."""

    aws: MotoServer
    stores: SharedStores
    cluster_arn: str
    cluster_name: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    family: str
    task_role_arn: str
    execution_role_arn: str
    log_group_name: str
    assign_public_ip: str = ASSIGN_PUBLIC_IP
    _revisions: dict[tuple[str, bool, str], str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def container_environment(self, settings: RuntimeSettings) -> dict[str, str]:
        stores = self.stores
        return {
            contract.ENV_JOB_TABLE: stores.table,
            contract.ENV_DATA_BUCKET: stores.bucket,
            contract.ENV_MODEL_URI: stores.model_uri,
            contract.ENV_MODEL_SHA256: stores.model.sha256,
            **input_environment(settings, stores),
        }

    def task_definition(self, settings: RuntimeSettings) -> str:
        """The ARN (with revision) of the task definition for these settings."""
        image = settings.image or LOCAL_SCORING_IMAGE
        key = (image, settings.allow_missing, settings.unknown_category)
        with self._lock:
            arn = self._revisions.get(key)
            if arn is None:
                arn = self._register(image, self.container_environment(settings))
                self._revisions[key] = arn
            return arn

    def _register(self, image: str, environment: dict[str, str]) -> str:
        container = {
            "name": contract.SCORING_CONTAINER_NAME,
            "image": image,
            "essential": True,
            # moto defect: RunTask sums the containers' memory to place a task and fails with
            # a TypeError (HTTP 500) when a container has none; Fargate itself only needs the
            # task-level memory. components/ecs.py sets it too.
            "memory": TASK_MEMORY,
            "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group_name,
                    "awslogs-region": REGION,
                    "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                },
            },
        }
        response = self.aws.client("ecs").register_task_definition(
            family=self.family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=str(TASK_CPU),
            memory=str(TASK_MEMORY),
            runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
            taskRoleArn=self.task_role_arn,
            executionRoleArn=self.execution_role_arn,
            containerDefinitions=[container],
        )
        return str(response["taskDefinition"]["taskDefinitionArn"])

    def job_api_environment(self, settings: RuntimeSettings) -> dict[str, str]:
        """The ECS_* variables of the job API function."""
        return {
            contract.ENV_ECS_CLUSTER: self.cluster_arn,
            contract.ENV_ECS_TASK_DEFINITION: self.task_definition(settings),
            contract.ENV_ECS_SUBNETS: ",".join(self.subnets),
            contract.ENV_ECS_SECURITY_GROUPS: ",".join(self.security_groups),
            contract.ENV_ECS_ASSIGN_PUBLIC_IP: self.assign_public_ip,
        }


def default_vpc_subnets(ec2: Any) -> tuple[str, tuple[str, ...]]:
    """The default VPC and its default subnets (one per availability zone)."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise RuntimeError("the embedded AWS has no default VPC")
    vpc_id = str(vpcs[0]["VpcId"])
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    return vpc_id, tuple(sorted(str(s["SubnetId"]) for s in subnets))


def provision_ecs(aws: MotoServer, stores: SharedStores) -> EcsStack:
    ec2, ecs, iam, logs = (aws.client(s) for s in ("ec2", "ecs", "iam", "logs"))
    vpc_id, subnets = default_vpc_subnets(ec2)
    group = ec2.create_security_group(
        GroupName=physical_name("scoring-sg"),
        Description="mlserve scoring task: no ingress, all egress (AWS APIs over HTTPS)",
        VpcId=vpc_id,
    )["GroupId"]  # a new group allows all egress and no ingress
    cluster = ecs.create_cluster(
        clusterName=physical_name("cluster"),
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )["cluster"]
    log_group = f"/mlserve/local/{physical_name('scoring')}"
    logs.create_log_group(logGroupName=log_group)
    roles = {}
    for role, description in (
        ("task-role", "mlserve scoring task: its job record, the model, inputs/ and results/"),
        ("execution-role", "ECS agent for the mlserve scoring task: pull the image, write logs"),
    ):
        roles[role] = iam.create_role(
            RoleName=physical_name(role),
            AssumeRolePolicyDocument=json.dumps(_ECS_TASKS_TRUST),
            Description=description,
        )["Role"]["Arn"]
    return EcsStack(
        aws=aws,
        stores=stores,
        cluster_arn=str(cluster["clusterArn"]),
        cluster_name=str(cluster["clusterName"]),
        subnets=subnets,
        security_groups=(str(group),),
        family=physical_name("scoring"),
        task_role_arn=str(roles["task-role"]),
        execution_role_arn=str(roles["execution-role"]),
        log_group_name=log_group,
    )

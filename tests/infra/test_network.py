"""components/network.py: where the scoring tasks run (default VPC unless configured)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.network import (
    Network,
    NetworkArgs,
    default_subnet_filters,
    require_subnets,
)
from tests.infra.conftest import (
    CONFIGURED_VPC_ID,
    DEFAULT_SUBNET_IDS,
    DEFAULT_VPC_ID,
    StackRun,
    run_program,
    run_stack,
)

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
NETWORK = "mlserve:index:Network"
GET_VPC = "aws:ec2/getVpc:getVpc"
GET_SUBNETS = "aws:ec2/getSubnets:getSubnets"
GET_SUBNET = "aws:ec2/getSubnet:getSubnet"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
GROUPS = ["sg-0123456789abcdef0"]


def job_api_env(run: StackRun) -> dict[str, str]:
    return run.named("lambda-ecs-function").inputs["environment"]["variables"]


def network_outputs(run: StackRun) -> dict[str, Any]:
    return run.component_outputs[run.one(NETWORK).urn]


def invoked(run: StackRun, token: str) -> list[dict[str, Any]]:
    return [args for t, args in run.invocations if t == token]


@pytest.fixture(scope="module")
def default_network(base_config: dict[str, str]) -> StackRun:
    return run_stack({**base_config, "architecture": "lambda-ecs"})


def test_default_vpc_subnets_and_a_new_egress_only_group(default_network: StackRun) -> None:
    run = default_network
    assert invoked(run, GET_VPC) == [{"default": True}]
    assert invoked(run, GET_SUBNETS) == [{"filters": default_subnet_filters(DEFAULT_VPC_ID)}]
    assert default_subnet_filters(DEFAULT_VPC_ID) == [
        {"name": "vpc-id", "values": [DEFAULT_VPC_ID]},
        {"name": "default-for-az", "values": ["true"]},
    ]
    assert GET_SUBNET not in run.calls
    group = run.one(SECURITY_GROUP, "network-tasks")
    assert group.parent == run.one(NETWORK).urn
    assert group.inputs == {
        "description": (
            "mlserve scoring tasks: no inbound; all outbound, to reach ECR, S3, DynamoDB and "
            "CloudWatch Logs"
        ),
        "vpcId": DEFAULT_VPC_ID,
        "ingress": [],
        "egress": [
            {
                "description": "AWS APIs (ECR, S3, DynamoDB, CloudWatch Logs)",
                "protocol": "-1",
                "fromPort": 0,
                "toPort": 0,
                "cidrBlocks": ["0.0.0.0/0"],
            }
        ],
    }
    assert "name" not in group.inputs
    env = job_api_env(run)
    assert env["ECS_SUBNETS"] == ",".join(sorted(DEFAULT_SUBNET_IDS))
    assert env["ECS_SECURITY_GROUPS"] == group.id
    # no NAT in the default VPC: the task needs a public IP to reach ECR, S3 and DynamoDB
    assert env["ECS_ASSIGN_PUBLIC_IP"] == "ENABLED"
    assert network_outputs(run) == {
        "subnet_ids": sorted(DEFAULT_SUBNET_IDS),
        "security_group_ids": [group.id],
        "assign_public_ip": "ENABLED",
        "vpc_id": DEFAULT_VPC_ID,
    }


def test_configured_subnets_get_no_public_ip_and_a_group_in_their_vpc(
    base_config: dict[str, str],
) -> None:
    run = run_stack({**base_config, "architecture": "lambda-ecs", "subnetIds": json.dumps(SUBNETS)})
    assert GET_VPC not in run.calls and GET_SUBNETS not in run.calls
    assert invoked(run, GET_SUBNET) == [{"id": SUBNETS[0]}]
    group = run.one(SECURITY_GROUP)
    assert group.inputs["vpcId"] == CONFIGURED_VPC_ID
    assert group.inputs["ingress"] == []
    env = job_api_env(run)
    assert env["ECS_SUBNETS"] == ",".join(SUBNETS)  # configured order kept
    assert env["ECS_SECURITY_GROUPS"] == group.id
    assert env["ECS_ASSIGN_PUBLIC_IP"] == "DISABLED"


def test_configured_groups_in_the_default_vpc(base_config: dict[str, str]) -> None:
    run = run_stack(
        {**base_config, "architecture": "lambda-ecs", "securityGroupIds": ",".join(GROUPS)}
    )
    assert run.of_type(SECURITY_GROUP) == []
    assert GET_VPC in run.calls and GET_SUBNETS in run.calls
    env = job_api_env(run)
    assert env["ECS_SUBNETS"] == ",".join(sorted(DEFAULT_SUBNET_IDS))
    assert env["ECS_SECURITY_GROUPS"] == ",".join(GROUPS)
    assert env["ECS_ASSIGN_PUBLIC_IP"] == "ENABLED"


def test_fully_configured_network_creates_and_looks_up_nothing(
    base_config: dict[str, str],
) -> None:
    groups = [*GROUPS, "sg-0123456789abcdef9"]
    run = run_stack(
        {
            **base_config,
            "architecture": "lambda-ecs",
            "subnetIds": json.dumps(SUBNETS),
            "securityGroupIds": json.dumps(groups),
        }
    )
    assert run.of_type(SECURITY_GROUP) == []
    assert run.children(run.one(NETWORK)) == []
    assert not {GET_VPC, GET_SUBNETS, GET_SUBNET} & set(run.calls)
    env = job_api_env(run)
    assert env["ECS_SUBNETS"] == ",".join(SUBNETS)
    assert env["ECS_SECURITY_GROUPS"] == ",".join(groups)
    assert env["ECS_ASSIGN_PUBLIC_IP"] == "DISABLED"
    assert "vpc_id" not in network_outputs(run)  # None: no VPC needed


def test_network_is_built_only_for_container_architectures(default_run: StackRun) -> None:
    assert default_run.of_type(NETWORK) == []
    assert default_run.of_type(SECURITY_GROUP) == []
    assert not {GET_VPC, GET_SUBNETS, GET_SUBNET} & set(default_run.calls)


def test_a_default_vpc_without_default_subnets_is_explained() -> None:
    with pytest.raises(ValueError, match=r"no default subnets; set mlserve:subnetIds"):
        require_subnets([])
    assert require_subnets(["subnet-b", "subnet-a"]) == ["subnet-a", "subnet-b"]


def test_network_component_alone() -> None:
    def program() -> None:
        network = Network("net", NetworkArgs())
        pulumi.export("subnets", network.subnet_ids)
        pulumi.export("groups", network.security_group_ids)

    run = run_program(program)
    group = run.one(SECURITY_GROUP, "net-tasks")
    assert run.exports == {"subnets": sorted(DEFAULT_SUBNET_IDS), "groups": [group.id]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subnet_ids": ("subnet-xyz",)}, "subnet_ids: invalid id 'subnet-xyz'"),
        ({"security_group_ids": ("vpc-12345678",)}, "security_group_ids: invalid id"),
        ({"subnet_ids": (SUBNETS[0], SUBNETS[0])}, "subnet_ids: duplicate ids"),
    ],
)
def test_network_args_reject(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkArgs(**kwargs)


def test_network_args_public_ip_follows_the_subnets() -> None:
    assert NetworkArgs().assign_public_ip == "ENABLED"
    assert NetworkArgs(security_group_ids=tuple(GROUPS)).assign_public_ip == "ENABLED"
    assert NetworkArgs(subnet_ids=tuple(SUBNETS)).assign_public_ip == "DISABLED"
    assert NetworkArgs(subnet_ids=SUBNETS).subnet_ids == tuple(SUBNETS)  # type: ignore[arg-type]

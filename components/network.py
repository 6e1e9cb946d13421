"""Network: where Fargate tasks (and later Batch jobs) run: subnets, security groups, public IP.

* ``subnetIds`` empty (the default): the default VPC's default subnets. The default VPC has no
  NAT gateway, so tasks get a public IP (``assignPublicIp: ENABLED``) to reach ECR, S3,
  DynamoDB and CloudWatch Logs; nothing can connect to them (the security group has no ingress).
* ``subnetIds`` set: those subnets, without a public IP (``DISABLED``). They must reach the AWS
  APIs some other way: a NAT gateway, or VPC endpoints for ECR (api + dkr), S3 (gateway),
  DynamoDB (gateway) and CloudWatch Logs.
* ``securityGroupIds`` empty: one new security group in the subnets' VPC with no ingress rule
  and all egress (the task calls AWS APIs over HTTPS); set: those groups, none created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from components.settings import SECURITY_GROUP_ID_PATTERN, SUBNET_ID_PATTERN

ASSIGN_PUBLIC_IP_ENABLED: Final = "ENABLED"
ASSIGN_PUBLIC_IP_DISABLED: Final = "DISABLED"
ALL_IPV4: Final = "0.0.0.0/0"


@dataclass(frozen=True)
class NetworkArgs:
    subnet_ids: tuple[str, ...] = ()  # empty: the default VPC's default subnets
    security_group_ids: tuple[str, ...] = ()  # empty: one new egress-only group

    def __post_init__(self) -> None:
        object.__setattr__(self, "subnet_ids", tuple(self.subnet_ids))
        object.__setattr__(self, "security_group_ids", tuple(self.security_group_ids))
        problems = [
            f"subnet_ids: invalid id {s!r} (subnet-<hex>)"
            for s in self.subnet_ids
            if not SUBNET_ID_PATTERN.fullmatch(s)
        ] + [
            f"security_group_ids: invalid id {g!r} (sg-<hex>)"
            for g in self.security_group_ids
            if not SECURITY_GROUP_ID_PATTERN.fullmatch(g)
        ]
        for label, ids in (
            ("subnet_ids", self.subnet_ids),
            ("security_group_ids", self.security_group_ids),
        ):
            if len(set(ids)) != len(ids):
                problems.append(f"{label}: duplicate ids in {list(ids)}")
        if problems:
            raise ValueError("NetworkArgs: " + "; ".join(problems))

    @property
    def uses_default_vpc(self) -> bool:
        return not self.subnet_ids

    @property
    def assign_public_ip(self) -> str:
        """ENABLED in the default VPC (no NAT there), DISABLED in configured subnets."""
        return ASSIGN_PUBLIC_IP_ENABLED if self.uses_default_vpc else ASSIGN_PUBLIC_IP_DISABLED


class Network(pulumi.ComponentResource):
    """Subnets and security groups for awsvpc tasks, and whether they get a public IP."""

    subnet_ids: pulumi.Output[list[str]]
    security_group_ids: pulumi.Output[list[str]]
    assign_public_ip: str
    vpc_id: pulumi.Output[str] | None  # None when both subnets and groups are configured

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:Network", name, None, opts)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        self.vpc_id = None
        if args.uses_default_vpc:
            vpc_id = aws.ec2.get_vpc_output(default=True, opts=invoke).id
            self.vpc_id = vpc_id
            self.subnet_ids = aws.ec2.get_subnets_output(
                filters=vpc_id.apply(default_subnet_filters), opts=invoke
            ).ids.apply(require_subnets)
        else:
            self.subnet_ids = pulumi.Output.from_input(list(args.subnet_ids))
            if not args.security_group_ids:
                # The new group must live in the VPC of the configured subnets.
                self.vpc_id = aws.ec2.get_subnet_output(id=args.subnet_ids[0], opts=invoke).vpc_id

        if args.security_group_ids:
            self.security_group_ids = pulumi.Output.from_input(list(args.security_group_ids))
        else:
            group = aws.ec2.SecurityGroup(
                f"{name}-tasks",
                description=(
                    "mlserve scoring tasks: no inbound; all outbound, to reach ECR, S3, "
                    "DynamoDB and CloudWatch Logs"
                ),
                vpc_id=self.vpc_id,
                ingress=[],  # explicit: rules added outside the stack are removed on update
                egress=[
                    {
                        "description": "AWS APIs (ECR, S3, DynamoDB, CloudWatch Logs)",
                        "protocol": "-1",
                        "from_port": 0,
                        "to_port": 0,
                        "cidr_blocks": [ALL_IPV4],
                    }
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.security_group_ids = group.id.apply(lambda group_id: [group_id])

        self.assign_public_ip = args.assign_public_ip
        self.register_outputs(
            {
                "subnet_ids": self.subnet_ids,
                "security_group_ids": self.security_group_ids,
                "assign_public_ip": self.assign_public_ip,
                "vpc_id": self.vpc_id,
            }
        )


def default_subnet_filters(vpc_id: str) -> list[aws.ec2.GetSubnetsFilterArgsDict]:
    """The default subnets (one per availability zone) of the default VPC."""
    return [
        {"name": "vpc-id", "values": [vpc_id]},
        {"name": "default-for-az", "values": ["true"]},
    ]


def require_subnets(ids: list[str]) -> list[str]:
    if not ids:
        raise ValueError(
            "the default VPC has no default subnets; set mlserve:subnetIds (and "
            "mlserve:securityGroupIds) to the subnets the scoring tasks should run in"
        )
    return sorted(ids)

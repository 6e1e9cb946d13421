"""EC2: the tasks' security group; the default VPC and its subnets (moto's own)."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, integer, physical


def _permission(rule: dict[str, Any]) -> dict[str, Any]:
    description = rule.get("description")
    return compact(
        {
            "IpProtocol": str(rule["protocol"]),
            "FromPort": integer(rule.get("fromPort", 0)),
            "ToPort": integer(rule.get("toPort", 0)),
            "IpRanges": [
                compact({"CidrIp": cidr, "Description": description})
                for cidr in rule.get("cidrBlocks") or []
            ]
            or None,
            "Ipv6Ranges": [
                compact({"CidrIpv6": cidr, "Description": description})
                for cidr in rule.get("ipv6CidrBlocks") or []
            ]
            or None,
            "UserIdGroupPairs": [{"GroupId": g} for g in rule.get("securityGroups") or []] or None,
        }
    )


def security_group(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CreateSecurityGroup; like the provider, replace AWS's default egress rule with the
    declared rules, then authorize the declared ingress."""
    group_name = physical(inputs, "name", name, max_length=255)
    ec2 = ctx.client("ec2")
    group_id = ec2.create_security_group(
        **compact(
            {
                "GroupName": group_name,
                "Description": inputs.get("description") or "Managed by Pulumi",
                "VpcId": inputs.get("vpcId"),
            }
        )
    )["GroupId"]
    described = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    if described.get("IpPermissionsEgress"):
        ec2.revoke_security_group_egress(
            GroupId=group_id, IpPermissions=described["IpPermissionsEgress"]
        )
    egress = [_permission(rule) for rule in inputs.get("egress") or []]
    if egress:
        ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=egress)
    ingress = [_permission(rule) for rule in inputs.get("ingress") or []]
    if ingress:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
    return group_id, {
        "name": group_name,
        "arn": f"arn:aws:ec2:{ctx.region}:{described['OwnerId']}:security-group/{group_id}",
        "ownerId": described["OwnerId"],
        "vpcId": described.get("VpcId"),
    }


def _filters(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"Name": f["name"], "Values": [str(v) for v in f["values"]]}
        for f in args.get("filters") or []
    ]


def get_vpc(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    filters = _filters(args)
    if args.get("default"):
        filters.append({"Name": "isDefault", "Values": ["true"]})
    params: dict[str, Any] = {"Filters": filters} if filters else {}
    if args.get("id"):
        params["VpcIds"] = [args["id"]]
    vpcs = ctx.client("ec2").describe_vpcs(**params)["Vpcs"]
    if len(vpcs) != 1:
        raise ValueError(f"getVpc {args}: expected one VPC in the emulator, found {len(vpcs)}")
    vpc = vpcs[0]
    return {
        "id": vpc["VpcId"],
        "default": bool(vpc.get("IsDefault")),
        "cidrBlock": vpc["CidrBlock"],
        "ownerId": vpc.get("OwnerId"),
        "arn": f"arn:aws:ec2:{ctx.region}:{vpc.get('OwnerId')}:vpc/{vpc['VpcId']}",
    }


def get_subnets(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    subnets = ctx.client("ec2").describe_subnets(Filters=_filters(args))["Subnets"]
    return {"id": ctx.region, "ids": sorted(s["SubnetId"] for s in subnets)}


def get_subnet(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    subnet = ctx.client("ec2").describe_subnets(SubnetIds=[args["id"]])["Subnets"][0]
    return {
        "id": subnet["SubnetId"],
        "vpcId": subnet["VpcId"],
        "cidrBlock": subnet["CidrBlock"],
        "availabilityZone": subnet["AvailabilityZone"],
        "arn": subnet.get("SubnetArn"),
    }


RESOURCES: dict[str, Create] = {"aws:ec2/securityGroup:SecurityGroup": security_group}
INVOKES: dict[str, Invoke] = {
    "aws:ec2/getVpc:getVpc": get_vpc,
    "aws:ec2/getSubnets:getSubnets": get_subnets,
    "aws:ec2/getSubnet:getSubnet": get_subnet,
}

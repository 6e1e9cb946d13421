"""IAM: roles and their inline policies. moto stores them; it does not enforce them."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, integer, physical


def role(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CreateRole, then the inline policies and managed-policy attachments declared on it."""
    role_name = physical(inputs, "name", name)
    iam = ctx.client("iam")
    created = iam.create_role(
        **compact(
            {
                "RoleName": role_name,
                "AssumeRolePolicyDocument": str(inputs["assumeRolePolicy"]),
                "Description": inputs.get("description"),
                "Path": inputs.get("path"),
                "MaxSessionDuration": (
                    integer(inputs["maxSessionDuration"])
                    if inputs.get("maxSessionDuration")
                    else None
                ),
            }
        )
    )["Role"]
    for policy in inputs.get("inlinePolicies") or []:
        iam.put_role_policy(
            RoleName=role_name, PolicyName=policy["name"], PolicyDocument=policy["policy"]
        )
    for arn in inputs.get("managedPolicyArns") or []:
        iam.attach_role_policy(RoleName=role_name, PolicyArn=arn)
    return role_name, {"name": role_name, "arn": created["Arn"], "uniqueId": created["RoleId"]}


def role_policy(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """PutRolePolicy: the inline policy document, exactly as the program rendered it."""
    role_name = str(inputs["role"])
    policy_name = physical(inputs, "name", name, max_length=128)
    ctx.client("iam").put_role_policy(
        RoleName=role_name, PolicyName=policy_name, PolicyDocument=str(inputs["policy"])
    )
    return f"{role_name}:{policy_name}", {"name": policy_name}


RESOURCES: dict[str, Create] = {
    "aws:iam/role:Role": role,
    "aws:iam/rolePolicy:RolePolicy": role_policy,
}
INVOKES: dict[str, Invoke] = {}

"""ECR: the image repository, its lifecycle policy, and the registry's authorization token."""

from __future__ import annotations

import base64
from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, physical


def repository(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    repo_name = physical(inputs, "name", name, max_length=256, lower=True)
    scanning = inputs.get("imageScanningConfiguration") or {}
    encryption = (inputs.get("encryptionConfigurations") or [{}])[0]
    created = ctx.client("ecr").create_repository(
        **compact(
            {
                "repositoryName": repo_name,
                "imageTagMutability": inputs.get("imageTagMutability"),
                "imageScanningConfiguration": (
                    {"scanOnPush": bool(scanning.get("scanOnPush"))} if scanning else None
                ),
                "encryptionConfiguration": (
                    compact(
                        {
                            "encryptionType": encryption["encryptionType"],
                            "kmsKey": encryption.get("kmsKey"),
                        }
                    )
                    if encryption
                    else None
                ),
            }
        )
    )["repository"]
    return repo_name, {
        "name": repo_name,
        "arn": created["repositoryArn"],
        "registryId": created["registryId"],
        "repositoryUrl": created["repositoryUri"],
    }


def lifecycle_policy(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    created = ctx.client("ecr").put_lifecycle_policy(
        repositoryName=inputs["repository"], lifecyclePolicyText=str(inputs["policy"])
    )
    return str(inputs["repository"]), {"registryId": created["registryId"]}


def authorization_token(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    params = {"registryIds": [args["registryId"]]} if args.get("registryId") else {}
    data = ctx.client("ecr").get_authorization_token(**params)["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return {
        "id": ctx.region,
        "registryId": args.get("registryId") or ctx.account,
        "authorizationToken": data["authorizationToken"],
        "userName": user,
        "password": password,
        "proxyEndpoint": data["proxyEndpoint"],
        "expiresAt": str(data["expiresAt"]),
    }


RESOURCES: dict[str, Create] = {
    "aws:ecr/repository:Repository": repository,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": lifecycle_policy,
}
INVOKES: dict[str, Invoke] = {
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": authorization_token,
}

"""ECS: the cluster and the task definition (its container definitions as rendered)."""

from __future__ import annotations

import json
from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, physical, revisioned


def cluster(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    cluster_name = physical(inputs, "name", name, max_length=255)
    created = ctx.client("ecs").create_cluster(
        **compact(
            {
                "clusterName": cluster_name,
                "settings": [
                    {"name": s["name"], "value": s["value"]} for s in inputs.get("settings") or []
                ]
                or None,
            }
        )
    )["cluster"]
    return created["clusterArn"], {"name": cluster_name, "arn": created["clusterArn"]}


def task_definition(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """RegisterTaskDefinition: the containerDefinitions JSON is already in the API's shape."""
    platform = inputs.get("runtimePlatform")
    registered = ctx.client("ecs").register_task_definition(
        **compact(
            {
                "family": inputs["family"],
                "containerDefinitions": json.loads(str(inputs["containerDefinitions"])),
                "cpu": inputs.get("cpu"),
                "memory": inputs.get("memory"),
                "networkMode": inputs.get("networkMode"),
                "requiresCompatibilities": inputs.get("requiresCompatibilities"),
                "executionRoleArn": inputs.get("executionRoleArn"),
                "taskRoleArn": inputs.get("taskRoleArn"),
                "runtimePlatform": (
                    compact(
                        {
                            "cpuArchitecture": platform.get("cpuArchitecture"),
                            "operatingSystemFamily": platform.get("operatingSystemFamily"),
                        }
                    )
                    if platform
                    else None
                ),
            }
        )
    )["taskDefinition"]
    arn = registered["taskDefinitionArn"]
    return str(inputs["family"]), revisioned(arn, registered["revision"], "arnWithoutRevision")


RESOURCES: dict[str, Create] = {
    "aws:ecs/cluster:Cluster": cluster,
    "aws:ecs/taskDefinition:TaskDefinition": task_definition,
}
INVOKES: dict[str, Invoke] = {}

"""Step Functions: CreateStateMachine with the definition the program rendered."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, physical


def _logging(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    destination = config.get("logDestination")
    return compact(
        {
            "level": config.get("level"),
            "includeExecutionData": config.get("includeExecutionData"),
            "destinations": (
                [{"cloudWatchLogsLogGroup": {"logGroupArn": destination}}] if destination else None
            ),
        }
    )


def state_machine(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    machine_name = physical(inputs, "name", name, max_length=80)
    tracing = inputs.get("tracingConfiguration")
    client = ctx.client("stepfunctions")
    created = client.create_state_machine(
        **compact(
            {
                "name": machine_name,
                "definition": str(inputs["definition"]),
                "roleArn": inputs["roleArn"],
                "type": inputs.get("type") or "STANDARD",
                "loggingConfiguration": _logging(inputs.get("loggingConfiguration")),
                "tracingConfiguration": (
                    {"enabled": bool(tracing.get("enabled"))} if tracing else None
                ),
            }
        )
    )
    arn = created["stateMachineArn"]
    described = client.describe_state_machine(stateMachineArn=arn)
    return arn, {
        "name": machine_name,
        "arn": arn,
        "status": described.get("status"),
        "creationDate": str(created["creationDate"]),
        "revisionId": described.get("revisionId"),
        "stateMachineVersionArn": created.get("stateMachineVersionArn", ""),
    }


RESOURCES: dict[str, Create] = {"aws:sfn/stateMachine:StateMachine": state_machine}
INVOKES: dict[str, Invoke] = {}

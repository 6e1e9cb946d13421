"""The emulator's stand-in of deployed Lambda functions (mlserve/local/functions.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlserve.local.functions import LocalFunction

HANDLER_MODULE = """
configured = []
_env = {}


def configure(env=None, clients=None):
    global _env
    _env = dict(env or {})
    configured.append(_env.get("ARCHITECTURE"))


def handler(event, context):
    return {"architecture": _env.get("ARCHITECTURE"), "function": context.function_name}
"""


def _deployed(name: str, module: str, variables: dict[str, str]) -> LocalFunction:
    return LocalFunction.deployed(
        {
            "FunctionName": name,
            "Handler": f"{module}.handler",
            "Environment": {"Variables": variables},
            "MemorySize": 256,
            "Timeout": 5,
            "FunctionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        }
    )


def test_functions_of_one_handler_module_each_run_with_their_own_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two job APIs of one stack (lambda-ecs and stepfunctions-batch) share runtime.handlers.jobs
    in the emulator's process; in AWS each has its own environment, and so must each here."""
    (tmp_path / "shared_handler_module.py").write_text(textwrap.dedent(HANDLER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    ecs = _deployed("jobs-ecs", "shared_handler_module", {"ARCHITECTURE": "lambda-ecs"})
    module = "shared_handler_module"
    batch = _deployed("jobs-batch", module, {"ARCHITECTURE": "stepfunctions-batch"})
    twin = _deployed("jobs-ecs-twin", "shared_handler_module", {"ARCHITECTURE": "lambda-ecs"})
    for function in (ecs, batch, twin):
        function.cold_start(tmp_path)
    answers: list[Any] = [f.invoke({}) for f in (ecs, batch, batch, ecs, twin)]
    assert [a["architecture"] for a in answers] == [
        "lambda-ecs",
        "stepfunctions-batch",
        "stepfunctions-batch",
        "lambda-ecs",
        "lambda-ecs",
    ]
    assert [a["function"] for a in answers] == [
        "jobs-ecs", "jobs-batch", "jobs-batch", "jobs-ecs", "jobs-ecs-twin"
    ]  # fmt: skip
    import shared_handler_module  # type: ignore[import-not-found]

    # three cold starts, then a turn each time the variables change (batch, then ecs again):
    # functions with the same deployed variables (the step functions of a state machine) share
    # the module as it is
    assert shared_handler_module.configured == [
        "lambda-ecs", "stepfunctions-batch", "lambda-ecs",  # the cold starts
        "stepfunctions-batch", "lambda-ecs",
    ]  # fmt: skip

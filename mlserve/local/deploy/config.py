"""A stack's configuration as the Pulumi CLI hands it to the program.

Pulumi.yaml's ``config:`` defaults, then ``Pulumi.<stack>.yaml`` when a stack is named, then
``key=value`` overrides (a bare key is in the project namespace, ``mlserve:``). Values are
strings, as the CLI passes them (lists as JSON). Validation is not done here: the program's
components/settings.py validates them like any stack's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from components.settings import NAMESPACE, load_project_schema
from mlserve.local.deploy.runner import REPO

REGION_KEY: Final = "aws:region"
DEFAULT_REGION: Final = "us-east-1"


class StackConfigError(ValueError):
    """A stack file that cannot be read, or a malformed override."""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _full_key(key: str) -> str:
    return key if ":" in key else f"{NAMESPACE}:{key}"


def stack_file(stack: str, project_dir: Path = REPO) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def stack_values(stack: str, project_dir: Path = REPO) -> dict[str, str]:
    """The ``config:`` of ``Pulumi.<stack>.yaml``."""
    path = stack_file(stack, project_dir)
    if not path.is_file():
        available = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in
                           project_dir.glob("Pulumi.*.yaml"))  # fmt: skip
        raise StackConfigError(
            f"stack {stack!r}: no {path.name} in {project_dir}; stacks here: {', '.join(available)}"
        )
    document = yaml.safe_load(path.read_text()) or {}
    values: dict[str, str] = {}
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            raise StackConfigError(
                f"{path.name}: {key} is a secret encrypted for the Pulumi CLI; the local target "
                "cannot decrypt it - pass the value with an override instead"
            )
        values[_full_key(key)] = _text(value)
    return values


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` (as ``--config`` takes them) -> ``{key: value}``."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StackConfigError(f"config override {item!r}: expected key=value")
        result[key.strip()] = value
    return result


def stack_config(
    stack: str | None, overrides: Mapping[str, Any] = {}, project_dir: Path = REPO
) -> dict[str, str]:
    """Defaults, then the stack file, then the overrides: the full ``namespace:key -> value``."""
    config = {
        f"{NAMESPACE}:{key}": _text(spec["default"])
        for key, spec in load_project_schema(project_dir / "Pulumi.yaml").items()
    }
    config[REGION_KEY] = DEFAULT_REGION
    if stack is not None:
        config.update(stack_values(stack, project_dir))
    config.update({_full_key(k): _text(v) for k, v in overrides.items()})
    return config

"""Rules of the house (DESIGN.md §2) that a reviewer would otherwise have to check by eye."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path", sorted((ROOT / "runtime").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_runtime_never_imports_pulumi_or_components(path: Path) -> None:
    assert not imported_modules(path) & {
        "pulumi",
        "pulumi_aws",
        "pulumi_docker_build",
        "components",
    }


@pytest.mark.parametrize("name", ["policies.py", "workflows.py"])
def test_pure_builders_stay_pure(name: str) -> None:
    path = ROOT / "components" / name
    assert not imported_modules(path) & {"pulumi", "pulumi_aws", "boto3"}

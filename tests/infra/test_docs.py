"""The docs are part of the feature: every config key and output is documented."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_config_key_is_documented_with_its_default() -> None:
    schema = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    doc = (ROOT / "docs" / "configuration.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", doc, re.M)
    }
    missing = sorted(set(schema) - set(rows))
    assert not missing, f"docs/configuration.md lacks {missing}"
    unknown = sorted(set(rows) - set(schema))
    assert not unknown, f"docs/configuration.md documents keys Pulumi.yaml lacks: {unknown}"
    for key, spec in schema.items():
        default = spec["default"]
        if isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, list):
            shown = "[]"
        else:
            shown = str(default) if default != "" else '""'
        assert rows[key].strip() == f"`{shown}`", (
            f"{key}: documented default {rows[key]!r} != {shown!r}"
        )


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "```mermaid" in readme

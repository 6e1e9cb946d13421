"""Supply chain: everything we ship or build with is pinned to exact versions that agree.

The Lambda layers, the scoring image and the development constraints are the sets `make verify`
audits (mlserve/verify.py REQUIREMENT_SETS); an audit of a range would be meaningless.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlserve.verify import REQUIREMENT_SETS, ROOT, _figures

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.relative_to(ROOT)}: {line!r} is not an exact pin (name==version)"
        pins[_normal(match["name"])] = match["version"]
    return pins


EXISTING = [(label, rel) for label, rel in REQUIREMENT_SETS if (ROOT / rel).exists()]


@pytest.mark.parametrize(("label", "relative"), EXISTING, ids=[r for _, r in EXISTING])
def test_every_requirement_is_an_exact_pin_agreeing_with_constraints(
    label: str, relative: str
) -> None:
    pins = _pins(ROOT / relative)
    constraints = _pins(ROOT / "constraints.txt")
    assert pins, f"{label}: no requirements"
    disagree = {n: (v, constraints.get(n)) for n, v in pins.items() if constraints.get(n) != v}
    assert not disagree, f"{label} disagrees with constraints.txt: {disagree}"


def test_the_layer_and_the_image_are_audited() -> None:
    audited = {rel for _, rel in REQUIREMENT_SETS}
    assert {"runtime/requirements.txt", "images/scoring/requirements.txt"} <= audited


def test_figures_are_summed_per_architecture(tmp_path: Path) -> None:
    report = tmp_path / "verify.jsonl"
    report.write_text(
        '{"section": "load", "architecture": "lambda", "figures": {"load_requests": 10}}\n'
        '{"section": "load", "architecture": "lambda", "figures": {"load_requests": 5}}\n'
        '{"section": "fuzz", "architecture": "lambda-ecs", "figures": {"fuzz_cases": 3}}\n'
    )
    assert _figures(report) == {"lambda": {"load_requests": 15}, "lambda-ecs": {"fuzz_cases": 3}}

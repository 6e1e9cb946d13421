"""`make verify`: the reliability and security checks, and one summary table.

1. pytest runs tests/verify (the long checks marked ``verify`` as well as the fast ones) with
   ``MLSERVE_VERIFY_REPORT`` pointing at a JSON-lines file; each check records its figures there
   (tests/verify/report.py): least privilege (with the call sites of runtime/ reached per
   identity: reached / total, 0 unreached), fuzzing, faults, load.
2. pip-audit audits every pinned requirement set we ship or build with: the Lambda layers, the
   scoring image and the development constraints (meanwhile, beside step 1).
3. One table per architecture, then the audit's findings. The exit status is non-zero when a
   test failed or a known vulnerability was found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT_ENV = "MLSERVE_VERIFY_REPORT"
# The columns of the summary table, in order: figure name -> header.
FIGURES: dict[str, str] = {
    "calls_checked": "calls checked",
    "calls_denied": "denied",
    "unused_grants": "unused grants",
    "policy_findings": "linter findings",
    # runtime/'s AWS call sites x the identities that make them (tests/verify/call_sites.py),
    # printed as one "reached/total" row
    "call_sites_reached": "call sites",
    "call_sites_total": "call sites total",
    "call_sites_unreached": "sites unreached",
    "fuzz_cases": "fuzz cases",
    "fuzz_failures": "fuzz failures",
    "faults_passed": "faults passed",
    "load_requests": "load requests",
    "load_errors": "load errors",
    "lost_records": "lost records",
}
ARCHITECTURE_ORDER = ("lambda", "lambda-ecs", "stepfunctions-ecs", "stepfunctions-batch", "all")
# What we ship or build with, each pinned to exact versions.
REQUIREMENT_SETS = (
    ("Lambda layer (xgboost engine)", "runtime/requirements.txt"),
    ("Lambda layer (onnx engine)", "runtime/requirements-onnx.txt"),
    ("scoring image", "images/scoring/requirements.txt"),
    ("development tools", "constraints.txt"),
)


_QUIET = ("--progress-spinner", "off")


@dataclass
class AuditResult:
    label: str
    path: str
    audited: int = 0
    not_audited: list[str] = field(default_factory=list)
    vulnerabilities: list[str] = field(default_factory=list)
    error: str = ""


def _figures(report: Path) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not report.exists():
        return {}
    for line in report.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            for name, value in entry["figures"].items():
                totals[entry["architecture"]][name] += int(value)
    return totals


def _audit(label: str, relative: str) -> AuditResult | None:
    path = ROOT / relative
    if not path.exists():
        return None
    result = AuditResult(label, relative)
    audit = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or "pip-audit"
    try:
        proc = subprocess.run(
            [audit, "--requirement", str(path), "--no-deps", "--format", "json", *_QUIET],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.error = f"pip-audit did not run: {exc}"
        return result
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        result.error = (proc.stderr.strip().splitlines() or ["pip-audit failed"])[-1]
        return result
    for dep in data.get("dependencies", []):
        if "skip_reason" in dep:
            result.not_audited.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        result.audited += 1
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix released"
            result.vulnerabilities.append(
                f"{dep['name']} {dep.get('version', '')}: {vuln['id']} (fixed in: {fixes})"
            )
    return result


def _failed_checks(junit: Path) -> list[str]:
    """The tests that failed or errored, from pytest's JUnit XML report (standard library)."""
    if not junit.exists():
        return []
    import xml.etree.ElementTree as ET

    failed = []
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - our own pytest's file
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    return failed


def _print_summary(
    figures: dict[str, dict[str, int]],
    audits: list[AuditResult],
    failed: list[str],
    tests_ok: bool,
    minutes: float,
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    architectures = [a for a in ARCHITECTURE_ORDER if a in figures]
    architectures += sorted(set(figures) - set(ARCHITECTURE_ORDER))
    # One column per architecture, one row per figure: fits a terminal of 80 columns.
    table = Table(title="mlserve verify: per architecture")
    table.add_column("figure")
    for arch in architectures:  # "stepfunctions-" on a line of its own: no name is cut short
        table.add_column(arch.replace("stepfunctions-", "stepfunctions-\n"), justify="right")
    for name, header in FIGURES.items():
        if name == "call_sites_total":
            continue
        cells = [str(figures[arch].get(name, 0)) for arch in architectures]
        if name == "call_sites_reached":  # reached/total
            totals = (figures[arch].get("call_sites_total", 0) for arch in architectures)
            cells = [f"{cell}/{total}" for cell, total in zip(cells, totals, strict=True)]
        table.add_row(header, *cells)
    console.print(table)

    audit_table = Table(title="dependency audit (pip-audit, exact pins)")
    audit_table.add_column("requirements")
    for column in ("audited", "vulnerabilities", "not audited"):
        audit_table.add_column(column, justify="right")
    for audit in audits:
        audit_table.add_row(
            f"{audit.label} ({audit.path})",
            str(audit.audited),
            str(len(audit.vulnerabilities)),
            audit.error or str(len(audit.not_audited)),
        )
    console.print(audit_table)
    for audit in audits:
        for finding in audit.vulnerabilities:
            console.print(f"[red]vulnerability[/red] {audit.path}: {finding}")
    unaudited = sum(len(a.not_audited) for a in audits)
    if unaudited:
        first = next(a.not_audited[0] for a in audits if a.not_audited)
        console.print(
            f"[yellow]{unaudited} pinned packages could not be checked[/yellow]: the "
            f"vulnerability service did not answer for them (e.g. {first}). Run `make verify` "
            "where the service is reachable to close this gap."
        )
    # A failed check records no figures: name it, so the table above is never read as all-clear.
    for name in failed:
        console.print(f"[red]FAILED[/red] {name}")
    verdict = "[green]all checks passed[/green]" if tests_ok else "[red]checks FAILED[/red]"
    console.print(f"{verdict} in {minutes:.1f} min")


def run_verify(pytest_args: list[str] | None = None) -> int:
    started = time.monotonic()
    # The audits (one pip-audit process per requirement set, mostly waiting on the vulnerability
    # service) run beside the checks instead of after them.
    pool = ThreadPoolExecutor(max_workers=len(REQUIREMENT_SETS), thread_name_prefix="audit")
    auditing = [pool.submit(_audit, label, path) for label, path in REQUIREMENT_SETS]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "verify.jsonl"
        env = {**os.environ, REPORT_ENV: str(report)}
        command = [sys.executable, "-m", "pytest", "tests/verify", "-m", "verify or not verify"]
        junit = Path(tmp) / "junit.xml"
        command += ["-p", "no:cacheprovider", f"--junitxml={junit}", "--durations=12"]
        command += pytest_args or []
        tests_ok = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode == 0
        figures = _figures(report)
        failed = _failed_checks(junit)
    audits = [a for future in auditing if (a := future.result()) is not None]
    pool.shutdown()
    vulnerable = any(a.vulnerabilities for a in audits)
    minutes = (time.monotonic() - started) / 60
    _print_summary(figures, audits, failed, tests_ok and not vulnerable, minutes)
    return 0 if tests_ok and not vulnerable else 1

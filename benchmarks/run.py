"""`make bench`: every figure measured side by side in one run, written to benchmarks/results.md.

Timings on shared machines are noisy, so each timing is a ratio against a reference measured in
the same run (raw ``Booster.inplace_predict``, a bare import-and-load process, ...); package
sizes are exact. Each section is a module with ``rows(console, quick) -> list[Row]``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from benchmarks.common import Row

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"

# (title, module): run in this order; each module defines rows(console, quick).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("warm real-time latency", "benchmarks.realtime"),
    ("data capture and canary on the warm handler", "benchmarks.capture"),
    ("cold start", "benchmarks.coldstart"),
    ("batch throughput, memory and scale-out", "benchmarks.batch"),
    ("package size", "benchmarks.package"),
)


def main(argv: list[str] | None = None, out: Path = RESULTS) -> int:
    parser = argparse.ArgumentParser(prog="mlserve bench")
    parser.add_argument("--only", action="append", help="run only these sections (module name)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, smaller inputs")
    args = parser.parse_args(argv)
    os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)  # measure with metrics on, as deployed
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="mlserve benchmarks (ratios measured side by side in one run)")
    for column in ("figure", "measured", "target", ""):
        table.add_column(column)
    lines = ["| figure | measured | target | |", "|---|---|---|---|"]
    started = time.monotonic()
    for title, module_name in SECTIONS:
        if args.only and module_name.rsplit(".", 1)[-1] not in args.only:
            continue
        console.rule(title)
        section_started = time.monotonic()
        section_rows: list[Row] = importlib.import_module(module_name).rows(console, args.quick)
        took = f"{(time.monotonic() - section_started) / 60:.1f} min"
        table.add_section()
        table.add_row(f"[bold]{title}[/bold] ({took})", "", "", "")
        lines.append(f"| **{title}** ({took}) | | | |")
        for row in section_rows:
            table.add_row(*row.cells())
            lines.append(f"| {' | '.join(row.cells())} |")
    console.print(table)
    elapsed = time.monotonic() - started
    out.write_text(
        "# mlserve benchmarks\n\nWritten by `make bench` (benchmarks/run.py) in "
        f"{elapsed / 60:.1f} min.\n\n" + "\n".join(lines) + "\n"
    )
    console.print(f"written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every figure measured side by side in one run, written to benchmarks/results.md.

Timings on shared machines are noisy, so each latency figure is a ratio against raw
``Booster.inplace_predict`` measured in the same loop; package sizes are exact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(out: Path = RESULTS, iterations: int = 2000) -> int:
    os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)  # measure with metrics on, as deployed
    from rich.console import Console
    from rich.table import Table

    from benchmarks.realtime import run as run_realtime
    from components.packaging import build_function_archive, build_layer, check_size, human_mb
    from runtime.contract import LAMBDA_UNZIPPED_LIMIT_BYTES

    console = Console()
    rows: list[tuple[str, str, str, str]] = []
    with console.status("warm latency: handler vs raw inplace_predict ..."):
        for result in run_realtime(iterations):
            label = f"warm handler, {result.rows} row{'s' if result.rows > 1 else ''}"
            rows.append(
                (
                    f"{label}: median",
                    f"{result.handler_median_us:.0f} µs vs raw {result.raw_median_us:.0f} µs "
                    f"= {result.median_ratio:.2f}x",
                    "≤ 2.0x raw" if result.rows == 1 else "(reported)",
                    _verdict(result.median_ratio <= 2.0) if result.rows == 1 else "-",
                )
            )
            rows.append(
                (
                    f"{label}: p99",
                    f"{result.handler_p99_us:.0f} µs (raw {result.raw_p99_us:.0f} µs)",
                    "≤ 1000 µs" if result.rows == 1 else "(reported)",
                    _verdict(result.handler_p99_us <= 1000) if result.rows == 1 else "-",
                )
            )
    function = build_function_archive(ROOT)
    for arch in ("arm64", "x86_64"):
        with console.status(f"building the {arch} layer (cached after the first run) ..."):
            layer = build_layer(ROOT / "runtime" / "requirements.txt", arch)
        check_size(layer, function)
        total = layer.unzipped_bytes + function.unzipped_bytes
        rows.append(
            (
                f"layer + function unzipped, {arch}",
                f"{human_mb(total)} of {human_mb(LAMBDA_UNZIPPED_LIMIT_BYTES)}",
                "≤ 175 MB",
                _verdict(total <= 175 * 1024 * 1024),
            )
        )
    rows.append(
        (
            "function code archive (zipped)",
            f"{function.zipped_bytes / 1024:.0f} KB",
            "≤ 1 MB",
            _verdict(function.zipped_bytes <= 1024 * 1024),
        )
    )

    table = Table(title="mlserve benchmarks (ratios measured side by side in one run)")
    for column in ("figure", "measured", "target", ""):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    lines = ["| figure | measured | target | |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    out.write_text(
        "# mlserve benchmarks\n\nWritten by `make bench`; see benchmarks/run.py.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    console.print(f"written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

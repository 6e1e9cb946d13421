"""``mlserve bench``: the benchmarks behind ``make bench`` (benchmarks/run.py)."""

from __future__ import annotations

import argparse

from mlserve.commands.base import CliError

NAME = "bench"
HELP = "latency ratios, throughput, memory and package sizes (benchmarks/results.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only", action="append", metavar="SECTION", help="run only this section (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations, smaller inputs")


def run(args: argparse.Namespace) -> int:
    try:
        from benchmarks.run import main as run_benchmarks
    except ImportError as exc:  # benchmarks/ lives in the repository, not in the package
        raise CliError("run `bench` from the repository root (make bench)") from exc
    argv = [arg for section in args.only or () for arg in ("--only", section)]
    return run_benchmarks(argv + (["--quick"] if args.quick else []))

"""``mlserve verify``: the reliability and security checks behind ``make verify``
(mlserve/verify.py)."""

from __future__ import annotations

import argparse

NAME = "verify"
HELP = "least privilege, fuzzing, faults, load, data safety, dependency audit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pytest_args", nargs="*", metavar="PYTEST_ARG", help="extra arguments for pytest"
    )


def run(args: argparse.Namespace) -> int:
    from mlserve.verify import run_verify

    return run_verify(list(args.pytest_args))

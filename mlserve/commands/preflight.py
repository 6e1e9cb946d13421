"""``mlserve preflight``: check, without deploying, what a deployment of a stack would trip over
(mlserve/preflight.py)."""

from __future__ import annotations

import argparse

NAME = "preflight"
HELP = "check, without deploying, what a deployment of a stack would trip over"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default=None, help="read Pulumi.<STACK>.yaml over the defaults")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a configuration value (mlserve: prefix optional; aws:region=...), repeatable",
    )
    parser.add_argument(
        "--offline", action="store_true", help="skip the checks that call AWS (credentials)"
    )


def run(args: argparse.Namespace) -> int:
    from mlserve.preflight import run as run_preflight

    return run_preflight(args)

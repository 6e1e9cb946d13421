"""``mlserve cost``: monthly cost per architecture, break-even points, a chart (docs/cost.md)."""

from __future__ import annotations

import argparse

NAME = "cost"
HELP = "monthly cost per architecture, break-even points, a chart (docs/cost.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mlserve.cost import add_arguments as add_cost_arguments

    add_cost_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mlserve.cost import run as run_cost

    return run_cost(args)

"""``mlserve`` (or ``python -m mlserve``): the CLI dispatcher. Each command is a module of
mlserve/commands/ (its options and its ``run``):

- ``train-example``: train the example model (models/example/model.ubj + metadata.json).
- ``local``: run an architecture on this machine (embedded AWS + local API Gateway) until Ctrl-C.
- ``demo``: start the emulator, score the example data set over HTTP, print the accuracy, stop.
- ``predict``: score a file of rows with a deployed (or local) API: one request, or an upload job
  followed to the end; prints (or downloads) the predictions.
- ``jobs list|get|cancel``: the caller's jobs on a deployed (or local) API.
- ``bench``: the benchmarks behind ``make bench`` (benchmarks/run.py).
- ``verify``: the reliability and security checks behind ``make verify`` (mlserve/verify.py).
- ``cost``: monthly cost per architecture (docs/cost.md).
- ``profile``: record a model's reference statistics from its training data (metadata.json).
- ``drift``: per-feature drift of captured requests against those statistics.
- ``rollout status``: a canary/shadow rollout's versions side by side, from the captured data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlserve.commands import add_commands
from mlserve.commands.base import CliError

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlserve", description="mlserve: deploy and use an XGBoost model (see README.md)"
    )
    add_commands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # a missing model, a busy port, a bad setting
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130

"""``mlserve train-example``: train the example model (models/example/model.ubj + metadata.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlserve.commands.base import DEFAULT_MODEL_DIR, model_present, train
from runtime import contract

NAME = "train-example"
HELP = "train the example model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="output directory (default: %(default)s)",
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when the model exists"
    )


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.if_missing and model_present(out):
        print(f"model already present: {out / contract.MODEL_OBJECT_NAME} (--if-missing)")
        return 0
    train(out)
    return 0

"""One module per ``mlserve`` command, each with its ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> exit status``; mlserve/cli.py dispatches. A new command is a module here and
one line in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
from types import ModuleType

from mlserve.commands import (
    bench,
    cost,
    demo,
    drift,
    jobs,
    local,
    predict,
    preflight,
    profile,
    rollout,
    train_example,
    verify,
)

COMMANDS: tuple[ModuleType, ...] = (
    train_example,
    local,
    demo,
    predict,
    jobs,
    bench,
    verify,
    preflight,
    cost,
    profile,
    drift,
    rollout,
)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """A subcommand for each module of :data:`COMMANDS`; its ``run`` is ``args.func``."""
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        child = sub.add_parser(command.NAME, help=command.HELP, description=command.__doc__)
        command.add_arguments(child)
        child.set_defaults(func=command.run)

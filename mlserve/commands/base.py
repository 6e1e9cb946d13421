"""What the commands share: the one-line error, argument types, the example model, task logs."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import contract

if TYPE_CHECKING:
    from mlserve.client import Api

DEFAULT_MODEL_DIR = Path("models/example")


class CliError(Exception):
    """A failure to report as one clear line (exit status 1), never as a traceback."""


# --- argument types ------------------------------------------------------------------------------


def architecture(value: str) -> str:
    from mlserve.local import parse_architectures

    try:
        return ",".join(parse_architectures(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid choice: {exc}") from None


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def bounded(convert: Callable[[str], float], low: float, high: float, what: str) -> Any:
    """An argparse type: ``convert(value)`` within [low, high], else a message naming both."""

    def parse(value: str) -> Any:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g}-{high:g} ({what}), got {value}")
        return number

    return parse


seconds = bounded(float, 0, 3600, "a number of seconds")


def add_emulator_options(sub: argparse.ArgumentParser) -> None:
    """The options of the commands that start the local emulator (local, demo)."""
    from mlserve.local import available
    from mlserve.local.architectures import LOCAL_POLL_INTERVAL_SECONDS, POLLING_MODES

    sub.add_argument(
        "--architecture",
        type=architecture,
        metavar="{" + ",".join(available()) + "}",
        default=contract.ARCH_LAMBDA,
        help=f"one of: {', '.join(available())} (or a comma-separated list; default: %(default)s)",
    )
    sub.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="model.ubj or model.json, metadata.json optional (default: %(default)s)",
    )
    sub.add_argument(
        "--polling",
        choices=POLLING_MODES,
        default=POLLING_MODES[0],
        help="stepfunctions-ecs/-batch: how the workflow watches the task or Batch job: "
        "lambda (Wait + a status Lambda) or native (ecs:runTask.sync, batch:submitJob.sync) "
        "(default: %(default)s)",
    )
    sub.add_argument(
        "--poll-interval-seconds",
        type=positive_int,
        default=LOCAL_POLL_INTERVAL_SECONDS,
        metavar="SECONDS",
        help="stepfunctions-*, polling lambda: the Wait between two status checks "
        "(pollIntervalSeconds; default here: %(default)s)",
    )
    sub.add_argument(
        "--engine",
        choices=contract.ENGINES,
        default=contract.ENGINE_XGBOOST,
        help="lambda: the predictor's inference engine (the engine setting): xgboost, or "
        "onnx (the model converted and verified against XGBoost at start; default: "
        "%(default)s)",
    )


# --- the example model ---------------------------------------------------------------------------


def model_present(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in contract.MODEL_FILE_NAMES)


def train(out: Path) -> None:
    from mlserve.train import train_example

    result = train_example(out_dir=out)
    print(f"model:    {result.model_path}")
    print(f"metadata: {result.metadata_path}")
    print(f"sha256:   {result.sha256}")
    print("metrics:  " + ", ".join(f"{k}={v}" for k, v in result.metrics.items()))


def ensure_model(model_dir: Path) -> None:
    """Train the example model into the default directory when it is missing."""
    if model_present(model_dir):
        return
    if model_dir != DEFAULT_MODEL_DIR:
        raise CliError(
            f"no model at {model_dir} ({' or '.join(contract.MODEL_FILE_NAMES)}): save one with "
            "Booster.save_model, or train the example with "
            f"`mlserve train-example --out {model_dir}`"
        )
    print(f"No model at {model_dir}: training the example model first.", file=sys.stderr)
    train(model_dir)


def task_log_dir() -> Path:
    """Where the CLI keeps the logs of the emulated ECS tasks (created with the first task; kept
    after the emulator stops, so a failed job's log can still be read)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"mlserve-task-logs-{stamp}-{os.getpid()}"


# --- a deployed (or local) API --------------------------------------------------------------------

ENV_URL = "MLSERVE_URL"
ENV_API_KEY = "MLSERVE_API_KEY"


def add_api_options(parser: argparse.ArgumentParser) -> None:
    """--url / --api-key (or MLSERVE_URL / MLSERVE_API_KEY) and --timeout per request."""
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_URL),
        help=f"the API URL (pulumi stack output apiUrl, or `mlserve local`'s; ${ENV_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(ENV_API_KEY),
        help=f"the API key (pulumi stack output --show-secrets apiKey; ${ENV_API_KEY})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds per HTTP request (default: %(default)s)",
    )


def api_of(args: argparse.Namespace) -> Api:
    from mlserve.client import Api

    if not args.url:
        raise CliError(f"no API URL: pass --url or set {ENV_URL}")
    return Api(args.url, args.api_key, args.timeout)

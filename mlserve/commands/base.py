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
    from mlserve.local import Emulator

DEFAULT_MODEL_DIR = Path("models/example")


class CliError(Exception):
    """A failure to report as one clear line (exit status 1), never as a traceback."""


# --- argument types ------------------------------------------------------------------------------


def architecture(value: str) -> str:
    """One architecture of the program (components/settings.py), or a comma-separated list."""
    from components.settings import ARCHITECTURES

    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in ARCHITECTURES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(ARCHITECTURES)}, or a "
            "comma-separated list)"
        )
    return ",".join(dict.fromkeys(names))


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
    """The options of the commands that deploy the program locally (local, demo): the stack's
    configuration, then the options given (each one a stack setting), then ``--config``."""
    sub.add_argument(
        "--stack",
        metavar="NAME",
        help="deploy with Pulumi.NAME.yaml's configuration (default: Pulumi.yaml's defaults)",
    )
    sub.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a stack setting (e.g. lambdaMemory=2048), over the stack's; repeatable",
    )
    sub.add_argument(
        "--architecture",
        type=architecture,
        help="the architecture setting: one of lambda, lambda-ecs, stepfunctions-ecs, "
        "stepfunctions-batch, or a comma-separated list (default: the stack's)",
    )
    sub.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="a model.json or model.ubj file, metadata.json beside it optional (modelPath)",
    )
    sub.add_argument(
        "--model-dir",
        type=Path,
        help=f"a directory holding model.ubj or model.json (default: {DEFAULT_MODEL_DIR}, the "
        "example model, trained when missing; or the stack's modelPath)",
    )
    sub.add_argument(
        "--polling",
        help="stepfunctions-ecs/-batch: how the workflow watches the task or Batch job: "
        "lambda (Wait + a status Lambda) or native (ecs:runTask.sync, batch:submitJob.sync)",
    )
    sub.add_argument(
        "--poll-interval-seconds",
        type=positive_int,
        metavar="SECONDS",
        help="stepfunctions-*, polling lambda: the Wait between two status checks "
        "(pollIntervalSeconds; default here without --stack: 1)",
    )
    sub.add_argument(
        "--engine",
        choices=contract.ENGINES,
        help="lambda: the predictor's inference engine: xgboost, or onnx (the model converted "
        "and verified against XGBoost at deployment)",
    )


def emulator_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :meth:`mlserve.local.Emulator.start` arguments of :func:`add_emulator_options`'s
    options; trains the example model when it is the one to deploy and is missing."""
    from mlserve.local.deploy import StackConfigError, parse_overrides

    try:
        config = parse_overrides(args.config)
    except StackConfigError as exc:
        raise CliError(str(exc)) from None
    model_dir = args.model_dir
    stack_model = args.stack is not None or any(k.endswith("modelPath") for k in config)
    if args.model is None and model_dir is None and not stack_model:
        model_dir = DEFAULT_MODEL_DIR
    if model_dir is not None:
        ensure_model(model_dir)
    return {
        "stack": args.stack,
        "config": config,
        "architecture": args.architecture,
        "model": args.model,
        "model_dir": model_dir,
        "polling": args.polling,
        "poll_interval_seconds": args.poll_interval_seconds,
        "engine": args.engine,
    }


def start_emulator(emulator: Emulator, **options: Any) -> Emulator:
    """``emulator.start(**options)``; the program's refusal (a setting, a model it cannot serve)
    or a resource the local target cannot create is one clear line."""
    from pulumi.errors import RunError

    from mlserve.local.deploy import DeploymentError

    try:
        return emulator.start(**options)
    except (RunError, DeploymentError) as exc:
        raise CliError(str(exc)) from None


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

"""``mlserve local``: run an architecture on this machine (embedded AWS + local API Gateway)
until Ctrl-C, and print how to reach it."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from mlserve.commands.base import (
    CliError,
    add_emulator_options,
    bounded,
    emulator_options,
    positive_int,
    seconds,
    start_emulator,
    task_log_dir,
)
from runtime import contract

if TYPE_CHECKING:
    from mlserve.local import Emulator

NAME = "local"
HELP = "run an architecture locally until Ctrl-C"


_sync_wait = bounded(int, 0, 25, "an integer of seconds")
_port = bounded(int, 0, 65535, "a port number")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mlserve.local import API_AUTH_MODES

    add_emulator_options(parser)
    parser.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="API port on 127.0.0.1; 0 = any free (default: %(default)s)",
    )
    parser.add_argument(
        "--api-auth", choices=API_AUTH_MODES, help="the apiAuth setting (default: the stack's)"
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        default=None,
        help="pass null/NaN/Infinity as missing values (allowMissing)",
    )
    parser.add_argument(
        "--max-rows", type=positive_int, help="rows accepted inline (maxRows; default: the stack's)"
    )
    parser.add_argument(
        "--sync-wait-seconds",
        type=_sync_wait,
        metavar="0-25",
        help="lambda-ecs: how long POST /predict waits for the task before answering 202 "
        "(syncWaitSeconds; default: the stack's)",
    )
    parser.add_argument(
        "--task-start-delay",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="ECS tasks stay PROVISIONING/PENDING this long before their process starts, as on "
        "Fargate (30-60 s there; default: %(default)s)",
    )


def _example_row(feature_names: Sequence[str]) -> list[float]:
    """A held-out row of the example data set, or zeros for a model of other features."""
    from mlserve.train import load_example_data, split

    data = load_example_data()
    if list(feature_names) != data.feature_names:
        return [0.0] * len(feature_names)
    _, test_idx = split(data)
    return [float(v) for v in data.x[test_idx[0]]]


def _curl(
    url: str, api_key: str | None, *, body: str | None = None, method: str | None = None
) -> str:
    parts = ["curl", "-s"]
    if method:
        parts += ["-X", method]
    if api_key:
        parts += ["-H", f"{contract.API_KEY_HEADER}: {api_key}"]
    if body is not None:
        parts += ["-H", "content-type: application/json", "-d", body]
    parts.append(url)
    return " ".join(shlex.quote(p) for p in parts)


def _configure_local_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S"))
    for name in (
        "mlserve-local.gateway",
        "mlserve-local.access",
        "mlserve-local.ecs",
        "mlserve-local.stepfunctions",
    ):
        log = logging.getLogger(name)
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        log.propagate = False


def run(args: argparse.Namespace) -> int:
    from mlserve.local import Emulator

    options = emulator_options(args)
    _configure_local_logging()
    stop = threading.Event()

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    emulator = Emulator()
    try:
        try:
            start_emulator(
                emulator,
                **options,
                api_auth=args.api_auth,
                port=args.port,
                allow_missing=args.allow_missing,
                max_rows=args.max_rows,
                sync_wait_seconds=args.sync_wait_seconds,
                task_start_delay=args.task_start_delay,
                task_log_dir=task_log_dir(),
            )
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                raise
            raise CliError(
                f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}): "
                "pass another --port, or --port 0 for a free one"
            ) from None
        model = emulator.model
        row = json.dumps({"instances": [_example_row(model.metadata.get("feature_names") or [])]})
        print(f"mlserve local · architecture {','.join(emulator.architectures)}")
        print(f"  API URL     {emulator.url}")
        print(f"  API key     {emulator.api_key or '(none: --api-auth none)'}")
        print(f"  model       {model.name} {model.version} ({emulator.model_uri})")
        outputs = emulator.outputs
        if outputs.get("canaryModelUri"):
            print(f"  canary      {outputs['canaryModelUri']} (GET /health: rollout)")
        if outputs.get("captureUri"):
            print(
                f"  capture     {outputs['captureUri']} (mlserve rollout status --bucket "
                f"{emulator.bucket} --endpoint-url {emulator.endpoint_url})"
            )
        print(f"  job table   {emulator.table}")
        print(f"  AWS         {emulator.endpoint_url} (embedded moto; AWS_ENDPOINT_URL)")
        jobs = "submit_job" in emulator.routes
        if jobs:
            print(f"  task logs   {emulator.fargate.log_dir} (one file per ECS task)")
        if "stateMachineArn" in emulator.outputs:
            print(
                f"  workflow    {emulator.state_machine_arn} (polling: {emulator.polling};"
                " executions are named after the job id)"
            )
        _print_batch_setup(emulator)
        print()
        _print_try(emulator, row, jobs=jobs)
        print()
        print("Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        signal.signal(signal.SIGTERM, previous)
    print("stopped.")
    return 0


def _print_try(emulator: Emulator, row: str, *, jobs: bool) -> None:
    url, key = emulator.url, emulator.api_key
    print("Try:")
    print("  " + _curl(f"{url}/health", key))
    print("  " + _curl(f"{url}/predict", key, body=row))
    if jobs:
        print("  " + _curl(f"{url}/jobs", key, body=row))
        print("  " + _curl(f"{url}/jobs/JOB_ID", key))
        print("  " + _curl(f"{url}/jobs/JOB_ID", key, method="DELETE"))
    key_arg = f" --api-key {key}" if key else ""
    print(f"  mlserve predict --url {url}{key_arg} rows.csv")
    if jobs:
        print(f"  mlserve predict --url {url}{key_arg} --upload big.parquet")
        print(f"  mlserve jobs list --url {url}{key_arg}")


def _print_batch_setup(emulator: Emulator) -> None:
    if contract.ARCH_STEPFUNCTIONS_BATCH not in emulator.architectures:
        return
    print(
        f"  batch jobs  {emulator.batch.log_dir} (one log per attempt; at most "
        f"{emulator.batch.max_parallel} containers at a time)"
    )
    print(
        f"  job configs upload s3://{emulator.bucket}/{contract.JOBS_PREFIX}NAME.json: "
        '{"input_uri": "s3://.../inputs/...", "output_uri": "s3://.../results/NAME/", '
        '"format": "csv", "shards": 4}'
    )

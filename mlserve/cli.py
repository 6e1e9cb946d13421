"""python -m mlserve {demo,local,train-example,predict,cost,bench,verify}: the developer CLI.

- ``train-example``: train the example model (models/example/model.ubj + metadata.json).
- ``local``: run an architecture on this machine (embedded AWS + local API Gateway) until Ctrl-C.
- ``demo``: start the emulator, score the example data set's held-out rows over HTTP, print the
  predictions next to the true labels and the accuracy, stop. With a job API (``lambda-ecs``)
  the rows go through the scoring task: POST /predict (answered within syncWaitSeconds), then a
  POST /jobs polled with GET /jobs/{id} until it SUCCEEDED. With ``stepfunctions-ecs``
  (``--polling lambda|native``) each job is an execution of the state machine: the demo shows
  the statuses it went through and the execution's state transitions. With
  ``stepfunctions-batch`` a generated CSV (``--batch-rows``, 100,000 by default) is scored by a
  job config uploaded to ``jobs/``: an AWS Batch array job of ``--shards`` shards (local
  processes), with live progress (shards succeeded/running), then the parts are checked.
- ``predict``: POST a CSV or JSON file of rows to a deployed (or local) API and print predictions.
- ``bench``: the benchmarks behind ``make bench`` (benchmarks/run.py).
- ``verify``: the reliability and security checks behind ``make verify`` (mlserve/verify.py).

Only the standard library talks HTTP here (urllib): the CLI needs no client dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from runtime import contract

if TYPE_CHECKING:
    from rich.console import Console

    from mlserve.local import Emulator
    from mlserve.train import ExampleData

DEFAULT_MODEL_DIR = Path("models/example")


class CliError(Exception):
    """A failure to report as one clear line (exit status 1), never as a traceback."""


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any  # parsed JSON, or None when the body is not JSON
    text: str


class ApiError(CliError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def call_api(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
) -> ApiResponse:
    """One HTTP request; a non-2xx answer raises :class:`ApiError` with the API's error."""
    if not url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) URL: {url!r}")
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    if api_key:
        headers[contract.API_KEY_HEADER] = api_key
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {url}: {reason}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if not 200 <= status < 300:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            raise ApiError(status, str(error.get("code", "error")), str(error.get("message", "")))
        message = parsed.get("message") if isinstance(parsed, dict) else None
        raise ApiError(status, "error", str(message or text[:200] or "(empty body)"))
    return ApiResponse(status, parsed, text)


# --- train-example -------------------------------------------------------------------------------


def _model_present(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in contract.MODEL_FILE_NAMES)


def _train(out: Path) -> None:
    from mlserve.train import train_example

    result = train_example(out_dir=out)
    print(f"model:    {result.model_path}")
    print(f"metadata: {result.metadata_path}")
    print(f"sha256:   {result.sha256}")
    print("metrics:  " + ", ".join(f"{k}={v}" for k, v in result.metrics.items()))


def ensure_model(model_dir: Path) -> None:
    """Train the example model into the default directory when it is missing."""
    if _model_present(model_dir):
        return
    if model_dir != DEFAULT_MODEL_DIR:
        raise CliError(
            f"no model at {model_dir} ({' or '.join(contract.MODEL_FILE_NAMES)}): save one with "
            "Booster.save_model, or train the example with "
            f"`python -m mlserve train-example --out {model_dir}`"
        )
    print(f"No model at {model_dir}: training the example model first.", file=sys.stderr)
    _train(model_dir)


def cmd_train_example(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.if_missing and _model_present(out):
        print(f"model already present: {out / contract.MODEL_OBJECT_NAME} (--if-missing)")
        return 0
    _train(out)
    return 0


# --- local ---------------------------------------------------------------------------------------


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


def task_log_dir() -> Path:
    """Where the CLI keeps the logs of the emulated ECS tasks (created with the first task; kept
    after the emulator stops, so a failed job's log can still be read)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"mlserve-task-logs-{stamp}-{os.getpid()}"


def cmd_local(args: argparse.Namespace) -> int:
    from mlserve.local import Emulator

    ensure_model(args.model_dir)
    _configure_local_logging()
    stop = threading.Event()

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    emulator = Emulator()
    try:
        try:
            emulator.start(
                architecture=args.architecture,
                api_auth=args.api_auth,
                model_dir=args.model_dir,
                port=args.port,
                allow_missing=args.allow_missing,
                max_rows=args.max_rows,
                sync_wait_seconds=args.sync_wait_seconds,
                task_start_delay=args.task_start_delay,
                task_log_dir=task_log_dir(),
                polling=args.polling,
                poll_interval_seconds=args.poll_interval_seconds,
                engine=args.engine,
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
        print(f"  job table   {emulator.table}")
        print(f"  AWS         {emulator.endpoint_url} (embedded moto; AWS_ENDPOINT_URL)")
        jobs = "submit_job" in emulator.routes
        if jobs:
            print(f"  task logs   {emulator.fargate.log_dir} (one file per ECS task)")
        if "stateMachineArn" in emulator.outputs:
            print(
                f"  workflow    {emulator.state_machine_arn} (polling: {emulator.options.polling};"
                " executions are named after the job id)"
            )
        _print_batch_setup(emulator)
        print()
        print("Try:")
        print("  " + _curl(f"{emulator.url}/health", emulator.api_key))
        print("  " + _curl(f"{emulator.url}/predict", emulator.api_key, body=row))
        if jobs:
            print("  " + _curl(f"{emulator.url}/jobs", emulator.api_key, body=row))
            print("  " + _curl(f"{emulator.url}/jobs/JOB_ID", emulator.api_key))
            print("  " + _curl(f"{emulator.url}/jobs/JOB_ID", emulator.api_key, method="DELETE"))
        key_arg = f" --api-key {emulator.api_key}" if emulator.api_key else ""
        print(f"  python -m mlserve predict --url {emulator.url}{key_arg} rows.csv")
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


# --- demo ----------------------------------------------------------------------------------------


def _predictions(response: ApiResponse) -> list[Any]:
    body = response.body
    if response.status != 200 or not isinstance(body, dict) or "predictions" not in body:
        raise CliError(
            f"unexpected answer from POST /predict ({response.status}): {response.text[:200]}"
        )
    return list(body["predictions"])


def _label(prediction: Any) -> int:
    if isinstance(prediction, list):  # multi-class probabilities
        return max(range(len(prediction)), key=lambda i: prediction[i])
    return int(float(prediction) >= 0.5)


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlserve.local import Emulator
    from mlserve.train import load_example_data, split

    console = Console()
    ensure_model(args.model_dir)
    data = load_example_data()
    _, test_idx = split(data)
    shown = test_idx[: min(args.rows, len(test_idx))]

    with console.status("starting the local emulator (embedded AWS + API Gateway)..."):
        emulator = Emulator().start(
            architecture=args.architecture,
            model_dir=args.model_dir,
            task_log_dir=task_log_dir(),
            polling=args.polling,
            poll_interval_seconds=args.poll_interval_seconds,
            engine=args.engine,
        )
    # The functions' INFO lines (one JSON object per job created or task started) would go to
    # CloudWatch; here they would drown the demo's output. Warnings and errors still show.
    logging.getLogger(contract.SERVICE_NAME).setLevel(logging.WARNING)
    try:
        if contract.ARCH_STEPFUNCTIONS_BATCH in emulator.architectures:
            _demo_batch(console, emulator, data, test_idx, rows=args.batch_rows, shards=args.shards)
        else:
            _demo(console, emulator, data, shown, test_idx)
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"demo failed: {type(exc).__name__}: {exc}") from exc
    finally:
        with console.status("stopping..."):
            emulator.stop()
    return 0


def _demo(
    console: Console, emulator: Emulator, data: ExampleData, shown: Any, test_idx: Any
) -> None:
    """Score the held-out rows over HTTP and print what came back."""
    import numpy as np

    url, key = emulator.url, emulator.api_key
    jobs = "submit_job" in emulator.routes
    workflow = jobs and (
        emulator.routes["submit_job"].env.get(contract.ENV_ARCHITECTURE)
        == contract.ARCH_STEPFUNCTIONS_ECS
    )
    console.print(
        f"[bold]mlserve demo[/] · architecture [cyan]{','.join(emulator.architectures)}[/]"
        + (f" (polling: {emulator.options.polling})" if workflow else "")
    )
    console.print(f"API {url} · embedded AWS {emulator.endpoint_url}")
    health = call_api("GET", f"{url}/health", api_key=key).body
    model = health["model"]
    console.print(
        f"GET /health → model [cyan]{model['name']}[/] version {model['version']} "
        f"({model['num_features']} features, {model['objective']}, "
        f"engine {model.get('engine', contract.ENGINE_XGBOOST)})"
    )
    names: list[str] = list(model["feature_names"])
    if names != data.feature_names:
        raise CliError("the served model was not trained on the example data set")

    # JSON, rows as objects keyed by feature name
    instances = [dict(zip(names, map(float, data.x[i]), strict=True)) for i in shown]
    payload = json.dumps({"instances": instances}).encode()
    started = time.monotonic()
    predicted = _check_count(_predict(console, emulator, payload, "application/json"), len(shown))
    if jobs and emulator.routes["predict"] is emulator.routes["submit_job"]:
        elapsed = time.monotonic() - started
        if workflow:
            console.print(
                f"  predictions after {elapsed:.1f} s (a state machine execution ran the ECS "
                "task; POST /predict never waits for it here)"
            )
        else:
            console.print(
                f"POST /predict → 200 in {elapsed:.1f} s "
                "(the job API ran an ECS task and waited for it)"
            )
    _print_rows(console, emulator, data, shown, predicted)

    if jobs:
        all_predicted = _demo_job(console, emulator, data, names, test_idx, workflow=workflow)
        first = all_predicted[: len(shown)]
        what = f"the job's predictions of the same {len(shown)} rows → "
    else:
        # the same rows as CSV with a header row
        lines = [",".join(names)] + [",".join(repr(float(v)) for v in data.x[i]) for i in shown]
        first = _check_count(
            _predict(console, emulator, "\n".join(lines).encode(), "text/csv"), len(shown)
        )
        what = f"text/csv with a header row, same {len(shown)} rows → "
    same = bool(np.allclose(np.asarray(predicted, dtype=float), np.asarray(first, dtype=float)))
    console.print(
        what + ("[green]identical predictions[/]" if same else "[red]DIFFERENT predictions[/]")
    )
    if not same:
        raise CliError("two requests with the same rows gave different predictions")

    if not jobs:
        # the whole held-out split in one request
        everything = json.dumps({"instances": data.x[test_idx].tolist()}).encode()
        all_predicted = _check_count(
            _predict(console, emulator, everything, "application/json"), len(test_idx)
        )
    correct = sum(_label(p) == int(data.y[i]) for p, i in zip(all_predicted, test_idx, strict=True))
    accuracy = correct / len(test_idx)
    trained = (emulator.model.metadata.get("metrics") or {}).get("accuracy")
    console.print(
        f"[bold]accuracy[/] on the held-out split ({len(test_idx)} rows, "
        f"{'one job' if jobs else 'one request'}): "
        f"[bold green]{accuracy:.1%}[/] ({correct} correct)"
    )
    if trained is not None:
        console.print(f"the training run measured {float(trained):.1%} on the same rows")
    if jobs:
        _print_tasks(console, emulator)


# --- demo: stepfunctions-batch --------------------------------------------------------------------


def _demo_batch(
    console: Console,
    emulator: Emulator,
    data: ExampleData,
    test_idx: Any,
    *,
    rows: int,
    shards: int,
) -> None:
    """A generated CSV of ``rows`` held-out rows (drawn with replacement, an ``id`` column
    first), scored through a job config upload: S3 event -> trigger -> workflow -> Batch array
    job of ``shards`` shards; live progress; then every part read back and checked."""
    import io

    import numpy as np

    s3 = emulator.client("s3")
    bucket = emulator.bucket
    console.print(
        f"[bold]mlserve demo[/] · architecture [cyan]{','.join(emulator.architectures)}[/] "
        f"(polling: {emulator.options.polling})"
    )
    console.print(f"API {emulator.url} · embedded AWS {emulator.endpoint_url}")
    console.print(
        f"Batch: queues high/low, job definition {emulator.outputs['batchJobDefinition']} · "
        f"at most {emulator.batch.max_parallel} containers at a time (the core count)"
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rng = np.random.default_rng(7)
    picked = np.asarray(test_idx)[rng.integers(0, len(test_idx), rows)]
    with console.status(f"generating {rows:,} rows of CSV..."):
        out = io.StringIO()
        out.write(",".join(["id", *data.feature_names]) + "\n")
        values = data.x[picked]
        for n, row in enumerate(values):
            out.write(f"{n}," + ",".join(repr(float(v)) for v in row) + "\n")
        body = out.getvalue().encode()
    input_key = f"{contract.INPUTS_PREFIX}demo-{stamp}.csv"
    s3.put_object(Bucket=bucket, Key=input_key, Body=body)
    console.print(f"s3://{bucket}/{input_key}: {rows:,} rows, {len(body) / 1e6:.1f} MB")
    output_uri = f"s3://{bucket}/{contract.RESULTS_PREFIX}demo-{stamp}/"
    config = {
        "input_uri": f"s3://{bucket}/{input_key}",
        "output_uri": output_uri,
        "format": "csv",
        "shards": shards,
        "priority": "high",
        "id_column": "id",
    }
    config_key = f"{contract.JOBS_PREFIX}demo-{stamp}.json"
    before = len(emulator.notifications.deliveries)
    started = time.monotonic()
    s3.put_object(Bucket=bucket, Key=config_key, Body=json.dumps(config).encode())
    console.print(f"s3://{bucket}/{config_key} ← {json.dumps(config)}")
    job_id = _triggered_job(emulator, before)
    console.print(f"S3 event → trigger Lambda → job [cyan]{job_id}[/] (execution {job_id})")
    job = _follow_batch_job(console, emulator, job_id, shards)
    elapsed = time.monotonic() - started
    if job.get("status") != contract.STATUS_SUCCEEDED:
        error = job.get("error") or {}
        raise CliError(f"job {job_id} {job.get('status')}: {error.get('message', '')}")
    console.print(f"job [bold green]SUCCEEDED[/] after {elapsed:.1f} s")
    _check_batch_output(console, emulator, output_uri, picked=picked, data=data, shards=shards)


def _triggered_job(emulator: Emulator, before: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries = emulator.notifications.deliveries[before:]
        if deliveries and deliveries[0].done.wait(0.1):
            delivery = deliveries[0]
            if delivery.error is not None:
                raise CliError(f"the trigger failed: {delivery.error}")
            result = delivery.result["results"][0]
            if result.get("outcome") != "started":
                raise CliError(f"the trigger did not start the job: {result}")
            return str(result["job_id"])
        time.sleep(0.05)
    raise CliError("no S3 event reached the trigger")


def _job_record(emulator: Emulator, job_id: str) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    item = (
        emulator.client("dynamodb")
        .get_item(TableName=emulator.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
        .get("Item")
        or {}
    )
    deserializer = TypeDeserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


def _follow_batch_job(
    console: Console, emulator: Emulator, job_id: str, shards: int, timeout: float = 1800
) -> dict[str, Any]:
    """Live progress until the record is terminal: shards succeeded/running/failed, from the
    Batch job's array statusSummary (DescribeJobs)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    batch = emulator.client("batch")
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=16),
        TextColumn("{task.completed:.0f}/{task.total:.0f} succeeded"),
        TextColumn("{task.fields[running]} running {task.fields[failed]} failed"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("shards", total=shards, running=0, failed=0, status="PENDING")
        while True:
            job = _job_record(emulator, job_id)
            status = str(job.get("status", "PENDING"))
            parent = _batch_parent(emulator, job)
            summary: dict[str, int] = {}
            batch_status = "-"
            if parent is not None:
                described = batch.describe_jobs(jobs=[parent])["jobs"]
                if described:
                    batch_status = str(described[0]["status"])
                    summary = (described[0].get("arrayProperties") or {}).get("statusSummary") or {
                        batch_status: 1,
                    }
            progress.update(
                bar,
                completed=summary.get("SUCCEEDED", 0),
                running=summary.get("RUNNING", 0) + summary.get("STARTING", 0),
                failed=summary.get("FAILED", 0),
                status=f"job {status}, Batch {batch_status}",
            )
            if status not in (contract.STATUS_PENDING, contract.STATUS_RUNNING):
                return job
            if time.monotonic() > deadline:
                raise CliError(f"job {job_id} still {status} after {timeout:.0f} s")
            time.sleep(0.25)


def _batch_parent(emulator: Emulator, job: dict[str, Any]) -> str | None:
    """The job's Batch job: on the record, else (polling native) the one its containers run."""
    if job.get("batch_job_id"):
        return str(job["batch_job_id"])
    for run in emulator.batch_jobs:
        if run.environment.get(contract.ENV_JOB_ID) == job.get("job_id"):
            return run.job_id.split(":")[0]
    return None


def _check_batch_output(
    console: Console,
    emulator: Emulator,
    output_uri: str,
    *,
    picked: Any,
    data: ExampleData,
    shards: int,
) -> None:
    import csv
    import io

    import numpy as np
    from rich.table import Table

    s3 = emulator.client("s3")
    bucket, prefix = output_uri[len("s3://") :].split("/", 1)
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}_manifest.json")["Body"].read()
    )
    table = Table(title=f"{output_uri} (manifest: {manifest.get('rows')} rows)")
    for column in ("part", "rows", "sha256"):
        table.add_column(column)
    ids: list[int] = []
    predictions: list[float] = []
    for part in manifest.get("parts", []):
        text = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read().decode()
        reader = csv.DictReader(io.StringIO(text))
        count = 0
        for row in reader:
            ids.append(int(row["id"]))
            predictions.append(float(row["prediction"]))
            count += 1
        table.add_row(part["key"].rsplit("/", 1)[-1], f"{count:,}", str(part["sha256"])[:16])
    console.print(table)
    if len(manifest.get("parts", [])) != shards:
        raise CliError(f"{len(manifest.get('parts', []))} parts, expected {shards}")
    if sorted(ids) != list(range(len(picked))):
        raise CliError("the parts do not hold every input id exactly once")
    console.print(f"every one of the {len(picked):,} ids exactly once: [green]yes[/]")
    order = np.asarray(ids)
    labels = data.y[np.asarray(picked)[order]]
    correct = int(np.sum((np.asarray(predictions) >= 0.5).astype(int) == labels))
    console.print(
        f"[bold]accuracy[/] against the true labels: [bold green]{correct / len(ids):.1%}[/] "
        "(held-out rows drawn with replacement)"
    )
    _print_batch_children(console, emulator)


def _print_batch_children(console: Console, emulator: Emulator) -> None:
    from rich.table import Table

    table = Table(title="AWS Batch jobs (local processes)")
    for column in ("job id", "index", "status", "attempts (exit codes)"):
        table.add_column(column)
    for run in emulator.batch_jobs:
        codes = ", ".join("-" if c is None else str(c) for c in run.exit_codes)
        index = "-" if run.array_index is None else str(run.array_index)
        table.add_row(run.job_id, index, run.status, f"{len(run.exit_codes)} ({codes})")
    console.print(table)


def _demo_job(
    console: Console,
    emulator: Emulator,
    data: ExampleData,
    names: list[str],
    test_idx: Any,
    *,
    workflow: bool,
) -> list[Any]:
    """The whole held-out split as CSV with a header row, as a job: 202, then poll."""
    url, key = emulator.url, emulator.api_key
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in data.x[test_idx]]
    accepted = call_api(
        "POST", f"{url}/jobs", body="\n".join(lines).encode(), content_type="text/csv", api_key=key
    )
    console.print(
        f"POST /jobs ({len(test_idx)} rows, text/csv with a header row) → "
        f"{accepted.status} {accepted.body['status']}"
    )
    started = time.monotonic()
    seen: list[str] = []
    job = _wait_for_job(console, emulator, accepted, seen)
    all_predicted = _check_count(_job_predictions(emulator, job), len(test_idx))
    console.print(
        f"GET /jobs/{job['job_id']} → [bold]{job['status']}[/] "
        f"after {time.monotonic() - started:.1f} s (seen: {' → '.join(seen)})"
    )
    if workflow:
        _print_execution(console, emulator, str(job["job_id"]))
    return all_predicted


def _print_rows(
    console: Console, emulator: Emulator, data: ExampleData, shown: Any, predicted: list[Any]
) -> None:
    from rich.table import Table

    classes = list(emulator.model.metadata.get("classes") or ["0", "1"])
    positive = classes[1] if len(classes) > 1 else "1"
    table = Table(title=f"{len(shown)} held-out rows, POST /predict (JSON instances)")
    table.add_column("row", justify="right")
    table.add_column("true label")
    table.add_column(f"P({positive})", justify="right")
    table.add_column("predicted")
    table.add_column("", justify="center")
    for i, prediction in zip(shown, predicted, strict=True):
        truth, guess = int(data.y[i]), _label(prediction)
        score = f"{prediction:.4f}" if not isinstance(prediction, list) else str(prediction)
        table.add_row(
            str(int(i)),
            classes[truth],
            score,
            classes[guess],
            "[green]✓[/]" if truth == guess else "[red]✗[/]",
        )
    console.print(table)


DEMO_JOB_TIMEOUT = 120.0  # seconds the demo waits for a job before giving up


def _check_count(predictions: list[Any], expected_rows: int) -> list[Any]:
    if len(predictions) != expected_rows:
        raise CliError(f"sent {expected_rows} rows, got {len(predictions)} predictions")
    return predictions


def _predict(console: Console, emulator: Emulator, body: bytes, content_type: str) -> list[Any]:
    """POST /predict; a 202 (the job outlived syncWaitSeconds) is polled until it finished."""
    response = call_api(
        "POST",
        f"{emulator.url}/predict",
        body=body,
        content_type=content_type,
        api_key=emulator.api_key,
    )
    if response.status == 202:
        console.print(
            f"POST /predict → 202: job {response.body.get('job_id')} still running, polling it"
        )
        return _job_predictions(emulator, _wait_for_job(console, emulator, response))
    return _predictions(response)


def _wait_for_job(
    console: Console, emulator: Emulator, accepted: ApiResponse, seen: list[str] | None = None
) -> dict[str, Any]:
    """Poll the job's status_url (0.25 s, doubling, at most 2 s apart) until it finished;
    ``seen`` collects each status the job was seen in."""
    body = accepted.body if isinstance(accepted.body, dict) else {}
    status_url = body.get("status_url")
    if accepted.status != 202 or not status_url:
        raise CliError(f"expected 202 with a status_url, got {accepted.status}: {accepted.text}")
    deadline = time.monotonic() + DEMO_JOB_TIMEOUT
    delay = 0.25
    if seen is not None:
        seen.append(str(body.get("status") or contract.STATUS_PENDING))
    with console.status(f"job {body.get('job_id')}: waiting for the scoring task..."):
        while True:
            job = call_api("GET", status_url, api_key=emulator.api_key).body
            if seen is not None and job["status"] != seen[-1]:
                seen.append(str(job["status"]))
            if job["status"] == contract.STATUS_SUCCEEDED:
                return dict(job)
            if job["status"] in contract.TERMINAL_STATUSES:
                error = job.get("error") or {}
                raise CliError(
                    f"job {job['job_id']} {job['status']}: {error.get('message', '(no reason)')}"
                )
            if time.monotonic() > deadline:
                raise CliError(
                    f"job {job['job_id']} still {job['status']} after {DEMO_JOB_TIMEOUT:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _job_predictions(emulator: Emulator, job: dict[str, Any]) -> list[Any]:
    """A SUCCEEDED job's predictions: inline, or the output_uri object in S3."""
    if "predictions" in job:
        return list(job["predictions"])
    bucket, _, key = str(job["output_uri"]).removeprefix("s3://").partition("/")
    document = json.loads(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    return list(document["predictions"] if isinstance(document, dict) else document)


def _print_execution(console: Console, emulator: Emulator, job_id: str) -> None:
    """The job's Step Functions execution: its status, state transitions and Lambda calls."""
    client = emulator.client("stepfunctions")
    arn = emulator.execution_arn(job_id)
    deadline = time.monotonic() + 10
    execution = client.describe_execution(executionArn=arn)
    while execution["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)  # the job is recorded SUCCEEDED before the execution's last state
        execution = client.describe_execution(executionArn=arn)
    events = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")
    ]
    lambdas = sum(
        1
        for e in events
        if e["type"] == "TaskScheduled"
        and e.get("taskScheduledEventDetails", {}).get("resourceType") == "lambda"
    )
    console.print(
        f"execution {job_id}: [bold]{execution['status']}[/], "
        f"[bold]{len(entered)} state transitions[/], {lambdas} Lambda invocations "
        f"(polling: {emulator.options.polling}, {len(events)} history events)"
    )
    console.print("  " + " → ".join(entered), highlight=False, soft_wrap=True)


def _print_tasks(console: Console, emulator: Emulator) -> None:
    """Each scoring task: its job, how it stopped, its log file and last log line."""
    from rich.markup import escape

    console.print("ECS tasks (one per job; the logs are kept):")
    for task in emulator.tasks:
        # a container records its result, then exits: give the last one a moment to stop
        with contextlib.suppress(TimeoutError):
            emulator.fargate.wait(task.arn, timeout=10)
        console.print(
            f"  task {task.task_id[:8]}… job {task.job_id}: {task.status}, "
            f"exit code {task.exit_code}, log {task.log_path}",
            highlight=False,
            soft_wrap=True,  # keep the path on one line
        )
        lines = task.log_text().strip().splitlines()
        if lines:
            console.print(f"    {escape(lines[-1])}", highlight=False, soft_wrap=True)


# --- predict -------------------------------------------------------------------------------------


def _read_rows(path: Path) -> tuple[bytes, str]:
    """The request body and content type for a CSV or JSON file of rows."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".csv":
        return raw, "text/csv"
    try:
        document = json.loads(raw)
    except ValueError as exc:
        if path.suffix.lower() == ".json":
            raise CliError(f"{path} is not valid JSON: {exc}") from None
        return raw, "text/csv"  # no telling suffix and not JSON: treat as CSV
    if isinstance(document, list):
        document = {"instances": document}
    if not isinstance(document, dict) or "instances" not in document:
        raise CliError(f'{path}: expected a JSON list of rows or an object with "instances"')
    return json.dumps(document).encode(), "application/json"


def cmd_predict(args: argparse.Namespace) -> int:
    body, content_type = _read_rows(args.file)
    url = args.url.rstrip("/") + "/predict"
    try:
        response = call_api(
            "POST",
            url,
            body=body,
            content_type=content_type,
            api_key=args.api_key,
            timeout=args.timeout,
        )
    except ApiError as exc:
        print(f"error {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    result = response.body
    if response.status == 202 and isinstance(result, dict) and result.get("status_url"):
        # an asynchronous architecture accepted the rows as a job: poll it
        job = _poll_job(str(result["status_url"]), args.api_key, args.timeout)
        if job["status"] != contract.STATUS_SUCCEEDED:
            error = job.get("error") or {}
            print(
                f"error: job {job['job_id']} {job['status']}: "
                f"{error.get('message', '(no reason recorded)')}",
                file=sys.stderr,
            )
            return 1
        if "predictions" not in job:
            print(f"job {job['job_id']} SUCCEEDED: predictions at {job.get('output_uri')}")
            return 0
        result = {"predictions": job["predictions"], "model_version": job.get("model_version")}
    if not isinstance(result, dict) or "predictions" not in result:
        raise CliError(f"unexpected answer from {url}: {response.text[:200]}")
    if args.format == "json":
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("row", justify="right")
    table.add_column("prediction", justify="right")
    for i, prediction in enumerate(result["predictions"]):
        if isinstance(prediction, list):
            text = ", ".join(f"{p:.6g}" for p in prediction)
        else:
            text = f"{prediction:.6g}"
        table.add_row(str(i), text)
    console = Console()
    console.print(table)
    console.print(
        f"{len(result['predictions'])} predictions · model version {result.get('model_version')}"
    )
    return 0


def _poll_job(status_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    """GET the job (0.25 s, doubling, at most 2 s apart) until it finished or ``timeout``."""
    print(f"202 Accepted: polling {status_url}", file=sys.stderr)
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        job = call_api("GET", status_url, api_key=api_key, timeout=timeout).body
        if not isinstance(job, dict) or "status" not in job:
            raise CliError(f"unexpected answer from {status_url}: {job!r}"[:300])
        if job["status"] in contract.TERMINAL_STATUSES:
            return dict(job)
        if time.monotonic() + delay > deadline:
            raise CliError(f"job {job.get('job_id')} still {job['status']} after {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# --- parser --------------------------------------------------------------------------------------


def _architecture(value: str) -> str:
    from mlserve.local import parse_architectures

    try:
        return ",".join(parse_architectures(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid choice: {exc}") from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _shards(value: str) -> int:
    shards = _positive_int(value)
    if shards > contract.MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {contract.MAX_SHARDS} shards")
    return shards


def _sync_wait(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 0 <= number <= 25:
        raise argparse.ArgumentTypeError(f"must be 0-25 (seconds), got {number}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= number <= 3600:
        raise argparse.ArgumentTypeError(f"must be 0-3600 (seconds), got {value}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    from mlserve.local import API_AUTH_MODES, available
    from mlserve.local.architectures import LOCAL_POLL_INTERVAL_SECONDS, POLLING_MODES

    architectures = ", ".join(available())
    parser = argparse.ArgumentParser(
        prog="python -m mlserve", description="mlserve developer CLI (see README.md)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train-example", help="train the example model")
    train.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="output directory (default: %(default)s)",
    )
    train.add_argument("--if-missing", action="store_true", help="do nothing when the model exists")
    train.set_defaults(func=cmd_train_example)

    def emulator_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--architecture",
            type=_architecture,
            metavar="{" + ",".join(available()) + "}",
            default=contract.ARCH_LAMBDA,
            help=f"one of: {architectures} (or a comma-separated list; default: %(default)s)",
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
            type=_positive_int,
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

    local = commands.add_parser("local", help="run an architecture locally until Ctrl-C")
    emulator_options(local)
    local.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="API port on 127.0.0.1; 0 = any free (default: %(default)s)",
    )
    local.add_argument(
        "--api-auth", choices=API_AUTH_MODES, default="api-key", help="(default: %(default)s)"
    )
    local.add_argument(
        "--allow-missing", action="store_true", help="pass null/NaN/Infinity as missing values"
    )
    local.add_argument(
        "--max-rows",
        type=_positive_int,
        default=contract.DEFAULT_MAX_ROWS,
        help="rows accepted inline (default: %(default)s)",
    )
    local.add_argument(
        "--sync-wait-seconds",
        type=_sync_wait,
        default=25,
        metavar="0-25",
        help="lambda-ecs: how long POST /predict waits for the task before answering 202 "
        "(the syncWaitSeconds setting; default: %(default)s)",
    )
    local.add_argument(
        "--task-start-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="ECS tasks stay PROVISIONING/PENDING this long before their process starts, as on "
        "Fargate (30-60 s there; default: %(default)s)",
    )
    local.set_defaults(func=cmd_local)

    demo = commands.add_parser("demo", help="start the emulator, score the example data, stop")
    emulator_options(demo)
    demo.add_argument(
        "--rows", type=_positive_int, default=10, help="rows to show (default: %(default)s)"
    )
    demo.add_argument(
        "--batch-rows",
        type=_positive_int,
        default=100_000,
        help="stepfunctions-batch: rows of the generated CSV (default: %(default)s)",
    )
    demo.add_argument(
        "--shards",
        type=_shards,
        default=4,
        help="stepfunctions-batch: the job's shards, 1-10000 (default: %(default)s)",
    )
    demo.set_defaults(func=cmd_demo)

    predict = commands.add_parser(
        "predict", help="POST a CSV or JSON file of rows to an mlserve API"
    )
    predict.add_argument("--url", required=True, help="the API URL (pulumi stack output apiUrl)")
    predict.add_argument(
        "--api-key", default=None, help="the API key (pulumi stack output --show-secrets apiKey)"
    )
    predict.add_argument(
        "--format", choices=("table", "json"), default="table", help="(default: %(default)s)"
    )
    predict.add_argument(
        "--timeout", type=float, default=60.0, help="seconds (default: %(default)s)"
    )
    predict.add_argument("file", type=Path, metavar="FILE.csv|FILE.json")
    predict.set_defaults(func=cmd_predict)

    bench = commands.add_parser(
        "bench", help="latency ratios, throughput, memory and package sizes (benchmarks/results.md)"
    )
    bench.add_argument(
        "--only", action="append", metavar="SECTION", help="run only this section (repeatable)"
    )
    bench.add_argument("--quick", action="store_true", help="fewer iterations, smaller inputs")
    bench.set_defaults(func=cmd_bench)

    verify = commands.add_parser(
        "verify", help="least privilege, fuzzing, faults, load, data safety, dependency audit"
    )
    verify.add_argument(
        "pytest_args", nargs="*", metavar="PYTEST_ARG", help="extra arguments for pytest"
    )
    verify.set_defaults(func=cmd_verify)

    from mlserve.cost import add_arguments as add_cost_arguments

    cost = commands.add_parser(
        "cost", help="monthly cost per architecture, break-even points, a chart (docs/cost.md)"
    )
    add_cost_arguments(cost)
    cost.set_defaults(func=cmd_cost)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from benchmarks.run import main as run_benchmarks
    except ImportError as exc:  # benchmarks/ lives in the repository, not in the package
        raise CliError("run `bench` from the repository root (make bench)") from exc
    argv = [arg for section in args.only or () for arg in ("--only", section)]
    return run_benchmarks(argv + (["--quick"] if args.quick else []))


def cmd_cost(args: argparse.Namespace) -> int:
    from mlserve.cost import run as run_cost

    return run_cost(args)


def cmd_verify(args: argparse.Namespace) -> int:
    from mlserve.verify import run_verify

    return run_verify(list(args.pytest_args))


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

"""``mlserve demo``: start the emulator, score the example data set's held-out rows over HTTP,
print the predictions next to the true labels and the accuracy, stop.

With a job API (``lambda-ecs``) the rows go through the scoring task: POST /predict (answered
within syncWaitSeconds), then a POST /jobs polled with GET /jobs/{id} until it SUCCEEDED. With
``stepfunctions-ecs`` (``--polling lambda|native``) each job is an execution of the state
machine: the demo shows the statuses it went through and the execution's state transitions.
With ``stepfunctions-batch`` a generated CSV (``--batch-rows``, 100,000 by default) is scored by
a job config uploaded to ``jobs/``: an AWS Batch array job of ``--shards`` shards (local
processes), with live progress (shards succeeded/running), then the parts are checked.

``--canary PERCENT`` deploys a second version of the example model (more trees;
``--canary-model`` for another) beside the first as a canary (``--canary-mode split``) or a
shadow (``shadow``, architecture ``lambda`` only). With ``lambda`` it captures every request,
sends the held-out rows one request each, prints which version answered with its accuracy, and
ends with ``mlserve rollout status``'s table read from the captured records in the emulator's
bucket. On a job architecture it submits the held-out rows as ``CANARY_JOBS`` jobs (POST /jobs),
waits for them, prints which version each job recorded and scored with, that version's
accuracy, a job pinned to the canary, and ends with the rollout status table of the jobs, read
from the job table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlserve.client import ApiResponse, call_api
from mlserve.commands.base import (
    CliError,
    add_emulator_options,
    emulator_options,
    positive_int,
    start_emulator,
    task_log_dir,
)
from runtime import contract

if TYPE_CHECKING:
    from rich.console import Console

    from mlserve.local import Emulator
    from mlserve.train import ExampleData

NAME = "demo"
HELP = "start the emulator, score the example data, stop"


def _shards(value: str) -> int:
    shards = positive_int(value)
    if shards > contract.MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {contract.MAX_SHARDS} shards")
    return shards


CANARY_MODEL = Path("models/example-canary/model.ubj")
CANARY_TREES = 300  # the example model has 100
CANARY_JOBS = 12  # jobs the canary demo of a job architecture submits


def _percent(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 0 <= number <= 100:
        raise argparse.ArgumentTypeError(f"must be 0-100, got {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_emulator_options(parser)
    parser.add_argument(
        "--canary",
        type=_percent,
        metavar="PERCENT",
        help="serve a second model version to PERCENT %% of the requests (lambda) or jobs (the "
        "job architectures) (canaryPercent) and end with the rollout status table",
    )
    parser.add_argument(
        "--canary-mode",
        choices=contract.CANARY_MODES,
        default=contract.CANARY_SPLIT,
        help="with --canary: split (the canary answers its share) or shadow (lambda only: it "
        "only scores its share beside the stable model) (default: %(default)s)",
    )
    parser.add_argument(
        "--canary-model",
        type=Path,
        metavar="PATH",
        help=f"with --canary: the canary model (default: {CANARY_MODEL}, the example model "
        f"retrained with {CANARY_TREES} trees, trained when missing)",
    )
    parser.add_argument(
        "--rows", type=positive_int, default=10, help="rows to show (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-rows",
        type=positive_int,
        default=100_000,
        help="stepfunctions-batch: rows of the generated CSV (default: %(default)s)",
    )
    parser.add_argument(
        "--shards",
        type=_shards,
        default=4,
        help="stepfunctions-batch: the job's shards, 1-10000 (default: %(default)s)",
    )


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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlserve.local import Emulator
    from mlserve.train import load_example_data, split

    console = Console()
    options = emulator_options(args)
    if args.canary is not None:
        chosen = options["architecture"] or options["config"].get("architecture")
        # None: the stack's (a stack file, or the default lambda): capture, in case it serves
        predictor = chosen is None or contract.ARCH_LAMBDA in str(chosen).split(",")
        options["config"] = {**options["config"], **_canary_config(args, predictor)}
    data = load_example_data()
    _, test_idx = split(data)
    shown = test_idx[: min(args.rows, len(test_idx))]

    with console.status("starting the local emulator (embedded AWS + API Gateway)..."):
        emulator = start_emulator(Emulator(), **options, task_log_dir=task_log_dir())
    # The functions' INFO lines (one JSON object per job created or task started) would go to
    # CloudWatch; here they would drown the demo's output. Warnings and errors still show.
    logging.getLogger(contract.SERVICE_NAME).setLevel(logging.WARNING)
    try:
        model = call_api("GET", f"{emulator.url}/health", api_key=emulator.api_key).body["model"]
        if list(model["feature_names"]) != data.feature_names:
            _demo_other_model(console, emulator, model, rows=min(args.rows, USER_MODEL_ROWS))
        elif args.canary is not None and contract.ARCH_LAMBDA in emulator.architectures:
            _demo_canary(console, emulator, data, test_idx)
        elif args.canary is not None:
            _demo_canary_jobs(console, emulator, data, test_idx)
        elif contract.ARCH_STEPFUNCTIONS_BATCH in emulator.architectures:
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


def _canary_config(args: argparse.Namespace, predictor: bool) -> dict[str, str]:
    """The stack settings of a canary rollout, with every request captured when the lambda
    predictor serves it (``predictor``)."""
    path = args.canary_model
    if path is None:
        path = CANARY_MODEL
        if not path.is_file():
            from mlserve.train import train_example

            print(
                f"No canary model at {path}: training one ({CANARY_TREES} trees).", file=sys.stderr
            )
            train_example(out_dir=path.parent, n_estimators=CANARY_TREES)
    config = {
        "canaryModelPath": str(Path(path).resolve()),
        "canaryPercent": str(args.canary),
        "canaryMode": args.canary_mode,
    }
    if predictor:
        config["captureSamplePercent"] = "100"
    return config


def _demo_canary_jobs(
    console: Console, emulator: Emulator, data: ExampleData, test_idx: Any
) -> None:
    """The held-out rows as CANARY_JOBS jobs: the version each recorded and scored with, each
    version's accuracy, a job pinned to the canary, and the jobs' rollout table."""
    from collections import Counter

    import numpy as np

    from mlserve import rollout

    url, key = emulator.url, emulator.api_key
    health = call_api("GET", f"{url}/health", api_key=key).body
    stable, canary = health["model"]["version"], health["canary"]["version"]
    console.print(f"[bold]mlserve demo[/] · canary rollout of jobs · API {url}")
    console.print(
        f"GET /health → stable [cyan]{stable}[/], canary [magenta]{canary}[/]: the canary scores "
        f"{health['rollout']['canary_percent']} % of the jobs, chosen when each is created"
    )
    chunks = np.array_split(np.asarray(test_idx), CANARY_JOBS)

    def submit(rows: Any, headers: dict[str, str] | None = None) -> ApiResponse:
        body = json.dumps({"instances": data.x[rows].tolist()}).encode()
        return call_api(
            "POST",
            f"{url}/jobs",
            body=body,
            content_type="application/json",
            api_key=key,
            headers=headers,
        )

    accepted = [submit(rows) for rows in chunks]
    jobs: Counter[str] = Counter()
    scored: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for rows, response in zip(chunks, accepted, strict=True):
        job = _wait_for_job(console, emulator, response)
        version = str(job["model_version"])
        jobs[version] += 1
        labels = [_label(p) for p in _job_predictions(emulator, job)]
        scored[version] += len(labels)
        correct[version] += sum(int(a == int(b)) for a, b in zip(labels, data.y[rows], strict=True))
    _print_accuracy(
        console,
        {v: f"scored {jobs[v]} jobs ({scored[v]} rows)" for v in jobs},
        scored,
        correct,
        stable=stable,
        canary=canary,
    )
    pinned = _wait_for_job(
        console, emulator, submit(chunks[0], {contract.MODEL_VERSION_HEADER: canary})
    )
    console.print(
        f"  {contract.MODEL_VERSION_HEADER}: {canary} → job {pinned['job_id']} scored by "
        f"{pinned['model_version']}"
    )
    days = rollout.capture_days(1)
    stats = rollout.summarize_jobs(
        rollout.read_jobs(emulator.client("dynamodb"), emulator.table, days),
        order=[stable, canary],
    )
    console.print(f"from the job table {emulator.table} · mlserve rollout status --table:")
    rollout.print_jobs(stats, {stable: "stable", canary: "canary"}, days, console)


def _demo_canary(console: Console, emulator: Emulator, data: ExampleData, test_idx: Any) -> None:
    """One request per held-out row; who answered, each version's accuracy, the rollout table."""
    from collections import Counter

    from mlserve import rollout

    url, key = emulator.url, emulator.api_key
    health = call_api("GET", f"{url}/health", api_key=key).body
    stable, canary = health["model"]["version"], health["canary"]["version"]
    plan = health["rollout"]
    console.print(f"[bold]mlserve demo[/] · canary rollout · API {url}")
    console.print(
        f"GET /health → stable [cyan]{stable}[/], canary [magenta]{canary}[/]: mode "
        f"{plan['mode']}, canary {plan['canary_percent']} %, capture "
        f"{plan['capture_sample_percent']} %"
    )
    served: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    with console.status(f"POST /predict x {len(test_idx)} (one held-out row each)..."):
        for i in test_idx:
            body = json.dumps({"instances": [data.x[i].tolist()]}).encode()
            response = call_api(
                "POST", f"{url}/predict", body=body, content_type="application/json", api_key=key
            )
            version = response.body["model_version"]
            served[version] += 1
            correct[version] += _label(_predictions(response)[0]) == int(data.y[i])
    _print_accuracy(
        console,
        {v: f"answered {served[v]} requests" for v in served},
        served,
        correct,
        stable=stable,
        canary=canary,
    )
    pinned = call_api(
        "POST",
        f"{url}/predict",
        body=json.dumps({"instances": [data.x[test_idx[0]].tolist()]}).encode(),
        content_type="application/json",
        api_key=key,
        headers={contract.MODEL_VERSION_HEADER: canary},
    ).body["model_version"]
    console.print(f"  {contract.MODEL_VERSION_HEADER}: {canary} → answered by {pinned}")
    with console.status("delivering the capture records (log subscription → capture function)..."):
        emulator.log_delivery.flush()
    status = rollout.summarize(
        rollout.read_records(
            emulator.client("s3"), emulator.bucket, emulator.model.name, rollout.capture_days(1)
        ),
        order=[stable, canary],
        model=emulator.model.name,
    )
    console.print(
        f"captured to s3://{emulator.bucket}/{contract.CAPTURE_PREFIX}{emulator.model.name}/"
        "{version}/dt=.../ · mlserve rollout status:"
    )
    rollout.print_status(status, {stable: "stable", canary: "canary"}, console)


def _print_accuracy(
    console: Console,
    did: dict[str, str],
    rows: Any,
    correct: Any,
    *,
    stable: str,
    canary: str,
) -> None:
    """One line per version that served: what it did and its accuracy over its ``rows``."""
    for version, role in ((stable, "stable"), (canary, "canary")):
        if rows[version]:
            console.print(
                f"  {role} {version}: {did[version]}, accuracy "
                f"{correct[version] / rows[version]:.1%}"
            )


USER_MODEL_ROWS = 10  # rows generated for a model not trained on the example data set


def generated_rows(model: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    """``rows`` instances for a model of any features, keyed by its feature names: seeded
    standard-normal numbers, and a categorical feature's categories in turn."""
    import numpy as np

    rng = np.random.default_rng(0)
    categories: dict[str, list[Any]] = model.get("categories") or {}
    return [
        {
            name: (
                categories[name][i % len(categories[name])]
                if categories.get(name)
                else round(float(rng.standard_normal()), 4)
            )
            for name in model["feature_names"]
        }
        for i in range(rows)
    ]


def _demo_other_model(
    console: Console, emulator: Emulator, model: dict[str, Any], rows: int
) -> None:
    """A model of other features (the user's own): POST generated rows to /predict, follow a
    202 to its job, and print what the model answered (there are no labels to compare)."""
    from rich.table import Table

    from mlserve.client import Api, follow

    console.print(
        f"[bold]mlserve demo[/] · architecture [cyan]{','.join(emulator.architectures)}[/]"
    )
    console.print(f"API {emulator.url} · embedded AWS {emulator.endpoint_url}")
    console.print(
        f"GET /health → model [cyan]{model['name']}[/] version {model['version']} "
        f"({model['num_features']} features, {model['objective']}): not trained on the example "
        f"data set, so {rows} generated rows are scored (no labels to compare)"
    )
    api = Api(emulator.url, emulator.api_key)
    instances = generated_rows(model, rows)
    answer = api.call("POST", "/predict", body={"instances": instances})
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 202:
        console.print(f"POST /predict → 202, job {body.get('job_id')}: following it")
        body = follow(api, str(body["job_id"]), timeout=600)
        if body["status"] != contract.STATUS_SUCCEEDED or "predictions" not in body:
            raise CliError(f"job {body.get('job_id')} ended {body['status']}: {body}"[:400])
    predictions = list(body.get("predictions") or [])
    if len(predictions) != rows:
        raise CliError(f"unexpected answer from POST /predict ({answer.status}): {answer.text}")
    table = Table(title=f"predictions of model {model['name']} ({body.get('model_version')})")
    table.add_column("row", justify="right")
    table.add_column("prediction")
    for i, prediction in enumerate(predictions):
        table.add_row(str(i), json.dumps(prediction))
    console.print(table)


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
        + (f" (polling: {emulator.polling})" if workflow else "")
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
        f"(polling: {emulator.polling})"
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
        f"(polling: {emulator.polling}, {len(events)} history events)"
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

"""``mlserve predict``: score a CSV, JSON, JSON lines or Parquet file of rows with a deployed (or
local) API, holding only its URL and API key.

- A file that fits a request (under Lambda's 6 MB, at most the API's maxRows rows) is one
  ``POST /predict``; the real-time architecture answers it at once.
- A larger file (or ``--upload``) is an upload job: ``POST /jobs {"upload": {"format"}}`` answers
  a presigned PUT URL, the file goes straight to S3, ``POST /jobs/{id}/start`` starts it.
- A 202 (a job) is followed to the end with a live progress display; the predictions come back
  inline, or are downloaded through the job's presigned ``result_url`` (a batch job's part files
  into ``--output``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlserve.client import (
    MAX_INLINE_BODY,
    Api,
    ApiError,
    Results,
    call_api,
    fetch_results,
    follow,
    put_file,
    upload_format,
)
from mlserve.commands.base import CliError, add_api_options, api_of
from runtime import contract

NAME = "predict"
HELP = "score a file of rows with an mlserve API (follows jobs, downloads results)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_options(parser)
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--upload",
        action="store_true",
        help="send the file as an upload job even when it would fit one request",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        help="stepfunctions-batch upload jobs: score in this many shards",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long to follow a job before giving up (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help="where a batch job's part files are downloaded (default: mlserve-results/<job id>)",
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE", help=".csv, .json, .jsonl or .parquet rows"
    )


def run(args: argparse.Namespace) -> int:
    api = api_of(args)
    path: Path = args.file
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    inline = not args.upload and size <= MAX_INLINE_BODY and path.suffix.lower() != ".parquet"
    if inline:
        body, content_type = _read_rows(path)
        try:
            response = call_api(
                "POST",
                api.url.rstrip("/") + "/predict",
                body=body,
                content_type=content_type,
                api_key=api.api_key,
                timeout=api.timeout,
            )
        except ApiError as exc:
            if exc.code != "too_many_rows":
                return _failed(exc)
            inline = False  # more rows than the API takes inline: an upload job instead
        else:
            result = response.body
            if response.status == 200 and isinstance(result, dict) and "predictions" in result:
                return _show(args, Results(list(result["predictions"])), result)
            if response.status != 202 or not isinstance(result, dict) or "job_id" not in result:
                raise CliError(f"unexpected answer from POST /predict: {response.text[:200]}")
            print(f"202 Accepted: polling {result.get('status_url')}", file=sys.stderr)
            return _finish(args, api, str(result["job_id"]))
    try:
        job_id = _upload(api, path, size, args.shards)
    except ApiError as exc:
        return _failed(exc)
    return _finish(args, api, job_id)


def _failed(exc: ApiError) -> int:
    hint = ""
    if exc.status == 403 and exc.code == "forbidden" and "Unknown route" in exc.message:
        hint = " (does this API serve jobs? the lambda architecture answers /predict only)"
    print(f"error {exc.status} {exc.code}: {exc.message}{hint}", file=sys.stderr)
    return 1


def _upload(api: Api, path: Path, size: int, shards: int | None) -> str:
    """POST /jobs with an upload, PUT the file to its URL, start the job; the job id."""
    upload: dict[str, Any] = {"format": upload_format(str(path))}
    if shards is not None:
        upload["shards"] = shards
    accepted = api.call("POST", "/jobs", body={"upload": upload}).body
    if not isinstance(accepted, dict) or "upload" not in accepted:
        raise CliError(f"unexpected answer from POST /jobs: {accepted!r}"[:300])
    job_id = str(accepted["job_id"])
    print(f"job {job_id}: uploading {size / 1e6:.1f} MB ({upload['format']})", file=sys.stderr)
    put_file(accepted["upload"]["url"], str(path), size, max(api.timeout, 600.0))
    api.call("POST", f"/jobs/{job_id}/start")
    return job_id


def _finish(args: argparse.Namespace, api: Api, job_id: str) -> int:
    """Follow the job with a progress display; print or download its predictions."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn(
            "job {task.fields[job_id]}: [bold]{task.fields[status]}[/] {task.fields[detail]}"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("job", job_id=job_id, status="PENDING", detail="")

        def update(job: dict[str, Any]) -> None:
            shards = job.get("progress") or {}
            detail = (
                f"shards {shards.get('succeeded', 0)} done, {shards.get('running', 0)} running"
                if shards
                else ""
            )
            progress.update(task, status=job["status"], detail=detail)

        job = follow(api, job_id, timeout=args.wait, on_update=update)
    if job["status"] != contract.STATUS_SUCCEEDED:
        error = job.get("error") or {}
        print(
            f"error: job {job_id} {job['status']}: "
            f"{error.get('code', '')} {error.get('message', '(no reason recorded)')}".rstrip(),
            file=sys.stderr,
        )
        return 1
    return _show(args, fetch_results(api, job, args.output), job)


def _show(args: argparse.Namespace, results: Results, answer: dict[str, Any]) -> int:
    version = answer.get("model_version")
    if results.predictions is None:  # part files of a batch job
        if args.format == "json":
            print(json.dumps({"job_id": answer.get("job_id"), "files": list(results.files)}))
        else:
            for path in results.files:
                print(path)
            print(
                f"{results.rows} predictions in {len(results.files)} part file(s) · "
                f"model version {version}",
                file=sys.stderr,
            )
        return 0
    if args.format == "json":
        print(json.dumps({"predictions": results.predictions, "model_version": version}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("row", justify="right")
    table.add_column("prediction", justify="right")
    for i, prediction in enumerate(results.predictions):
        if isinstance(prediction, list):
            text = ", ".join(f"{p:.6g}" for p in prediction)
        else:
            text = f"{prediction:.6g}"
        table.add_row(str(i), text)
    console = Console()
    console.print(table)
    console.print(f"{len(results.predictions)} predictions · model version {version}")
    return 0


def _read_rows(path: Path) -> tuple[bytes, str]:
    """The request body and content type for a CSV, JSON or JSON lines file of rows."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return raw, "text/csv"
    if suffix in (".jsonl", ".ndjson"):
        try:
            rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"{path} is not JSON lines: {exc}") from None
        return json.dumps({"instances": rows}).encode(), "application/json"
    try:
        document = json.loads(raw)
    except ValueError as exc:
        if suffix == ".json":
            raise CliError(f"{path} is not valid JSON: {exc}") from None
        return raw, "text/csv"  # no telling suffix and not JSON: treat as CSV
    if isinstance(document, list):
        document = {"instances": document}
    if not isinstance(document, dict) or "instances" not in document:
        raise CliError(f'{path}: expected a JSON list of rows or an object with "instances"')
    return json.dumps(document).encode(), "application/json"

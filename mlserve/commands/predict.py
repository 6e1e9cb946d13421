"""``mlserve predict``: POST a CSV or JSON file of rows to a deployed (or local) API and print
the predictions."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mlserve.client import ApiError, call_api
from mlserve.commands.base import CliError
from runtime import contract

NAME = "predict"
HELP = "POST a CSV or JSON file of rows to an mlserve API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the API URL (pulumi stack output apiUrl)")
    parser.add_argument(
        "--api-key", default=None, help="the API key (pulumi stack output --show-secrets apiKey)"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds (default: %(default)s)"
    )
    parser.add_argument("file", type=Path, metavar="FILE.csv|FILE.json")


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


def run(args: argparse.Namespace) -> int:
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

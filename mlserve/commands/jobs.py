"""``mlserve jobs list|get|cancel``: the caller's jobs on a deployed (or local) API, holding only
its URL and API key.

- ``list``: GET /jobs, newest first (``--limit`` a page; ``--all`` follows next_token).
- ``get ID``: GET /jobs/{id}; ``--wait`` follows it to the end with a progress display,
  ``--download`` fetches a finished job's predictions (inline, or through its result_url).
- ``cancel ID``: DELETE /jobs/{id}.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlserve.client import Api, fetch_results, follow
from mlserve.commands.base import CliError, add_api_options, api_of, positive_int
from runtime import contract

NAME = "jobs"
HELP = "list, show, follow, download or cancel your jobs on an mlserve API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="your jobs, newest first")
    add_api_options(listing)
    listing.add_argument(
        "--limit", type=positive_int, default=20, help="jobs per page, 1-100 (default: %(default)s)"
    )
    listing.add_argument("--all", action="store_true", help="every page, not only the first")
    listing.add_argument("--json", action="store_true", help="print JSON lines, one per job")

    get = actions.add_parser("get", help="one job (its predictions once it succeeded)")
    add_api_options(get)
    get.add_argument("job_id", metavar="JOB_ID")
    get.add_argument("--wait", action="store_true", help="follow the job until it finished")
    get.add_argument(
        "--wait-seconds",
        type=float,
        default=3600.0,
        help="how long --wait follows it (default: %(default)s)",
    )
    get.add_argument(
        "--download",
        metavar="DIR",
        default=None,
        help="write its predictions (predictions.json, or a batch job's part files) to DIR",
    )

    cancel = actions.add_parser("cancel", help="cancel a job that has not finished")
    add_api_options(cancel)
    cancel.add_argument("job_id", metavar="JOB_ID")


def run(args: argparse.Namespace) -> int:
    api = api_of(args)
    if args.action == "list":
        return _list(api, args)
    if args.action == "get":
        return _get(api, args)
    job = api.call("DELETE", f"/jobs/{args.job_id}").body
    print(f"job {job['job_id']}: {job['status']}")
    return 0


def _list(api: Api, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    jobs: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = api.call("GET", "/jobs", query={"limit": min(args.limit, 100), "next_token": token})
        body = page.body if isinstance(page.body, dict) else {}
        jobs.extend(body.get("jobs") or [])
        token = body.get("next_token")
        if not token or not args.all:
            break
    if args.json:
        for job in jobs:
            print(json.dumps(job))
        return 0
    table = Table()
    for column in ("job id", "status", "architecture", "created", "rows", "error"):
        table.add_column(column)
    for job in jobs:
        error = job.get("error") or {}
        table.add_row(
            str(job["job_id"]),
            str(job["status"]),
            str(job.get("architecture", "")),
            str(job.get("created_at", "")),
            "" if job.get("rows") is None else str(job["rows"]),
            str(error.get("code", "")),
        )
    console = Console()
    console.print(table)
    more = " (more: --all)" if token else ""
    console.print(f"{len(jobs)} job(s){more}")
    return 0


def _get(api: Api, args: argparse.Namespace) -> int:
    if args.wait:
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(f"job {args.job_id}...") as status:
            job = follow(
                api,
                args.job_id,
                timeout=args.wait_seconds,
                on_update=lambda j: status.update(f"job {args.job_id}: [bold]{j['status']}[/]"),
            )
    else:
        job = api.job(args.job_id)
    if args.download is None:
        print(json.dumps(job, indent=1))
        return 0 if job["status"] != contract.STATUS_FAILED else 1
    if job["status"] != contract.STATUS_SUCCEEDED:
        raise CliError(f"job {args.job_id} is {job['status']}: nothing to download yet")
    results = fetch_results(api, job, args.download)
    if results.predictions is not None:
        import os

        os.makedirs(args.download, exist_ok=True)
        path = os.path.join(args.download, "predictions.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "job_id": job["job_id"],
                    "model_version": job.get("model_version"),
                    "predictions": results.predictions,
                },
                fh,
            )
        files: tuple[str, ...] = (path,)
    else:
        files = results.files
    for path in files:
        print(path)
    print(f"{results.rows} predictions · job {job['job_id']}", file=sys.stderr)
    return 0

"""``mlserve rollout status``: a canary or shadow rollout's two model versions side by side
(requests, error rates, latency, mean prediction) and how far their predictions agree, from the
records data capture wrote to ``capture/{model}/{version}/dt=YYYY-MM-DD/`` in the model bucket
(mlserve/rollout.py says what each figure means); with ``--table`` (the job architectures), the
versions' jobs too (created, succeeded, FAILED), from the job records.

It reads the bucket with your AWS credentials (``s3:ListBucket`` and ``s3:GetObject`` on
``capture/``; with ``--table``, ``dynamodb:Scan`` of the job table); ``--url``/``--api-key`` (or
MLSERVE_URL/MLSERVE_API_KEY) label the stable and the canary version from ``GET /health``.
Promotion and rollback are config changes: docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from mlserve.commands.base import CliError, add_api_options, positive_int

NAME = "rollout"
HELP = "a canary/shadow rollout's versions side by side, from the captured requests and jobs"
ENV_BUCKET = "MLSERVE_BUCKET"
ENV_JOB_TABLE = "MLSERVE_JOB_TABLE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="the versions side by side")
    add_api_options(status)
    status.add_argument(
        "--bucket",
        default=os.environ.get(ENV_BUCKET),
        help=f"the model bucket (pulumi stack output modelBucket; default: ${ENV_BUCKET})",
    )
    status.add_argument(
        "--table",
        default=os.environ.get(ENV_JOB_TABLE),
        help="the job table (pulumi stack output jobTable; default: $"
        f"{ENV_JOB_TABLE}): the job architectures' jobs per version, from their records",
    )
    status.add_argument(
        "--model", help="the model name (default: GET /health's, else every captured model)"
    )
    status.add_argument(
        "--days",
        type=positive_int,
        default=1,
        help="how many UTC days of records, today included (default: %(default)s)",
    )
    status.add_argument(
        "--endpoint-url",
        help="an S3 endpoint other than AWS's: the local emulator's (mlserve local prints it; "
        "its credentials are used when no AWS credentials are configured)",
    )
    status.add_argument("--json", action="store_true", help="print the figures as JSON")


def _labels(args: argparse.Namespace) -> tuple[dict[str, str], str | None]:
    """version -> stable/canary, and the model name, from GET /health (when --url is given)."""
    if not args.url:
        return {}, None
    from mlserve.client import Api

    health = Api(args.url, args.api_key, args.timeout).call("GET", "/health").body
    if not isinstance(health, dict) or "model" not in health:
        raise CliError(f"GET {args.url}/health did not describe the model: {health!r}")
    labels = {str(health["model"]["version"]): "stable"}
    if health.get("canary"):
        labels[str(health["canary"]["version"])] = "canary"
    return labels, str(health["model"]["name"])


def status_of(s3: Any, bucket: str, model: str | None, days: int, labels: dict[str, str]) -> Any:
    from mlserve import rollout

    wanted = rollout.capture_days(days)
    records = rollout.read_records(s3, bucket, model, wanted)
    return rollout.summarize(records, order=list(labels), model=model or "")


def _client(service: str, endpoint_url: str | None) -> Any:
    import boto3

    credentials: dict[str, str] = {}
    if endpoint_url and boto3.Session().get_credentials() is None:
        # the local emulator's embedded AWS takes any credentials: its own, without AWS's
        from mlserve.local.aws import FAKE_CREDENTIALS, REGION

        credentials = {
            name.lower(): FAKE_CREDENTIALS[name]
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        }
        credentials["region_name"] = REGION
    return boto3.client(service, endpoint_url=endpoint_url, **credentials)


def jobs_of(args: argparse.Namespace, labels: dict[str, str]) -> list[Any] | None:
    """The versions' jobs from the job table (--table), None without one."""
    from botocore.exceptions import BotoCoreError, ClientError

    from mlserve import rollout

    if not args.table:
        return None
    dynamodb = _client("dynamodb", args.endpoint_url)
    try:
        records = list(rollout.read_jobs(dynamodb, args.table, rollout.capture_days(args.days)))
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read the job table {args.table}: {exc}") from None
    return rollout.summarize_jobs(records, order=list(labels))


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from mlserve import rollout

    if not args.bucket:
        raise CliError(
            f"no bucket: pass --bucket or set {ENV_BUCKET} (pulumi stack output modelBucket)"
        )
    labels, model = _labels(args)
    s3 = _client("s3", args.endpoint_url)
    try:
        status = status_of(s3, args.bucket, args.model or model, args.days, labels)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read s3://{args.bucket}/capture/: {exc}") from None
    jobs = jobs_of(args, labels)
    if not status.records and not any(s.jobs for s in jobs or []):
        raise CliError(
            f"no captured request in s3://{args.bucket}/capture/ over {args.days} day(s): set "
            "mlserve:captureSamplePercent (or a shadow canary) and send some requests"
            + ("" if jobs is not None else "; for the job architectures pass --table (jobTable)")
        )
    if args.json:
        figures: dict[str, Any] = {
            "model": status.model,
            "records": status.records,
            "days": list(status.days),
            "versions": [
                {
                    "version": v.version,
                    "role": labels.get(v.version),
                    "answered": v.answered,
                    "shadowed": v.shadowed,
                    "errors": v.errors,
                    "error_rate": v.error_rate,
                    "latency_p50_ms": v.latency(0.5),
                    "latency_p95_ms": v.latency(0.95),
                    "mean_prediction": v.mean_prediction,
                }
                for v in status.versions
            ],
            "agreement": {
                "rows": status.agreement.rows,
                "share": status.agreement.share,
                "mean_abs_diff": status.agreement.mean_abs_diff,
            },
        }
        if jobs is not None:
            figures["jobs"] = [
                {
                    "version": s.version,
                    "role": labels.get(s.version),
                    "jobs": s.jobs,
                    "succeeded": s.succeeded,
                    "failed": s.failed,
                    "cancelled": s.cancelled,
                    "failure_rate": s.failure_rate,
                }
                for s in jobs
            ]
        print(json.dumps(figures, indent=1))
        return 0
    if status.records:
        rollout.print_status(status, labels)
    if jobs is not None:
        rollout.print_jobs(jobs, labels, rollout.capture_days(args.days))
    return 0

"""``mlserve drift``: compare captured requests with the model's training data.

Reads the records the predictor's data capture writes (JSON lines under
``s3://{model bucket}/capture/{model}/{version}/dt=YYYY-MM-DD/``) from a local file or directory,
an S3 prefix (boto3, your AWS credentials), or the emulator's bucket (``--endpoint-url``, the
"AWS" address `mlserve local` prints), and prints, per feature, the population stability index
(PSI) against the reference statistics in the model's metadata.json (``mlserve profile``,
``mlserve train-example``) and the missing-value rates; a feature whose PSI exceeds
``--threshold`` is flagged. Writes a PNG chart; with ``--fail-on-drift`` the exit status is 2
when a feature drifted.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from mlserve.commands.base import DEFAULT_MODEL_DIR, CliError

NAME = "drift"
HELP = "per-feature drift (PSI, missing values) of captured requests against the training data"
EXIT_DRIFT = 2


def threshold(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


def day(value: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {value!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mlserve.drift import DEFAULT_PSI_THRESHOLD

    parser.add_argument(
        "capture",
        help="the captured records: a .jsonl file, a directory of them (searched recursively), "
        "or s3://BUCKET/PREFIX (e.g. s3://BUCKET/capture/MODEL/VERSION/)",
    )
    parser.add_argument(
        "--metadata",
        type=Path,
        default=DEFAULT_MODEL_DIR / "metadata.json",
        help="the model's metadata.json with reference statistics (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=threshold,
        default=DEFAULT_PSI_THRESHOLD,
        help="PSI above which a feature is flagged as drifted (default: %(default)s)",
    )
    parser.add_argument(
        "--since", type=day, metavar="YYYY-MM-DD", help="only dt= partitions from this day on"
    )
    parser.add_argument(
        "--served-version", metavar="VERSION", help="only requests served by this model version"
    )
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the S3 endpoint of an s3:// source: the emulator's (`mlserve local` prints it as "
        "AWS); its embedded AWS takes any credentials",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=Path("build/drift.png"),
        help="where to write the PNG chart (default: %(default)s)",
    )
    parser.add_argument(
        "--fail-on-drift",
        action="store_true",
        help=f"exit with status {EXIT_DRIFT} when a feature drifted",
    )


def s3_client(endpoint_url: str | None) -> Any:
    import boto3

    if endpoint_url is None:
        return boto3.client("s3")
    from mlserve.local.aws import FAKE_CREDENTIALS

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from rich.console import Console
    from rich.table import Table

    from mlserve import drift

    if not args.metadata.is_file():
        raise CliError(f"no metadata.json at {args.metadata} (--metadata)")
    try:
        metadata = json.loads(args.metadata.read_text())
        reference = drift.reference_of(metadata)
    except ValueError as exc:  # DriftError is a ValueError too
        raise CliError(f"{args.metadata}: {exc}") from None
    s3 = s3_client(args.endpoint_url) if args.capture.startswith("s3://") else None
    try:
        capture = drift.read_capture(
            args.capture,
            list(reference),
            s3=s3,
            since=args.since,
            served_version=args.served_version,
        )
        results = drift.compare(reference, capture, args.threshold)
    except drift.DriftError as exc:
        raise CliError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"{args.capture}: {exc}") from None

    table = Table(title=f"Drift of {capture.records} captured requests ({len(capture.rows)} rows)")
    table.add_column("feature", overflow="fold")  # a long name wraps, never cut
    for column in ("PSI", "missing (training)", "missing (captured)"):
        table.add_column(column, justify="right")
    table.add_column("drift")
    for r in results:
        table.add_row(
            r.name,
            f"{r.psi:.3f}",
            f"{r.reference_missing_rate:.1%}",
            f"{r.missing_rate:.1%}",
            "[bold red]DRIFT[/]" if r.drifted else "ok",
        )
    console = Console()
    console.print(table)
    drifted = [r.name for r in results if r.drifted]
    if capture.skipped:
        console.print(f"{capture.skipped} line(s) were not capture records and were skipped")
    chart = drift.write_chart(results, args.threshold, args.chart)
    console.print(f"chart: {chart}")
    if drifted:
        console.print(
            f"{len(drifted)} of {len(results)} features drifted (PSI > {args.threshold:g}): "
            + ", ".join(drifted)
        )
    else:
        console.print(f"no feature drifted (PSI > {args.threshold:g}) in {capture.files} file(s)")
    return EXIT_DRIFT if drifted and args.fail_on_drift else 0

"""A rollout's state from the captured records (runtime/capture.py): the two versions side by
side — requests, error rate, latency, predictions — and how far their predictions agree.

Read by ``mlserve rollout status`` (mlserve/commands/rollout.py) and the demo's canary run.
What each figure means (docs/operations.md, "Rollout status"):

- **requests**: captured requests the version answered (a sample: ``captureSamplePercent``, plus
  every shadow-scored request);
- **scored in shadow**: captured requests the version scored without answering them;
- **errors**: of the requests it answered or scored, those it failed to score (an answering
  failure is a 5xx to the client, a shadow failure only a record);
- **latency p50 / p95**: the handler's time to the answer (``latency_ms``) of the requests it
  answered;
- **agreement**: over the rows both versions scored (shadow mode, or a request pinned and
  shadowed), the share of rows with the same decision — the same class for classifiers (a
  probability either side of 0.5, or the same arg-max of a list per row), within 1e-3 x
  max(1, |stable|) for any other output — and the mean absolute difference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from runtime import contract

REGRESSION_TOLERANCE = 1e-3


@dataclass
class VersionStats:
    version: str
    answered: int = 0
    shadowed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    prediction_sum: float = 0.0
    predictions: int = 0

    @property
    def scored(self) -> int:
        return self.answered + self.shadowed

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.scored if self.scored else None

    def latency(self, quantile: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(quantile * len(ordered)) - 1)]

    @property
    def mean_prediction(self) -> float | None:
        return self.prediction_sum / self.predictions if self.predictions else None


@dataclass
class Agreement:
    rows: int = 0
    same: int = 0
    abs_diff_sum: float = 0.0

    @property
    def share(self) -> float | None:
        return self.same / self.rows if self.rows else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.abs_diff_sum / self.rows if self.rows else None


@dataclass
class RolloutStatus:
    model: str
    versions: list[VersionStats]
    agreement: Agreement
    records: int
    days: tuple[str, ...]


def _flat(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _decision(value: Any) -> Any:
    """The class a row's prediction decides, or None for a regression output."""
    if isinstance(value, list):
        return max(range(len(value)), key=lambda i: value[i]) if value else None
    return None


def _agrees(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return _decision(a) == _decision(b)
    x, y = float(a), float(b)
    if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0:  # a probability: the same side of 0.5
        return (x >= 0.5) == (y >= 0.5)
    return abs(x - y) <= REGRESSION_TOLERANCE * max(1.0, abs(x))


def summarize(
    records: Iterable[Mapping[str, Any]], order: Sequence[str] = (), model: str = ""
) -> RolloutStatus:
    """The status of the versions in ``records``; ``order`` lists versions first (stable, canary,
    as /health names them), the others follow by requests answered."""
    stats: dict[str, VersionStats] = {}
    agreement = Agreement()
    count = 0
    days: set[str] = set()

    def of(version: str) -> VersionStats:
        return stats.setdefault(version, VersionStats(version))

    for record in records:
        count += 1
        days.add(str(record.get("time", ""))[:10])
        model = model or str(record.get("model", ""))
        served = str(record["served_version"])
        versions: Mapping[str, Any] = record.get("versions") or {}
        errors: Mapping[str, str] = record.get("errors") or {}
        answering = of(served)
        answering.answered += 1
        if served in versions:
            answering.latencies.append(float(record.get("latency_ms", 0.0)))
        for version in {*versions, *errors} - {served}:
            of(version).shadowed += 1
        for version in errors:
            of(version).errors += 1
        for version, predictions in versions.items():
            values = [v for row in predictions for v in _flat(row)]
            of(version).prediction_sum += sum(values)
            of(version).predictions += len(values)
        if len(versions) >= 2:
            first, second = list(versions)[:2]
            for a, b in zip(versions[first], versions[second], strict=False):
                agreement.rows += 1
                agreement.same += _agrees(a, b)
                agreement.abs_diff_sum += max(
                    (abs(x - y) for x, y in zip(_flat(a), _flat(b), strict=False)), default=0.0
                )
    ranked = [stats[v] for v in order if v in stats]
    ranked += sorted(
        (s for v, s in stats.items() if v not in order), key=lambda s: (-s.answered, s.version)
    )
    for version in order:
        if version not in stats:
            ranked.insert(list(order).index(version), VersionStats(version))
    return RolloutStatus(model, ranked, agreement, count, tuple(sorted(days)))


def capture_days(days: int, today: date | None = None) -> list[str]:
    """The last ``days`` UTC days, oldest first (``dt=`` partitions)."""
    end = today or datetime.now(UTC).date()
    return [(end - timedelta(days=n)).isoformat() for n in reversed(range(days))]


def read_records(s3: Any, bucket: str, model: str | None, days: Sequence[str]) -> Iterator[dict]:
    """The capture records of ``model`` (every model when None) on ``days``, from the bucket."""
    prefix = contract.CAPTURE_PREFIX + (f"{model}/" if model else "")
    wanted = {f"dt={day}" for day in days}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            parts = item["Key"].split("/")
            if len(parts) != 5 or parts[3] not in wanted:
                continue
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for line in body.decode().splitlines():
                if line.strip():
                    yield json.loads(line)


def rows(status: RolloutStatus, labels: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The table: (figure, a cell per version)."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} ms"

    answered = sum(v.answered for v in status.versions) or 1
    table = [
        ("role", [labels.get(v.version, "") for v in status.versions]),
        (
            "requests answered",
            [f"{v.answered} ({pct(v.answered / answered)})" for v in status.versions],
        ),
        ("scored in shadow", [str(v.shadowed) for v in status.versions]),
        ("errors", [f"{v.errors} ({pct(v.error_rate)})" for v in status.versions]),
        ("latency p50", [ms(v.latency(0.5)) for v in status.versions]),
        ("latency p95", [ms(v.latency(0.95)) for v in status.versions]),
        (
            "mean prediction",
            [
                "-" if v.mean_prediction is None else f"{v.mean_prediction:.4f}"
                for v in status.versions
            ],
        ),
    ]
    return table


def agreement_line(status: RolloutStatus) -> str:
    a = status.agreement
    if not a.rows:
        return (
            "prediction agreement: no row was scored by both versions (canaryMode shadow scores "
            "the canary beside the stable model)"
        )
    return (
        f"prediction agreement: {100 * (a.share or 0):.1f} % of {a.rows} rows scored by both "
        f"(same decision); mean |difference| {a.mean_abs_diff:.4g}"
    )


def print_status(status: RolloutStatus, labels: Mapping[str, str], console: Any = None) -> None:
    """The side-by-side table and the agreement line, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    days = f"{status.days[0]} to {status.days[-1]}" if status.days else "no day"
    table = Table(
        title=f"rollout of {status.model or '?'}: {status.records} captured requests, {days}"
    )
    table.add_column("")
    for stats in status.versions:
        table.add_column(stats.version, justify="right")
    for figure, cells in rows(status, labels):
        table.add_row(figure, *cells)
    console.print(table)
    console.print(agreement_line(status))


# --- the job architectures: their job records ----------------------------------------------


@dataclass
class JobStats:
    """A version's jobs (lambda-ecs, stepfunctions-ecs, stepfunctions-batch), from the job
    table: every job records the version that scores it (``model_version``)."""

    version: str
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def active(self) -> int:
        return self.jobs - self.succeeded - self.failed - self.cancelled

    @property
    def failure_rate(self) -> float | None:
        """FAILED among the finished jobs (SUCCEEDED or FAILED); None before any finished."""
        finished = self.succeeded + self.failed
        return self.failed / finished if finished else None


def read_jobs(dynamodb: Any, table: str, days: Sequence[str]) -> Iterator[dict[str, str]]:
    """``{model_version, status}`` of every job created on ``days`` (UTC, oldest first)."""
    paginator = dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        ProjectionExpression="model_version, #s",
        FilterExpression="#c >= :since",
        ExpressionAttributeNames={"#s": "status", "#c": contract.JOB_TABLE_CREATED_ATTRIBUTE},
        ExpressionAttributeValues={":since": {"S": days[0]}},
    )
    for page in pages:
        for item in page.get("Items", []):
            yield {
                "model_version": str((item.get("model_version") or {}).get("S", "")),
                "status": str((item.get("status") or {}).get("S", "")),
            }


def summarize_jobs(
    records: Iterable[Mapping[str, str]], order: Sequence[str] = ()
) -> list[JobStats]:
    """The versions' job counts; ``order`` lists versions first, the others follow by jobs."""
    stats: dict[str, JobStats] = {version: JobStats(version) for version in order}
    for record in records:
        version = stats.setdefault(record["model_version"], JobStats(record["model_version"]))
        version.jobs += 1
        status = record["status"]
        if status == contract.STATUS_SUCCEEDED:
            version.succeeded += 1
        elif status == contract.STATUS_FAILED:
            version.failed += 1
        elif status == contract.STATUS_CANCELLED:
            version.cancelled += 1
    ranked = [stats[v] for v in order]
    ranked += sorted(
        (s for v, s in stats.items() if v not in order), key=lambda s: (-s.jobs, s.version)
    )
    return ranked


def job_rows(stats: Sequence[JobStats], labels: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The jobs table: (figure, a cell per version)."""
    total = sum(s.jobs for s in stats) or 1
    return [
        ("role", [labels.get(s.version, "") for s in stats]),
        ("jobs", [f"{s.jobs} ({100 * s.jobs / total:.1f} %)" for s in stats]),
        ("succeeded", [str(s.succeeded) for s in stats]),
        (
            "failed",
            [
                f"{s.failed} ({'-' if s.failure_rate is None else f'{100 * s.failure_rate:.1f} %'})"
                for s in stats
            ],
        ),
        ("cancelled", [str(s.cancelled) for s in stats]),
        ("pending or running", [str(s.active) for s in stats]),
    ]


def print_jobs(
    stats: Sequence[JobStats], labels: Mapping[str, str], days: Sequence[str], console: Any = None
) -> None:
    """The versions' jobs side by side, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    total = sum(s.jobs for s in stats)
    table = Table(title=f"jobs by model version: {total} created, {days[0]} to {days[-1]}")
    table.add_column("")
    for version in stats:
        table.add_column(version.version, justify="right")
    for figure, cells in job_rows(stats, labels):
        table.add_row(figure, *cells)
    console.print(table)

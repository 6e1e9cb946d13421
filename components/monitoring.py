"""Alarms and the dashboard as plain data: pure functions, no Pulumi inside.

:func:`alarm_specs` returns one :class:`AlarmSpec` per CloudWatch alarm the stack needs (the
keyword arguments of ``aws.cloudwatch.MetricAlarm`` plus a short key for its logical name) and
:func:`dashboard_body` the CloudWatch dashboard document. Both are given :class:`Monitored`, what
the stack deployed by the names CloudWatch knows it by (API name and stage, function names, state
machine ARNs, log groups), and they include only what exists: no Batch alarm on a stack without
``stepfunctions-batch``, no latency-per-version widget without the real-time predictor.

``alarm_specs`` only places the names into the specs, so the component may pass Pulumi outputs
for them (Pulumi resolves inputs nested in dicts); ``dashboard_body`` renders text and needs
resolved strings. The runtime's metric names and dimensions come from runtime/contract.py, the
AWS ones are CloudWatch's (AWS/ApiGateway, AWS/Lambda, AWS/States).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from runtime import contract

# AWS namespaces, metrics and dimensions (CloudWatch's names).
API_NAMESPACE: Final = "AWS/ApiGateway"
LAMBDA_NAMESPACE: Final = "AWS/Lambda"
STATES_NAMESPACE: Final = "AWS/States"
# The dimension the predictor's metrics carry per model version (a canary's beside the stable).
VERSION_DIMENSION: Final = contract.METRIC_DIMENSION_MODEL_VERSION

PERIOD_SECONDS: Final = 300
# The canary's alarm fires when its error rate exceeds the stable version's by this (a fraction).
CANARY_ERROR_RATE_MARGIN: Final = 0.01
# Default p99 latency thresholds (latencyP99ThresholdMs 0): a synchronous prediction, or, when
# lambda-ecs serves POST /predict, its wait for the task (syncWaitSeconds) plus this much.
DEFAULT_LATENCY_P99_MS: Final = 2000
SYNC_WAIT_LATENCY_ALLOWANCE_MS: Final = 2000

GREATER: Final = "GreaterThanThreshold"
AT_LEAST: Final = "GreaterThanOrEqualToThreshold"


@dataclass(frozen=True)
class Monitored:
    """What the stack deployed, as CloudWatch names it.

    ``functions`` maps a short label (``predictor``, ``lambda-ecs-api`` ...) to the function's
    name; ``state_machines`` a label to the state machine's ARN; ``log_groups`` are the
    functions' log groups (cold starts are read from their platform reports). ``versions`` are
    the model versions served, the stable one first (a canary second); ``job_versions`` those
    the job architectures score jobs with (a shadow canary is the predictor's alone).
    """

    api_name: Any
    stage: str
    functions: Mapping[str, Any] = field(default_factory=dict)
    state_machines: Mapping[str, Any] = field(default_factory=dict)
    log_groups: Sequence[Any] = ()
    realtime: bool = False  # the lambda predictor (PredictLatency, PredictRows)
    jobs: bool = False  # a job API (lambda-ecs, stepfunctions-ecs, stepfunctions-batch)
    batch: bool = False  # stepfunctions-batch (BatchJobsFailed)
    versions: Sequence[str] = ()
    job_versions: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not self.stage:
            raise ValueError("Monitored: stage is empty")
        if len(set(self.versions)) != len(self.versions):
            raise ValueError(f"Monitored: versions repeat: {list(self.versions)}")
        if not set(self.job_versions) <= set(self.versions):
            raise ValueError(
                f"Monitored: job_versions {list(self.job_versions)} not among the versions "
                f"{list(self.versions)}"
            )


@dataclass(frozen=True)
class Thresholds:
    latency_p99_ms: int = DEFAULT_LATENCY_P99_MS
    api_5xx_percent: int = 1

    def __post_init__(self) -> None:
        if self.latency_p99_ms < 1:
            raise ValueError(f"latency_p99_ms {self.latency_p99_ms} < 1")
        if not 1 <= self.api_5xx_percent <= 100:
            raise ValueError(f"api_5xx_percent {self.api_5xx_percent} not in 1-100")


def default_latency_p99_ms(first_architecture: str, sync_wait_seconds: int) -> int:
    """The p99 threshold when none is configured. POST /predict is served by the first
    architecture listed: lambda-ecs waits up to ``sync_wait_seconds`` for the task by design,
    every other one answers at once (a prediction, or a 202 with a job)."""
    if first_architecture == contract.ARCH_LAMBDA_ECS:
        return sync_wait_seconds * 1000 + SYNC_WAIT_LATENCY_ALLOWANCE_MS
    return DEFAULT_LATENCY_P99_MS


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: ``key`` names the resource (``monitoring-<key>``), ``args`` are the keyword
    arguments of ``aws.cloudwatch.MetricAlarm`` (without the actions, the component adds them)."""

    key: str
    args: dict[str, Any]


def _service() -> dict[str, str]:
    return {contract.METRIC_DIMENSION_SERVICE: contract.SERVICE_NAME}


def _api_dimensions(m: Monitored) -> dict[str, Any]:
    return {"ApiName": m.api_name, "Stage": m.stage}


def _alarm(
    key: str,
    description: str,
    *,
    threshold: float,
    comparison: str = AT_LEAST,
    evaluation_periods: int = 1,
    datapoints: int = 1,
    **metric: Any,
) -> AlarmSpec:
    return AlarmSpec(
        key=key,
        args={
            "alarm_description": description,
            "threshold": threshold,
            "comparison_operator": comparison,
            "evaluation_periods": evaluation_periods,
            "datapoints_to_alarm": datapoints,
            # No requests, no jobs: nothing is wrong.
            "treat_missing_data": "notBreaching",
            **metric,
        },
    )


def _count_alarm(key: str, description: str, namespace: str, name: str, dims: Any) -> AlarmSpec:
    """At least one occurrence in a period."""
    return _alarm(
        key,
        description,
        threshold=1,
        namespace=namespace,
        metric_name=name,
        dimensions=dims,
        statistic="Sum",
        period=PERIOD_SECONDS,
    )


def alarm_specs(m: Monitored, t: Thresholds) -> list[AlarmSpec]:
    """Every alarm of the stack, for what it deployed (see docs/operations.md, Alarms)."""
    specs = [
        _alarm(
            "api-5xx-rate",
            f"More than {t.api_5xx_percent}% of API requests answered 5xx (2 of 3 periods of "
            f"{PERIOD_SECONDS // 60} min)",
            threshold=t.api_5xx_percent / 100,
            comparison=GREATER,
            evaluation_periods=3,
            datapoints=2,
            namespace=API_NAMESPACE,
            metric_name="5XXError",
            dimensions=_api_dimensions(m),
            statistic="Average",  # 5XXError is 0 or 1 per request: the average is the rate
            period=PERIOD_SECONDS,
        ),
        _alarm(
            "api-latency-p99",
            f"API p99 latency above {t.latency_p99_ms} ms (2 of 3 periods of "
            f"{PERIOD_SECONDS // 60} min)",
            threshold=t.latency_p99_ms,
            comparison=GREATER,
            evaluation_periods=3,
            datapoints=2,
            namespace=API_NAMESPACE,
            metric_name="Latency",
            dimensions=_api_dimensions(m),
            extended_statistic="p99",
            period=PERIOD_SECONDS,
        ),
    ]
    for label, function_name in m.functions.items():
        dims = {"FunctionName": function_name}
        specs.append(
            _count_alarm(
                f"{label}-errors",
                f"Lambda function {label} failed an invocation (error or timeout)",
                LAMBDA_NAMESPACE,
                "Errors",
                dims,
            )
        )
        specs.append(
            _count_alarm(
                f"{label}-throttles",
                f"Lambda function {label} was throttled (concurrency limit reached)",
                LAMBDA_NAMESPACE,
                "Throttles",
                dims,
            )
        )
    if m.jobs:
        specs.append(
            _count_alarm(
                "jobs-failed",
                "A job was recorded FAILED",
                contract.METRICS_NAMESPACE,
                contract.METRIC_JOBS_FAILED,
                _service(),
            )
        )
    for label, arn in m.state_machines.items():
        for key, metric, what in (
            ("failed", "ExecutionsFailed", "failed"),
            ("timed-out", "ExecutionsTimedOut", "timed out"),
        ):
            specs.append(
                _count_alarm(
                    f"{label}-executions-{key}",
                    f"A {label} Step Functions execution {what}",
                    STATES_NAMESPACE,
                    metric,
                    {"StateMachineArn": arn},
                )
            )
    if m.batch:
        specs.append(
            _count_alarm(
                "batch-jobs-failed",
                "An AWS Batch job (or a child of an array job) ended FAILED",
                contract.METRICS_NAMESPACE,
                contract.METRIC_BATCH_JOBS_FAILED,
                _service(),
            )
        )
    if m.realtime and len(m.versions) >= 2:
        specs.append(_canary_alarm(m.versions[0], m.versions[1]))
    if m.jobs and len(m.job_versions) >= 2:
        specs.append(_canary_jobs_alarm(m.job_versions[0], m.job_versions[1]))
    return specs


def _version_dimensions(version: str) -> dict[str, str]:
    return {**_service(), VERSION_DIMENSION: version}


def _metric_query(query_id: str, name: str, stat: str, version: str) -> dict[str, Any]:
    return {
        "id": query_id,
        "return_data": False,
        "metric": {
            "namespace": contract.METRICS_NAMESPACE,
            "metric_name": name,
            "dimensions": _version_dimensions(version),
            "stat": stat,
            "period": PERIOD_SECONDS,
        },
    }


def _canary_alarm(stable: str, canary: str) -> AlarmSpec:
    """The canary's error rate above the stable version's by CANARY_ERROR_RATE_MARGIN.

    A version's rate is PredictErrors / (PredictErrors + successful predictions), the latter the
    sample count of PredictLatency (one per successful prediction), both per model_version.
    """
    return _excess_rate_alarm(
        "canary-error-rate",
        f"The canary version {canary} answers more server errors than the stable version "
        f"{stable} (error rate more than {CANARY_ERROR_RATE_MARGIN:.0%} above it)",
        (stable, canary),
        (contract.METRIC_PREDICT_ERRORS, "Sum"),
        (contract.METRIC_PREDICT_LATENCY, "SampleCount"),
    )


def _canary_jobs_alarm(stable: str, canary: str) -> AlarmSpec:
    """The job architectures' twin of :func:`_canary_alarm`: the share of the canary's jobs
    recorded FAILED above the stable version's by CANARY_ERROR_RATE_MARGIN, a version's share
    being JobsFailed / (JobsFailed + JobsSucceeded) per model_version (runtime/jobs.py counts
    each with the version the job record names)."""
    return _excess_rate_alarm(
        "canary-jobs-failed-rate",
        f"More of the canary version {canary}'s jobs fail than of the stable version {stable}'s "
        f"(a FAILED share more than {CANARY_ERROR_RATE_MARGIN:.0%} above it)",
        (stable, canary),
        (contract.METRIC_JOBS_FAILED, "Sum"),
        (contract.METRIC_JOBS_SUCCEEDED, "Sum"),
    )


def _excess_rate_alarm(
    key: str,
    description: str,
    versions: tuple[str, str],
    errors: tuple[str, str],
    successes: tuple[str, str],
) -> AlarmSpec:
    """errors / (errors + successes) of the second version minus the first's, per model_version,
    above CANARY_ERROR_RATE_MARGIN (``errors``/``successes``: metric name and statistic)."""
    stable, canary = versions
    queries = []
    for tag, version in (("s", stable), ("c", canary)):
        queries.append(_metric_query(f"e{tag}", *errors, version))
        queries.append(_metric_query(f"r{tag}", *successes, version))
        queries.append(
            {
                "id": f"rate{tag}",
                "expression": f"FILL(e{tag},0)/(FILL(e{tag},0)+FILL(r{tag},0))",
                "label": f"{version} error rate",
                "return_data": False,
            }
        )
    queries.append(
        {
            "id": "excess",
            "expression": "ratec-rates",
            "label": f"{canary} error rate minus {stable}'s",
            "return_data": True,
        }
    )
    return _alarm(
        key,
        description,
        threshold=CANARY_ERROR_RATE_MARGIN,
        comparison=GREATER,
        evaluation_periods=3,
        datapoints=2,
        metric_queries=queries,
    )


# --- the dashboard -------------------------------------------------------------------------------

WIDGET_WIDTH: Final = 12
WIDGET_HEIGHT: Final = 6


# The dimension sets of the predictor's metrics a SEARCH covers (a metric schema matches one
# set): the service alone, and the service with the model version (a series per version).
SEARCH_SCHEMAS: Final = (
    (contract.METRIC_DIMENSION_SERVICE,),
    (contract.METRIC_DIMENSION_SERVICE, VERSION_DIMENSION),
)


def _search(metric_name: str, stat: str, dimensions: Sequence[str]) -> str:
    """Every series of a runtime metric of this service with exactly ``dimensions``."""
    schema = ",".join([contract.METRICS_NAMESPACE, *dimensions])
    return (
        f'SEARCH(\'{{{schema}}} MetricName="{metric_name}" '
        f'{contract.METRIC_DIMENSION_SERVICE}="{contract.SERVICE_NAME}"\', '
        f"'{stat}', {PERIOD_SECONDS})"
    )


def _metric_widget(
    title: str, metrics: list[list[Any]], region: str, *, stat: str = "Sum"
) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "stat": stat,
            "period": PERIOD_SECONDS,
            "metrics": metrics,
        },
    }


def _runtime_metric(name: str, label: str) -> list[Any]:
    return [
        contract.METRICS_NAMESPACE,
        name,
        contract.METRIC_DIMENSION_SERVICE,
        contract.SERVICE_NAME,
        {"label": label},
    ]


def dashboard_body(m: Monitored, region: str) -> dict[str, Any]:
    """The dashboard document (``json.dumps`` it): only widgets of what was deployed."""
    widgets: list[dict[str, Any]] = []
    if m.realtime:
        widgets.append(
            _metric_widget(
                "Prediction latency p50 / p99 (ms), per model version",
                [
                    [
                        {
                            "expression": _search(contract.METRIC_PREDICT_LATENCY, stat, dims),
                            "id": f"latency_{stat}_{n}",
                            "label": stat,
                        }
                    ]
                    for stat in ("p50", "p99")
                    for n, dims in enumerate(SEARCH_SCHEMAS)
                ],
                region,
            )
        )
        if len(m.versions) >= 2:
            widgets.append(_version_error_widget(m.versions, region))
    api = _api_dimensions(m)
    widgets.append(
        _metric_widget(
            "API requests",
            [[API_NAMESPACE, "Count", "ApiName", api["ApiName"], "Stage", m.stage]],
            region,
        )
    )
    widgets.append(
        _metric_widget(
            "API errors",
            [
                [API_NAMESPACE, name, "ApiName", api["ApiName"], "Stage", m.stage]
                for name in ("4XXError", "5XXError")
            ]
            + [
                _runtime_metric(contract.METRIC_SERVER_ERRORS, "5xx answered by a handler"),
                _runtime_metric(contract.METRIC_REJECTED_REQUESTS, "malformed requests"),
            ],
            region,
        )
    )
    if m.functions:
        for title, name in (("Lambda errors", "Errors"), ("Lambda throttles", "Throttles")):
            widgets.append(
                _metric_widget(
                    title,
                    [
                        [LAMBDA_NAMESPACE, name, "FunctionName", fn, {"label": label}]
                        for label, fn in m.functions.items()
                    ],
                    region,
                )
            )
    if m.jobs:
        statuses = [
            (contract.METRIC_JOBS_SUBMITTED, "submitted"),
            (contract.METRIC_JOBS_SUCCEEDED, "succeeded"),
            (contract.METRIC_JOBS_FAILED, "failed"),
            (contract.METRIC_JOBS_CANCELLED, "cancelled"),
        ]
        if m.batch:
            statuses.append((contract.METRIC_BATCH_JOBS_FAILED, "Batch jobs failed"))
        widgets.append(
            _metric_widget(
                "Jobs by status",
                [_runtime_metric(name, label) for name, label in statuses],
                region,
            )
        )
    if m.state_machines:
        widgets.append(
            _metric_widget(
                "Step Functions executions",
                [
                    [STATES_NAMESPACE, name, "StateMachineArn", arn, {"label": f"{label} {word}"}]
                    for label, arn in m.state_machines.items()
                    for name, word in (
                        ("ExecutionsSucceeded", "succeeded"),
                        ("ExecutionsFailed", "failed"),
                        ("ExecutionsTimedOut", "timed out"),
                        ("ExecutionsAborted", "aborted"),
                    )
                ],
                region,
            )
        )
    if m.log_groups:
        widgets.append(_cold_start_widget(m.log_groups, region))
    return {"widgets": _laid_out(widgets)}


def _service_pair() -> list[str]:
    return [contract.METRIC_DIMENSION_SERVICE, contract.SERVICE_NAME]


def _version_error_widget(versions: Sequence[str], region: str) -> dict[str, Any]:
    metrics: list[list[Any]] = []
    for i, version in enumerate(versions):
        dims = [*_service_pair(), VERSION_DIMENSION, version]
        metrics.append(
            [contract.METRICS_NAMESPACE, contract.METRIC_PREDICT_ERRORS, *dims,
             {"id": f"e{i}", "visible": False}]
        )  # fmt: skip
        metrics.append(
            [contract.METRICS_NAMESPACE, contract.METRIC_PREDICT_LATENCY, *dims,
             {"id": f"r{i}", "stat": "SampleCount", "visible": False}]
        )  # fmt: skip
        metrics.append(
            [
                {
                    "expression": f"100*FILL(e{i},0)/(FILL(e{i},0)+FILL(r{i},0))",
                    "id": f"rate{i}",
                    "label": f"{version} server error rate (%)",
                }
            ]
        )
    return _metric_widget("Server error rate per model version (%)", metrics, region)


# Lambda writes a platform report per invocation into the function's log group (JSON log format:
# type platform.report); a cold start's report carries the init duration.
COLD_START_QUERY: Final = (
    'filter type = "platform.report" and ispresent(record.metrics.initDurationMs)'
    " | stats count(*) as coldStarts, avg(record.metrics.initDurationMs) as avgInitMs by bin(5m)"
)


def _cold_start_widget(log_groups: Sequence[str], region: str) -> dict[str, Any]:
    sources = " | ".join(f"SOURCE '{group}'" for group in log_groups)
    return {
        "type": "log",
        "properties": {
            "title": "Cold starts (Lambda init) and their init duration",
            "region": region,
            "view": "timeSeries",
            "query": f"{sources} | {COLD_START_QUERY}",
        },
    }


def _laid_out(widgets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two widgets per row, in order."""
    placed = []
    for i, widget in enumerate(widgets):
        placed.append(
            {
                **widget,
                "x": (i % 2) * WIDGET_WIDTH,
                "y": (i // 2) * WIDGET_HEIGHT,
                "width": WIDGET_WIDTH,
                "height": WIDGET_HEIGHT,
            }
        )
    return placed


def referenced_metrics(body: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (namespace, metric name) a dashboard document reads: its metric rows and the
    metric names of its SEARCH expressions (for checks that each one exists)."""
    found: set[tuple[str, str]] = set()
    search = re.compile(r'\{([^,}]+)[^}]*\} MetricName="([^"]+)"')
    for widget in body.get("widgets", []):
        for row in widget.get("properties", {}).get("metrics", []):
            if row and isinstance(row[0], str):
                found.add((row[0], row[1]))
            for item in row:
                if isinstance(item, dict) and "expression" in item:
                    found.update(search.findall(item["expression"]))
    return found

"""Counts emitted at once, where no handler's ``Metrics`` flush is at hand.

The job store (runtime/jobs.py) runs in the job API, the step functions and the scoring
container alike; a job's terminal status is counted where it is written, as one CloudWatch EMF
record printed on the spot (Powertools' ``single_metric``), in the namespace and with the
``service`` dimension every other runtime metric has. EMF travels in the log stream, so it needs
no IAM grant beyond writing logs. Nothing is printed while metrics are disabled
(POWERTOOLS_METRICS_DISABLED, POWERTOOLS_DEV), as for every other metric.
"""

from __future__ import annotations

import json
from typing import Final

from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from runtime import contract

JOB_ID_PROPERTY: Final = "job_id"  # the key every log line of a job carries (append_keys)


def count(name: str, job_id: str, model_version: str | None = None) -> None:
    """One record of ``name`` = 1 (Count) about the job ``job_id``, printed now. The job id is
    a property of the record, not a dimension: like every log line of a job, the record can be
    found by it (Logs Insights), and it adds no metric series per job.

    With ``model_version`` (the version the job record names) the record is published under two
    dimension sets, as the predictor's metrics are: ``service`` (what the jobs alarms read) and
    ``service`` + ``model_version`` (a canary's jobs beside the stable version's)."""
    if is_metrics_disabled():
        return
    if model_version is None:
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=1,
            namespace=contract.METRICS_NAMESPACE,
            default_dimensions={contract.METRIC_DIMENSION_SERVICE: contract.SERVICE_NAME},
        ) as metric:
            metric.add_metadata(key=JOB_ID_PROPERTY, value=job_id)
        return
    dimensions = {
        contract.METRIC_DIMENSION_SERVICE: contract.SERVICE_NAME,
        contract.METRIC_DIMENSION_MODEL_VERSION: model_version,
    }
    record = _EMF.serialize_metric_set(
        metrics={name: {"Unit": MetricUnit.Count.value, "StorageResolution": 60, "Value": [1.0]}},
        dimensions=dimensions,
        metadata={JOB_ID_PROPERTY: job_id},
    )
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    directive["Dimensions"] = [list(dimensions), [contract.METRIC_DIMENSION_SERVICE]]
    print(json.dumps(record, separators=(",", ":")), flush=True)


# Serializes the versioned records (Powertools' EMF layout); holds no metrics of its own.
_EMF: Final = Metrics(namespace=contract.METRICS_NAMESPACE, service=contract.SERVICE_NAME)

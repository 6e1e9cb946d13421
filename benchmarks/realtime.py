"""Warm real-time latency: the `lambda` handler in-process vs raw ``Booster.inplace_predict``.

Both run in this process on the same rows, interleaved, so machine noise hits both alike; the
figure that matters is the ratio. The handler is called with a real REST (v1) proxy event and the
model is loaded from S3 (moto, in-process) exactly as in Lambda.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlserve.train import load_example_data, sha256_file, train_example
from runtime import contract


@dataclass(frozen=True)
class LatencyResult:
    rows: int
    handler_median_us: float
    handler_p99_us: float
    raw_median_us: float
    raw_p99_us: float

    @property
    def median_ratio(self) -> float:
        return self.handler_median_us / self.raw_median_us


class _Context:
    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"
    log_group_name = "bench"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _event(body: str) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"requestId": "bench", "stage": "v1", "resourcePath": "/predict"},
        "body": body,
        "isBase64Encoded": False,
    }


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_warm_latency(model_dir: Path, rows: int, iterations: int) -> LatencyResult:
    import boto3
    import xgboost as xgb
    from moto import mock_aws

    from runtime.handlers import predict

    model_path = model_dir / contract.MODEL_OBJECT_NAME
    data = load_example_data()
    matrix = data.x[:rows].astype(np.float32)
    body = json.dumps({"instances": data.x[:rows].tolist()})
    booster = xgb.Booster(model_file=str(model_path))
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with mock_aws(), tempfile.TemporaryDirectory() as cache:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="mlserve-bench")
        key = contract.model_key("example", "bench")
        s3.upload_file(str(model_path), "mlserve-bench", key)
        predict.configure(
            env={
                contract.ENV_MODEL_URI: f"s3://mlserve-bench/{key}",
                contract.ENV_MODEL_SHA256: sha256_file(model_path),
                contract.ENV_MODEL_CACHE_DIR: cache,
            }
        )
        event, ctx = _event(body), _Context()
        handler_s: list[float] = []
        raw_s: list[float] = []
        # Metrics stay on, as in Lambda: their EMF lines (stdout) go to a null sink.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            first = predict.handler(event, ctx)
            assert first["statusCode"] == 200, first["body"]
            for _ in range(iterations):
                t0 = time.perf_counter()
                predict.handler(event, ctx)
                t1 = time.perf_counter()
                booster.inplace_predict(matrix)
                t2 = time.perf_counter()
                handler_s.append(t1 - t0)
                raw_s.append(t2 - t1)
        predict.configure(env={})
    us = 1e6
    return LatencyResult(
        rows=rows,
        handler_median_us=statistics.median(handler_s) * us,
        handler_p99_us=_percentile(handler_s, 0.99) * us,
        raw_median_us=statistics.median(raw_s) * us,
        raw_p99_us=_percentile(raw_s, 0.99) * us,
    )


def run(iterations: int = 2000) -> list[LatencyResult]:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "example"
        train_example(model_dir)
        return [measure_warm_latency(model_dir, rows, iterations) for rows in (1, 100)]

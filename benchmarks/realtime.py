"""Warm real-time latency: the `lambda` handler in-process vs raw ``Booster.inplace_predict``.

Both run in this process on the same rows, interleaved (handler, raw, handler, raw, ...), so
machine noise hits both alike; the figure that matters is the ratio of the medians. The handler
is called with a real REST (v1) proxy event, with metrics on as deployed (their EMF lines go to a
null sink), and its model is loaded from S3 (moto, in-process) exactly as in Lambda. The
reference is a Booster loaded from the same model.ubj, called with the float32 rows the request
body encodes.

With ``engine="onnx"`` the handler serves the converted model.onnx (issue 8) and the reference
stays raw XGBoost: the issue's target is the handler's *total* time against raw XGBoost. The
onnx engine's own ``predict`` is timed too (reported), so the handler's overhead can be read off.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from rich.console import Console

from benchmarks.common import Row, check, percentile
from benchmarks.models import BenchModel, example_model, synthetic_matrix, synthetic_model
from mlserve.train import load_example_data, sha256_file
from runtime import contract

BUCKET = "mlserve-bench-realtime"
TARGET_RATIO = 2.0  # handler median / raw inplace_predict median, one row, example model
TARGET_P99_US = 1000.0  # handler p99, one row, example model
ONNX_TARGET_RATIO = 0.5  # handler with the onnx engine / raw XGBoost inplace_predict
US = 1e6


@dataclass(frozen=True)
class LatencyResult:
    model: str
    engine: str
    rows: int
    handler_median_us: float
    handler_p99_us: float
    raw_median_us: float  # raw XGBoost inplace_predict
    raw_p99_us: float
    engine_median_us: float  # the serving engine's own predict (== raw for xgboost)

    @property
    def median_ratio(self) -> float:
        return self.handler_median_us / self.raw_median_us

    @property
    def overhead_us(self) -> float:
        """What the handler adds to its engine's predict (median against median)."""
        return self.handler_median_us - self.engine_median_us


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


def predict_event(body: str, request_id: str = "bench") -> dict[str, Any]:
    """The REST (v1) proxy event API Gateway sends the predictor for a JSON ``POST /predict``."""
    headers = {"Content-Type": "application/json"}
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"requestId": request_id, "stage": "v1", "resourcePath": "/predict"},
        "body": body,
        "isBase64Encoded": False,
    }


def onnx_model_file(model: BenchModel) -> Path:
    """model.onnx converted (and verified) from the model's model.ubj, cached next to it; redone
    when the model or the converter is newer than the cached file."""
    from components import engine

    path: Path = model.directory / contract.ONNX_OBJECT_NAME
    newest = max(model.model_path.stat().st_mtime, Path(engine.__file__).stat().st_mtime)
    if not path.exists() or path.stat().st_mtime < newest:
        engine.convert_to_onnx(model.model_path, path, name=model.directory.name, version="bench")
    return path


def _rows(model: BenchModel, rows: int) -> np.ndarray:
    """Rows as a client sends them: the example's dataset values, or synthetic values with four
    decimals (float64; the JSON body carries them as written, the reference gets float32)."""
    if model.num_features == 30:  # the example model: real rows of its dataset
        return np.asarray(load_example_data().x[:rows], dtype=np.float64)
    return np.round(synthetic_matrix(rows, model.num_features, seed=11).astype(np.float64), 4)


def _nthread(served: Any) -> int:
    """The threads of the served booster; for the onnx engine, those the handler gives the
    xgboost engine (one), so raw XGBoost is measured at its best for small batches."""
    booster = getattr(served, "booster", None)
    if booster is None:
        return 1
    return int(json.loads(booster.save_config())["learner"]["generic_param"]["nthread"])


@contextlib.contextmanager
def handler_environment(objects: dict[str, Path], engine: str) -> Iterator[dict[str, str]]:
    """The warm predictor's environment in moto: each ``key -> file`` of ``objects`` uploaded to
    the bench bucket, the first one the model (MODEL_URI, MODEL_SHA256), a fresh cache dir."""
    import boto3
    from moto import mock_aws

    for name, value in (
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
    ):
        os.environ.setdefault(name, value)
    with mock_aws(), tempfile.TemporaryDirectory() as cache:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for key, path in objects.items():
            s3.upload_file(str(path), BUCKET, key)
        key, path = next(iter(objects.items()))
        yield {
            contract.ENV_MODEL_URI: f"s3://{BUCKET}/{key}",
            contract.ENV_MODEL_SHA256: sha256_file(path),
            contract.ENV_MODEL_CACHE_DIR: cache,
            contract.ENV_MAX_ROWS: "10000",
            contract.ENV_MODEL_ENGINE: engine,
        }


def measure_warm_latency(
    model: BenchModel, rows: int, iterations: int, engine: str = "xgboost"
) -> LatencyResult:
    import xgboost as xgb

    from runtime.handlers import predict

    values = _rows(model, rows)
    body = json.dumps({"instances": values.tolist()})
    matrix = values.astype(np.float32)  # what the handler predicts on, too
    booster = xgb.Booster(model_file=str(model.model_path))
    if engine == "onnx":
        path, key = onnx_model_file(model), contract.onnx_model_key("bench", "v1")
    else:
        path, key = model.model_path, contract.model_key("bench", "v1")
    with handler_environment({key: path}, engine) as env:
        predict.configure(env=env)
        event, ctx = predict_event(body), cast(Any, _Context())
        handler_s: list[float] = []
        raw_s: list[float] = []
        engine_s: list[float] = []
        # Metrics stay on, as in Lambda: their EMF lines (stdout) go to a null sink.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            first = predict.handler(event, ctx)
            assert first["statusCode"] == 200, first["body"]
            served = predict.serving().model
            # The reference runs with the threads the xgboost engine is served with.
            booster.set_param({"nthread": _nthread(served)})
            expected = booster.inplace_predict(matrix)
            got = np.asarray(json.loads(predict.handler(event, ctx)["body"])["predictions"])
            np.testing.assert_allclose(got, expected, atol=1e-5)  # the same model, both ways
            for _ in range(min(200, iterations)):  # warm caches and the allocator
                predict.handler(event, ctx)
                booster.inplace_predict(matrix)
            gc.collect()
            perf = time.perf_counter
            for _ in range(iterations):
                t0 = perf()
                predict.handler(event, ctx)
                t1 = perf()
                booster.inplace_predict(matrix)
                t2 = perf()
                if engine != "xgboost":
                    served.predict(matrix)
                    engine_s.append(perf() - t2)
                handler_s.append(t1 - t0)
                raw_s.append(t2 - t1)
        predict.configure(env={})
    return LatencyResult(
        model=model.label,
        engine=engine,
        rows=rows,
        handler_median_us=statistics.median(handler_s) * US,
        handler_p99_us=percentile(handler_s, 0.99) * US,
        raw_median_us=statistics.median(raw_s) * US,
        raw_p99_us=percentile(raw_s, 0.99) * US,
        engine_median_us=statistics.median(engine_s or raw_s) * US,
    )


def _latency_row(r: LatencyResult) -> str:
    text = (
        f"handler {r.handler_median_us:.0f} us (p99 {r.handler_p99_us:.0f}) vs raw "
        f"{r.raw_median_us:.0f} us (p99 {r.raw_p99_us:.0f}) = {r.median_ratio:.2f}x"
    )
    if r.engine != "xgboost":
        text += f"; onnx predict {r.engine_median_us:.0f} us"
    return text + f"; overhead {r.overhead_us:.0f} us"


def rows(console: Console, quick: bool = False) -> list[Row]:
    out: list[Row] = []
    engines = contract.ENGINES
    with console.status("warm latency: preparing models ..."):
        models = [example_model(), synthetic_model(trees=500)]
    for model in models:
        for engine in engines:
            for n in (1, 100):
                iterations = (300 if quick else 2000) if n == 1 else (100 if quick else 400)
                with console.status(f"warm latency: {model.label}, {engine}, {n} row(s) ..."):
                    r = measure_warm_latency(model, n, iterations, engine)
                figure = f"{model.label}, {engine} engine, {n} row{'s' if n > 1 else ''}"
                measured = _latency_row(r)
                if engine == "xgboost" and n == 1 and model.num_features == 30:
                    ok = r.median_ratio <= TARGET_RATIO and r.handler_p99_us <= TARGET_P99_US
                    target = f"median <= {TARGET_RATIO}x raw, p99 <= {TARGET_P99_US:.0f} us"
                    out.append(check(figure, measured, target, ok))
                elif engine == "onnx":
                    target = f"<= {ONNX_TARGET_RATIO}x raw XGBoost"
                    out.append(check(figure, measured, target, r.median_ratio <= ONNX_TARGET_RATIO))
                else:
                    out.append(Row(figure, measured))
    return out

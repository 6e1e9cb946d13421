"""Data capture and the canary on the warm `lambda` handler (issue 17): what they add to a warm
prediction, as ratios side by side with the handler without them.

The handler runs in-process exactly as in benchmarks/realtime.py (a REST proxy event, metrics on,
the model loaded from S3 in moto), once configured without capture and once with
``CAPTURE_SAMPLE_PERCENT=100`` (every request prints its capture line, which goes to a null sink
like the EMF lines: in Lambda both go to the function's log, shipped by Lambda after the fact).
The two configurations alternate in blocks (A, B, A, B, ...), so machine noise hits both alike;
the figure is the ratio of the medians of all calls. The target (issue 17): capture at 100 %
sampling costs at most 1.1x the warm handler without it.

Reported beside it: 100 rows, and a shadow canary at 100 % (every request scored twice and
captured) against the stable model alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Mapping
from typing import Any, cast

from rich.console import Console

from benchmarks.common import Row, check
from benchmarks.models import BenchModel, example_model
from benchmarks.realtime import BUCKET, US, _Context, _rows, handler_environment, predict_event
from runtime import contract

TARGET_RATIO = 1.1  # warm handler with capture at 100 % / without, one row, example model


def measure(
    model: BenchModel, rows: int, extra: Mapping[str, str], blocks: int, per_block: int
) -> tuple[float, float]:
    """Median handler time (us) without and with ``extra`` environment, alternating blocks."""
    import json

    from runtime.handlers import predict

    body = json.dumps({"instances": _rows(model, rows).tolist()})
    stable_key = contract.model_key("bench", "v1")
    canary_key = contract.model_key("bench", "v2")  # the same bytes as another version
    objects = {stable_key: model.model_path, canary_key: model.model_path}
    with handler_environment(objects, contract.ENGINE_XGBOOST) as base:
        digest = base[contract.ENV_MODEL_SHA256]
        extra = {
            k: v.replace("{canary_uri}", f"s3://{BUCKET}/{canary_key}").replace("{sha}", digest)
            for k, v in extra.items()
        }
        event, ctx = predict_event(body), cast(Any, _Context())
        samples: dict[bool, list[float]] = {False: [], True: []}
        perf = time.perf_counter
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for block in range(2 * blocks):
                with_extra = block % 2 == 1
                predict.configure(env={**base, **extra} if with_extra else base)
                answer = predict.handler(event, ctx)  # loads the model (cached file)
                assert answer["statusCode"] == 200, answer["body"]
                for _ in range(50):  # warm
                    predict.handler(event, ctx)
                gc.collect()
                times = samples[with_extra]
                for _ in range(per_block):
                    t0 = perf()
                    predict.handler(event, ctx)
                    times.append(perf() - t0)
        predict.configure(env={})
    return statistics.median(samples[False]) * US, statistics.median(samples[True]) * US


CAPTURE = {contract.ENV_CAPTURE_SAMPLE_PERCENT: "100"}
SHADOW = {
    contract.ENV_CANARY_MODEL_URI: "{canary_uri}",
    contract.ENV_CANARY_MODEL_SHA256: "{sha}",
    contract.ENV_CANARY_PERCENT: "100",
    contract.ENV_CANARY_MODE: contract.CANARY_SHADOW,
}


def rows(console: Console, quick: bool = False) -> list[Row]:
    model = example_model()
    blocks, per_block = (4, 200) if quick else (10, 500)
    out: list[Row] = []
    for n, extra, figure in (
        (1, CAPTURE, "warm handler, example model, 1 row: capture at 100 % vs without"),
        (100, CAPTURE, "the same, 100 rows"),
        (1, SHADOW, "warm handler, 1 row: a shadow canary at 100 % (scored twice, captured) vs "
         "the stable model alone"),
    ):  # fmt: skip
        with console.status(f"capture: {figure} ..."):
            without, with_extra = measure(model, n, extra, blocks, per_block)
        ratio = with_extra / without
        measured = f"{with_extra:.0f} us vs {without:.0f} us = {ratio:.2f}x"
        if extra is CAPTURE and n == 1:
            out.append(check(figure, measured, f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO))
        else:
            out.append(Row(figure, measured))
    return out

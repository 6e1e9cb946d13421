"""The rollout plan (runtime/rollout.py), the capture record (runtime/capture.py) and the capture
function (runtime/handlers/capture.py) against moto's S3."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from runtime import capture, contract
from runtime.handlers import capture as capture_handler
from runtime.payload import PayloadError
from runtime.rollout import Rollout

BUCKET = "mlserve-models-test"
KEYS = [f"request-{i}" for i in range(10_000)]


def test_split_sends_the_canary_percent_of_keys_to_the_canary() -> None:
    rollout = Rollout(("v1", "v2"), canary_percent=25, mode="split")
    served = Counter(rollout.plan(key).answer for key in KEYS)
    assert 0.235 <= served[1] / len(KEYS) <= 0.265
    assert all(rollout.plan(k) == rollout.plan(k) for k in KEYS[:100])  # deterministic
    assert {rollout.plan(k).shadow for k in KEYS} == {None}


@pytest.mark.parametrize("percent", [0, 100])
def test_the_bounds_are_exact(percent: int) -> None:
    rollout = Rollout(("v1", "v2"), canary_percent=percent)
    assert {rollout.plan(k).answer for k in KEYS[:500]} == {1 if percent else 0}


def test_shadow_answers_with_the_stable_version_and_captures_every_shadowed_request() -> None:
    rollout = Rollout(("v1", "v2"), canary_percent=30, mode="shadow")
    plans = [rollout.plan(k) for k in KEYS]
    assert {p.answer for p in plans} == {0}
    shadowed = [p for p in plans if p.shadow == 1]
    assert 0.285 <= len(shadowed) / len(KEYS) <= 0.315
    assert all(p.capture for p in shadowed)
    assert not any(p.capture for p in plans if p.shadow is None)  # no sampling asked


def test_a_pinned_version_answers_and_an_unknown_one_is_a_400() -> None:
    rollout = Rollout(("v1", "v2"), canary_percent=50, mode="shadow")
    assert {rollout.plan(k, "v2").answer for k in KEYS[:200]} == {1}
    assert {rollout.plan(k, "v1").shadow for k in KEYS[:200]} == {None}
    with pytest.raises(PayloadError) as err:
        rollout.plan("k", "v3")
    assert (err.value.status, err.value.code) == (400, "unknown_model_version")
    assert "v1, v2" in err.value.message


def test_capture_sampling_is_independent_of_the_canary_assignment() -> None:
    rollout = Rollout(("v1", "v2"), canary_percent=50, capture_percent=10)
    plans = [rollout.plan(k) for k in KEYS]
    captured = Counter(p.answer for p in plans if p.capture)
    assert 0.085 <= sum(captured.values()) / len(KEYS) <= 0.115
    assert 0.4 <= captured[1] / sum(captured.values()) <= 0.6


def test_a_record_keeps_missing_values_as_null_and_at_most_the_row_cap() -> None:
    rows = np.arange(3 * (capture.MAX_CAPTURED_ROWS + 5), dtype=np.float32).reshape(-1, 3)
    rows[0, 1] = np.nan
    record = capture.record(
        request_id="r1",
        model="m",
        versions={"v1": np.ones(len(rows), dtype=np.float32)},
        served_version="v1",
        features=rows,
        feature_names=["a", "b", "c"],
        latency_ms=1.23456,
        now=0.0,
    )
    line = json.loads(capture.log_line(record))
    assert line.pop(contract.CAPTURE_MARKER_FIELD) == contract.CAPTURE_MARKER_VALUE
    assert set(line) == set(capture.FIELDS) - {"errors"}
    assert line["time"] == "1970-01-01T00:00:00.000Z"
    assert line["rows"] == len(rows)
    assert len(line["features"]) == len(line["versions"]["v1"]) == capture.MAX_CAPTURED_ROWS
    assert line["features"][:2] == [[0.0, None, 2.0], [3.0, 4.0, 5.0]]
    assert line["feature_names"] == ["a", "b", "c"]
    assert line["latency_ms"] == 1.235


def test_float32_values_are_written_as_the_client_sent_them() -> None:
    sent = [[19.69, 0.1, 1001.0, 0.07871]]
    record = capture.record(
        request_id="r",
        model="m",
        versions={"v": np.asarray([0.25], dtype=np.float32)},
        served_version="v",
        features=np.asarray(sent, dtype=np.float32),
        feature_names=["a", "b", "c", "d"],
        latency_ms=0.5,
    )
    line = json.loads(capture.log_line(record))
    assert line["features"] == sent
    assert line["versions"] == {"v": [0.25]}


@dataclass
class Context:
    aws_request_id: str
    function_name: str = "capture"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:capture"


def _records(day: str, version: str, n: int) -> list[dict[str, Any]]:
    return [
        capture.record(
            request_id=f"{version}-{i}",
            model="example",
            versions={version: [0.5]},
            served_version=version,
            features=np.zeros((1, 2), dtype=np.float32),
            feature_names=["a", "b"],
            latency_ms=1.0,
            now=np.datetime64(f"{day}T12:00:00").astype("datetime64[s]").astype(int).item(),
        )
        for i in range(n)
    ]


def test_the_capture_function_writes_one_object_per_model_version_and_day(s3: Any) -> None:
    records = _records("2026-12-03", "v1", 2) + _records("2026-12-04", "v1", 1)
    records += _records("2026-12-04", "v2", 3)
    messages = [capture.log_line(r) for r in records]
    messages += ['{"_aws": {"CloudWatchMetrics": []}, "PredictRows": [1]}', "START RequestId: x"]
    payload = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "predictor-logs",
        "logEvents": [{"id": str(i), "timestamp": 0, "message": m} for i, m in enumerate(messages)],
    }
    event = capture.encode_subscription_event(payload)
    capture_handler.configure(env={contract.ENV_DATA_BUCKET: BUCKET}, clients={"s3": s3})

    def stored() -> dict[str, list[dict[str, Any]]]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/").get("Contents", [])
        return {
            o["Key"]: [
                json.loads(line)
                for line in s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().splitlines()
            ]
            for o in listed
        }

    capture_handler.handler(event, Context("invocation-1"))
    first = stored()
    assert sorted(first) == [
        "capture/example/v1/dt=2026-12-03/invocation-1-0.jsonl",
        "capture/example/v1/dt=2026-12-04/invocation-1-1.jsonl",
        "capture/example/v2/dt=2026-12-04/invocation-1-2.jsonl",
    ]
    written = [json.loads(capture.log_line(r)) for r in records]
    for line in written:
        del line[contract.CAPTURE_MARKER_FIELD]
    assert [r for objects in first.values() for r in objects] == written
    # Lambda retries a failed delivery with the same request id: the same objects, no duplicate
    capture_handler.handler(event, Context("invocation-1"))
    assert stored() == first
    control = capture.encode_subscription_event({"messageType": "CONTROL_MESSAGE"})
    assert capture_handler.handler(control, Context("invocation-2")) == {"written": []}


def test_a_line_splices_the_response_text_and_is_stamped_with_its_log_event_time() -> None:
    recorder = capture.Recorder("m", ["a"])
    rows = capture.MAX_CAPTURED_ROWS + 3
    features = np.arange(rows, dtype=np.float32).reshape(-1, 1)
    answers = [i / 4 for i in range(rows)]
    line = recorder.line('r"1', {"v1": json.dumps(answers[:2])}, "v1", features[:2], 0.25)
    long = recorder.line("r2", {"v1": json.dumps(answers)}, "v1", features, 0.25)
    events = [
        {"id": "1", "timestamp": 1_764_849_600_123, "message": line},  # 2025-12-04T12:00:00.123Z
        {"id": "2", "timestamp": 0, "message": long},
    ]
    first, second = capture.records_of(events)
    assert list(first) == [f for f in capture.FIELDS if f != "errors"]
    assert first["time"] == "2025-12-04T12:00:00.123Z"
    assert first["request_id"] == 'r"1'
    assert first["versions"] == {"v1": [0.0, 0.25]}
    assert first["features"] == [[0.0], [1.0]]
    # a request of more rows than a record keeps: both its features and predictions are cut
    assert second["versions"]["v1"] == answers[: capture.MAX_CAPTURED_ROWS]
    assert len(second["features"]) == capture.MAX_CAPTURED_ROWS
    assert second["rows"] == rows
    assert second["time"] == "1970-01-01T00:00:00.000Z"

"""Data capture (issue 17): the one definition of a capture record, how the predictor emits it,
and how the capture function turns delivered log lines into S3 objects.

How a record travels (docs/operations.md, "Data capture"): the predictor prints one JSON line per
sampled request to its own log (stdout; no AWS call on the request path, so capture adds no
network round trip to the answer); the log group's subscription filter (the program's
``CAPTURE_FILTER_PATTERN``) delivers those lines, batched, to the capture function
(runtime/handlers/capture.py), which writes them as JSON lines to
``capture/{model}/{served_version}/dt=YYYY-MM-DD/{object}.jsonl`` in the model bucket.

A record (one per request; what ``mlserve drift`` and ``mlserve rollout status`` read):

========================  ==================================================================
field                     meaning
========================  ==================================================================
``schema``                :data:`SCHEMA_VERSION` (1)
``request_id``            API Gateway's request id of the request
``time``                  when the request was answered, ISO 8601 UTC (``...T12:00:00.123Z``)
``model``                 the model name (the stable model's; a canary's may differ)
``versions``              ``{version: predictions}`` of every version that scored the request
                          (a number per row, or a list per row for multi-output models)
``served_version``        the version whose predictions were returned
``features``              the rows as scored: a list of rows, each a list of floats or null
                          (missing), in ``feature_names`` order; categorical values as codes
``feature_names``         the model's feature names
``latency_ms``            the handler's time from the request to the answer (ms, float)
``rows``                  rows in the request (``features`` holds at most
                          :data:`MAX_CAPTURED_ROWS` of them, the first ones)
``errors``                only when a version failed to score: ``{version: error code}``
                          (a shadow canary's failure never reaches the client)
========================  ==================================================================

A record never holds the API key, a header or the raw body: only the parsed feature values.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

import numpy as np

from runtime import contract

SCHEMA_VERSION: Final = 1
# The record's fields, in order (``errors`` only when a version failed).
FIELDS: Final = (
    "schema",
    "request_id",
    "time",
    "model",
    "versions",
    "served_version",
    "features",
    "feature_names",
    "latency_ms",
    "rows",
    "errors",
)
# The log line's marker: the subscription filter (contract.CAPTURE_FILTER_PATTERN, deployed by
# components/capture.py) selects the lines that carry it; the capture function drops it.
MARKER_FIELD: Final = contract.CAPTURE_MARKER_FIELD
MARKER_VALUE: Final = contract.CAPTURE_MARKER_VALUE
# A CloudWatch Logs event holds at most 256 KB: a request's features beyond this many rows
# are not captured (``rows`` says how many there were).
MAX_CAPTURED_ROWS: Final = 200
OBJECT_SUFFIX: Final = ".jsonl"


def sampled(key: str, percent: int, salt: str) -> bool:
    """Deterministically True for ``percent`` % of keys: the first 8 hex digits of
    ``sha256(salt + key)``, mod 100. The canary assignment and the capture sample use
    different salts, so they are independent."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    digest = hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 < percent


def _rows(features: np.ndarray) -> list[list[float | None]]:
    """The captured feature rows: NaN (missing) as null."""
    head = features[:MAX_CAPTURED_ROWS]
    values: list[list[float]] = head.tolist()
    if not np.isnan(head).any():
        return cast("list[list[float | None]]", values)
    return [[None if math.isnan(v) else v for v in row] for row in values]


def record(
    *,
    request_id: str,
    model: str,
    versions: Mapping[str, Any],
    served_version: str,
    features: np.ndarray,
    feature_names: Sequence[str],
    latency_ms: float,
    errors: Mapping[str, str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """One capture record (see the module's table). ``versions`` maps a version to its
    predictions (an array or a list); only the first :data:`MAX_CAPTURED_ROWS` rows are kept."""
    when = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    captured: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "request_id": request_id,
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "model": model,
        "versions": {
            version: (
                predictions[:MAX_CAPTURED_ROWS].tolist()
                if isinstance(predictions, np.ndarray)
                else list(predictions)[:MAX_CAPTURED_ROWS]
            )
            for version, predictions in versions.items()
        },
        "served_version": served_version,
        "features": _rows(features),
        "feature_names": list(feature_names),
        "latency_ms": round(float(latency_ms), 3),
        "rows": int(features.shape[0]),
    }
    if errors:
        captured["errors"] = dict(errors)
    return captured


def log_line(captured: Mapping[str, Any]) -> str:
    """The log line of a record: the record plus the marker, compact JSON (NaN cannot occur:
    missing features are null, and a non-finite prediction is a 422, never captured)."""
    return json.dumps({MARKER_FIELD: MARKER_VALUE, **captured}, separators=(",", ":"))


def emit(captured: Mapping[str, Any]) -> None:
    """Print the record's log line to stdout: Lambda sends it to the function's log group."""
    sys.stdout.write(log_line(captured) + "\n")


# --- the capture function's side --------------------------------------------------------------


def decode_subscription_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The payload CloudWatch Logs gives a subscription's Lambda: base64 of gzip of JSON
    ``{messageType, logGroup, logStream, logEvents: [{id, timestamp, message}]}``."""
    data = event["awslogs"]["data"]
    payload: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(data)))
    return payload


def encode_subscription_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`decode_subscription_event` (what CloudWatch Logs sends)."""
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    return {"awslogs": {"data": data}}


def records_of(messages: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The capture records among log messages (lines without the marker are skipped)."""
    for message in messages:
        text = message.strip()
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.pop(MARKER_FIELD, None) == MARKER_VALUE:
            yield line


def object_groups(
    records: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], list[Mapping[str, Any]]]:
    """Records grouped by (model, served version, day): one object per group."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for captured in records:
        day = str(captured["time"])[:10]
        key = (str(captured["model"]), str(captured["served_version"]), day)
        groups.setdefault(key, []).append(captured)
    return groups


def object_key(model: str, version: str, day: str, batch_id: str) -> str:
    """``capture/{model}/{version}/dt={day}/{batch_id}.jsonl``: one delivery's records of one
    (model, version, day); a retried delivery (same ``batch_id``) writes the same key again."""
    return contract.capture_key(model, version, day, f"{batch_id}{OBJECT_SUFFIX}")


def jsonl(records: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()

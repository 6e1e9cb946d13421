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
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import numpy as np
import orjson

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
_ORJSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY
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


def _head(values: Any) -> Any:
    """The first :data:`MAX_CAPTURED_ROWS` rows: a C-contiguous array (orjson serializes it
    natively, float32 in its shortest form and NaN, a missing value, as null), or a list."""
    if isinstance(values, np.ndarray):
        if values.shape[0] <= MAX_CAPTURED_ROWS and values.flags.c_contiguous:
            return values
        return np.ascontiguousarray(values[:MAX_CAPTURED_ROWS])
    return list(values)[:MAX_CAPTURED_ROWS]


class _Clock:
    """ISO 8601 UTC with milliseconds; the text up to the second is formatted once a second."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def iso(self, now: float) -> str:
        second = int(now)
        if second != self.second:
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.second = second
        return f"{self.prefix}.{int((now - second) * 1000):03d}Z"


_clock = _Clock()


class Recorder:
    """The capture lines of one model. What never changes between its requests (the marker,
    the schema version, the model name, the feature names) is serialized once; each request
    serializes only its own fields (one ``orjson.dumps``: ~2 us for a one-row request)."""

    __slots__ = ("_prefix",)

    def __init__(self, model: str, feature_names: Sequence[str]) -> None:
        fixed = {
            MARKER_FIELD: MARKER_VALUE,
            "schema": SCHEMA_VERSION,
            "model": model,
            "feature_names": list(feature_names),
        }
        self._prefix = orjson.dumps(fixed)[:-1] + b","

    def line(
        self,
        *,
        request_id: str,
        versions: Mapping[str, Any],
        served_version: str,
        features: np.ndarray,
        latency_ms: float,
        errors: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> bytes:
        """One request's log line (the record, see the module's table, plus the marker):
        ``versions`` maps a version to its predictions (an array or a list); features and
        predictions keep their first :data:`MAX_CAPTURED_ROWS` rows."""
        total = features.shape[0]
        if total > MAX_CAPTURED_ROWS or not features.flags.c_contiguous:
            features = _head(features)
        own: dict[str, Any] = {
            "request_id": request_id,
            "time": _clock.iso(time.time() if now is None else now),
            "versions": {version: _head(p) for version, p in versions.items()},
            "served_version": served_version,
            "features": features,
            "latency_ms": round(latency_ms, 3),
            "rows": total,
        }
        if errors:
            own["errors"] = errors
        return self._prefix + orjson.dumps(own, option=_ORJSON_OPTIONS)[1:]

    def emit(
        self,
        *,
        request_id: str,
        versions: Mapping[str, Any],
        served_version: str,
        features: np.ndarray,
        latency_ms: float,
        errors: Mapping[str, str] | None = None,
    ) -> None:
        """Print the request's line to stdout: Lambda sends it to the function's log group."""
        line = self.line(
            request_id=request_id,
            versions=versions,
            served_version=served_version,
            features=features,
            latency_ms=latency_ms,
            errors=errors,
        )
        sys.stdout.write(line.decode() + "\n")


def record(*, model: str, feature_names: Sequence[str], **fields: Any) -> dict[str, Any]:
    """One capture record as the capture function stores it (plain JSON values): the line of
    :meth:`Recorder.line` without the marker."""
    line: dict[str, Any] = json.loads(Recorder(model, feature_names).line(**fields))
    del line[MARKER_FIELD]
    return line


def log_line(captured: Mapping[str, Any]) -> str:
    """The log line of a stored record (the marker added back)."""
    return json.dumps({MARKER_FIELD: MARKER_VALUE, **captured}, separators=(",", ":"))


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

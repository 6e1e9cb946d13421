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
``time``                  when the request was answered, ISO 8601 UTC (``...T12:00:00.123Z``):
                          the log event's timestamp, written by the capture function
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
_dumps: Final = orjson.dumps
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


def _predictions_json(predictions: str | np.ndarray | Sequence[Any], rows: int) -> str:
    """One version's predictions as JSON text, at most :data:`MAX_CAPTURED_ROWS` of them. A
    ``str`` is the JSON text the response already carries: spliced as it is (re-read and cut
    only for a request of more rows than a record keeps)."""
    if isinstance(predictions, str):
        if rows <= MAX_CAPTURED_ROWS:
            return predictions
        predictions = json.loads(predictions)
    return orjson.dumps(_head(predictions), option=_ORJSON_OPTIONS).decode()


def iso_time(epoch_ms: int) -> str:
    """A record's ``time`` from a log event's timestamp (ms since the epoch): ISO 8601 UTC
    with milliseconds (``...T12:00:00.123Z``)."""
    second, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{millis:03d}Z"


class Recorder:
    """The capture lines of one model, built on the request path as cheaply as it can be: the
    warm handler's budget for capture is a few microseconds (``make bench``, issue 17).

    - What never changes between requests (the marker, the schema version, the model name, the
      feature names, each version's JSON key) is serialized once.
    - The predictions are the JSON text the response already carries, spliced in, not
      serialized again; the features are one ``orjson.dumps`` of the parsed rows.
    - The line has no ``time``: CloudWatch Logs stamps every log event with the time it was
      printed, and the capture function (:func:`records_of`) writes that stamp as the record's
      ``time``, off the request path.
    """

    __slots__ = ("_keys", "_prefix")

    def __init__(self, model: str, feature_names: Sequence[str]) -> None:
        fixed = {
            MARKER_FIELD: MARKER_VALUE,
            "schema": SCHEMA_VERSION,
            "model": model,
            "feature_names": list(feature_names),
        }
        self._prefix = orjson.dumps(fixed).decode()[:-1] + ',"request_id":'
        self._keys: dict[str, str] = {}

    def _key(self, version: str) -> str:
        """A version's name as JSON text (escaped once per version)."""
        quoted = self._keys.get(version)
        if quoted is None:
            quoted = self._keys[version] = json.dumps(version)
        return quoted

    def line(
        self,
        request_id: str,
        versions: Mapping[str, str | np.ndarray | Sequence[Any]],
        served_version: str,
        features: np.ndarray,
        latency_ms: float,
        *,
        errors: Mapping[str, str] | None = None,
    ) -> str:
        """One request's log line (the record, see the module's table, without ``time``; plus
        the marker). ``versions`` maps a version to its predictions: the JSON text of all of
        them (what the response carries) or an array/list. Features and predictions keep their
        first :data:`MAX_CAPTURED_ROWS` rows."""
        total = features.shape[0]
        if total > MAX_CAPTURED_ROWS or not features.flags.c_contiguous:
            features = _head(features)
        key = self._key
        parts = [self._prefix, _dumps(request_id).decode(), ',"versions":{']
        for version, predictions in versions.items():
            parts += (key(version), ":", _predictions_json(predictions, total), ",")
        if versions:
            parts.pop()
        parts += (
            '},"served_version":',
            key(served_version),
            ',"features":',
            _dumps(features, option=_ORJSON_OPTIONS).decode(),
            ',"latency_ms":%.3f,"rows":%d' % (latency_ms, total),  # noqa: UP031 - the fastest
        )
        if errors:
            parts += (',"errors":', _dumps(errors).decode())
        parts.append("}")
        return "".join(parts)  # one allocation of the line (concatenation copies it each time)

    def emit(
        self,
        request_id: str,
        versions: Mapping[str, str | np.ndarray | Sequence[Any]],
        served_version: str,
        features: np.ndarray,
        latency_ms: float,
        *,
        errors: Mapping[str, str] | None = None,
    ) -> None:
        """Print the request's line to stdout: Lambda sends it to the function's log group."""
        line = self.line(request_id, versions, served_version, features, latency_ms, errors=errors)
        sys.stdout.write(line + "\n")


def _ordered(line: Mapping[str, Any]) -> dict[str, Any]:
    """A record with its fields in :data:`FIELDS` order."""
    return {name: line[name] for name in FIELDS if name in line}


def record(
    *, model: str, feature_names: Sequence[str], now: float | None = None, **fields: Any
) -> dict[str, Any]:
    """One capture record as the capture function stores it (plain JSON values): the line of
    :meth:`Recorder.line` without the marker, stamped ``now`` (default: the current time) as
    CloudWatch Logs stamps the log event."""
    line: dict[str, Any] = json.loads(Recorder(model, feature_names).line(**fields))
    line["time"] = iso_time(round((time.time() if now is None else now) * 1000))
    return _ordered(line)


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


def records_of(events: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The capture records among delivered log events (``{id, timestamp, message}``; lines
    without the marker are skipped). A record's ``time`` is its event's timestamp (ms), unless
    its line carries one."""
    for event in events:
        text = str(event.get("message", "")).strip()
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.pop(MARKER_FIELD, None) == MARKER_VALUE:
            if "time" not in line:
                line["time"] = iso_time(int(event.get("timestamp") or 0))
            yield _ordered(line)


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

"""The capture function (issue 17): the predictor's capture log lines -> S3 objects.

The predictor's log group has a subscription filter (components/capture.py) selecting the lines
runtime/capture.py emits; CloudWatch Logs invokes this function with each batch of them
(``{"awslogs": {"data": base64(gzip(json))}}``). The records are grouped by (model, served
version, day) and each group is written as one JSON lines object
``capture/{model}/{version}/dt=YYYY-MM-DD/{invocation id}-{n}.jsonl``: a retried invocation
(same request id) writes the same keys again, so a retry never duplicates records. A failed
PutObject raises, and Lambda's asynchronous retries deliver the batch again.

Environment: DATA_BUCKET (the model bucket), POWERTOOLS_*. Client (injectable with
:func:`configure`): s3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from runtime import capture, contract
from runtime.context import RuntimeContext

logger = Logger(service=contract.SERVICE_NAME)

_context: RuntimeContext | None = None


def configure(
    env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
) -> RuntimeContext:
    """Replace the runtime context (tests, the local emulator)."""
    global _context  # noqa: PLW0603 - the one module-level context, by design
    _context = RuntimeContext(env, clients)
    return _context


def runtime_context() -> RuntimeContext:
    return _context if _context is not None else configure()


def write_records(
    ctx: RuntimeContext, payload: Mapping[str, Any], batch_id: str
) -> list[dict[str, Any]]:
    """Write the capture records of one delivered batch; what was written (key, records)."""
    groups = capture.object_groups(capture.records_of(payload.get("logEvents") or []))
    bucket = ctx.data_bucket
    written: list[dict[str, Any]] = []
    for n, ((model, version, day), records) in enumerate(sorted(groups.items())):
        key = capture.object_key(model, version, day, f"{batch_id}-{n}")
        ctx.client("s3").put_object(
            Bucket=bucket, Key=key, Body=capture.jsonl(records), ContentType="application/x-ndjson"
        )
        written.append({"key": key, "records": len(records)})
    return written


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    payload = capture.decode_subscription_event(event)
    if payload.get("messageType") == "CONTROL_MESSAGE":  # CloudWatch Logs' reachability check
        return {"written": []}
    written = write_records(runtime_context(), payload, context.aws_request_id)
    logger.info(
        "capture records written",
        extra={"objects": len(written), "records": sum(w["records"] for w in written)},
    )
    return {"written": written}

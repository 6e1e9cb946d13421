"""S3 event notifications, locally: an upload to the emulated bucket invokes the real handler.

moto's S3 sends a bucket's Lambda notifications itself (``moto.s3.notifications.send_event``,
called in the PutObject/CopyObject/multipart-complete request) when the bucket has a
notification configuration that matches the event and the key's prefix/suffix filter. Two
in-process hooks on that module, installed while the emulator runs:

- ``_invoke_awslambda``: a function registered with :meth:`LocalS3Notifications.register`
  gets the event asynchronously, as S3 invokes Lambda (``InvocationType=Event``): a delivery
  thread runs the real handler (:class:`~mlserve.local.functions.LocalFunction`), retrying twice
  on an error as Lambda's asynchronous invocation does. moto defect: without Docker, moto's own
  invocation runs nothing (and swallows every error).
- ``_get_s3_event``: moto defect: the event record's key has "/" encoded as %2F, and it has
  no ``sequencer`` (and no ``versionId``
  on a versioned bucket); S3 sends both, and consumers tell uploads of the same key apart by
  them. The hook adds a ``sequencer`` increasing with every event and the object's version.

Every delivered event is kept (:attr:`LocalS3Notifications.deliveries`), and
:meth:`LocalS3Notifications.redeliver` hands one to its function again: S3 delivers events at
least once, so a duplicate is something a consumer must cope with.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from mlserve.local.functions import LocalFunction

logger = logging.getLogger("mlserve-local.s3-notifications")

ASYNC_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice
RETRY_DELAY = 1.0  # seconds (Lambda: about a minute, then two)
_hook_lock = threading.Lock()


@dataclass
class Delivery:
    """One asynchronous invocation of a function with an S3 event."""

    function: str
    event: dict[str, Any]
    attempts: int = 0
    result: Any = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def keys(self) -> list[str]:
        """The (decoded) object keys of the event's records."""
        return [unquote_plus(str(r["s3"]["object"]["key"])) for r in self.event.get("Records", [])]


class LocalS3Notifications:
    """moto's S3 notifications delivered to in-process functions (see the module docstring)."""

    def __init__(self, *, retry_delay: float = RETRY_DELAY) -> None:
        self.retry_delay = retry_delay
        self._functions: dict[str, LocalFunction] = {}  # function ARN or name -> function
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._sequencer = itertools.count(int(time.time() * 1000) << 16)
        self._originals: dict[str, Any] = {}
        self._thread: threading.Thread | None = None

    # --- the hooks ----------------------------------------------------------------------------
    def install(self) -> None:
        from moto.s3 import notifications

        with _hook_lock:
            if self._originals:
                return
            self._originals = {
                "_invoke_awslambda": notifications._invoke_awslambda,
                "_get_s3_event": notifications._get_s3_event,
            }
            notifications._invoke_awslambda = self._invoke_awslambda
            notifications._get_s3_event = self._get_s3_event
        self._thread = threading.Thread(target=self._deliver_loop, name="s3-events", daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        from moto.s3 import notifications

        with _hook_lock:
            for name, original in self._originals.items():
                setattr(notifications, name, original)
            self._originals = {}

    def shutdown(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None)
            if self._thread is not None:
                self._thread.join(timeout)
        finally:
            self.uninstall()

    def register(self, function: LocalFunction, arn: str) -> None:
        """Deliver the notifications addressed to ``arn`` (the function's ARN) to ``function``."""
        with self._lock:
            self._functions[arn] = function
            self._functions[function.name] = function

    # --- what tests look at ---------------------------------------------------------------------
    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def wait_idle(self, timeout: float) -> None:
        """Wait until every delivery so far is done (TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        for delivery in self.deliveries:
            if not delivery.done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"S3 event for {delivery.keys} still being delivered")

    def redeliver(self, delivery: Delivery, *, wait: float | None = 30.0) -> Delivery:
        """Deliver the same event again (S3's at-least-once delivery); wait for it unless
        ``wait`` is None."""
        again = Delivery(delivery.function, copy.deepcopy(delivery.event))
        self._submit(again)
        if wait is not None and not again.done.wait(wait):
            raise TimeoutError(f"redelivery of {again.keys} not done after {wait} s")
        return again

    # --- delivery -------------------------------------------------------------------------------
    def _invoke_awslambda(
        self, account_id: str, event_body: Any, fn_arn: str, region_name: str
    ) -> None:
        with self._lock:
            function = self._functions.get(fn_arn)
        if function is None:
            self._originals["_invoke_awslambda"](account_id, event_body, fn_arn, region_name)
            return
        self._submit(Delivery(function.name, json.loads(json.dumps(event_body))))

    def _submit(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)
        self._queue.put(delivery)

    def _deliver_loop(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            with self._lock:
                function = self._functions.get(delivery.function)
            try:
                if function is None:
                    delivery.error = f"no function {delivery.function}"
                    continue
                for attempt in range(1 + ASYNC_RETRIES):
                    delivery.attempts = attempt + 1
                    try:
                        delivery.result = function.invoke(copy.deepcopy(delivery.event))
                        delivery.error = None
                        break
                    except Exception as exc:  # Lambda retries an asynchronous invocation
                        delivery.error = f"{type(exc).__name__}: {exc}"
                        logger.warning(
                            "%s failed on %s (attempt %d): %s",
                            function.name,
                            delivery.keys,
                            attempt + 1,
                            delivery.error,
                        )
                        if attempt < ASYNC_RETRIES:
                            time.sleep(self.retry_delay)
            finally:
                delivery.done.set()

    def _get_s3_event(
        self, event_name: str, bucket: Any, key: Any, notification_id: str
    ) -> dict[str, Any]:
        event: dict[str, Any] = self._originals["_get_s3_event"](
            event_name, bucket, key, notification_id
        )
        with self._lock:
            sequencer = f"{next(self._sequencer):018X}"
        for record in event.get("Records", []):
            obj = record["s3"]["object"]
            # moto defect: the key is quote_plus()-encoded with "/" as %2F; S3 encodes the key
            # the same way but leaves "/" as it is ("jobs/a+b.json" for "jobs/a b.json").
            obj["key"] = quote_plus(key.name, safe="/")
            obj["sequencer"] = sequencer
            version = getattr(key, "version_id", None)
            if version and version != "null":
                obj["versionId"] = version
        return event

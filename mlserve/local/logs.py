"""CloudWatch Logs subscriptions, locally: the deployed subscription filters deliver the log
lines they select to their destination function.

In Lambda, what a function writes to stdout goes to its log group, and a subscription filter on
the group delivers the matching events, batched, to its destination (a Lambda function invoked
with ``{"awslogs": {"data": base64(gzip(json))}}``). Here the functions run in this process: while
a function stand-in runs its handler (mlserve/local/functions.py), the lines its thread writes to
``sys.stdout`` belong to its log group (the deployed ``LoggingConfig.LogGroup``); a line that a
deployed filter of that group selects is queued for the filter's destination and not printed,
every other line is printed as before. A delivery thread invokes the destination stand-in with the
queued lines every :data:`DELIVERY_INTERVAL_SECONDS` (CloudWatch Logs delivers within seconds),
and :meth:`LocalLogDelivery.flush` delivers at once (tests, the demo).

Filter patterns: only the JSON form ``{ $.field = value }`` (a number or a quoted string), the one
the program deploys; any other pattern stops the emulator's start with a message (moto stores
filters but does not evaluate them for Lambda destinations run here).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from mlserve.local.aws import ACCOUNT_ID
from runtime.capture import encode_subscription_event

if TYPE_CHECKING:
    from mlserve.local.functions import LocalFunction

DELIVERY_INTERVAL_SECONDS: Final = 0.5
DELIVERY_ATTEMPTS: Final = 3  # Lambda's asynchronous invocation: the first try and two retries
_JSON_EQUALS = re.compile(
    r"\{\s*\$\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>-?[0-9.]+|\"[^\"]*\")\s*\}"
)

_current = threading.local()
_delivery: LocalLogDelivery | None = None  # the installed one (one emulator per process)


@contextlib.contextmanager
def function_log(group: str | None) -> Iterator[None]:
    """While this runs, the calling thread's stdout lines belong to log group ``group``.

    ``sys.stdout`` is wrapped here, at the invocation, when a delivery has filters for the
    group: whoever replaced it meanwhile (a test runner capturing output) keeps getting every
    line no filter takes."""
    delivery = _delivery
    if (
        group is not None
        and delivery is not None
        and delivery.subscribed(group)
        and not isinstance(sys.stdout, _Stdout)
    ):
        sys.stdout = _Stdout(sys.stdout, delivery)
    previous = getattr(_current, "group", None)
    _current.group = group
    try:
        yield
    finally:
        _current.group = previous
        pending, _current.pending = getattr(_current, "pending", ""), ""
        if pending:  # a last line without its newline: printed, as Lambda logs it
            out = sys.stdout
            (out.wrapped if isinstance(out, _Stdout) else out).write(pending + "\n")


@dataclass(frozen=True)
class JsonEquals:
    """``{ $.field = value }``: the event is a JSON object whose ``field`` equals ``value``."""

    field: str
    value: Any

    @classmethod
    def parse(cls, pattern: str) -> JsonEquals:
        match = _JSON_EQUALS.fullmatch(pattern.strip())
        if match is None:
            raise ValueError(
                f"log subscription filter pattern {pattern!r}: the local log delivery evaluates "
                "only the JSON form { $.field = value }"
            )
        return cls(match["field"], json.loads(match["value"]))

    def matches(self, line: str) -> bool:
        text = line.strip()
        if not text.startswith("{") or f'"{self.field}"' not in text:
            return False
        try:
            event = json.loads(text)
        except ValueError:
            return False
        return isinstance(event, dict) and event.get(self.field) == self.value


@dataclass
class Subscription:
    name: str
    group: str
    pattern: JsonEquals
    destination: LocalFunction
    pending: list[dict[str, Any]] = field(default_factory=list)


class _Stdout:
    """``sys.stdout`` while the delivery is installed: routes function threads' lines."""

    def __init__(self, real: TextIO, delivery: LocalLogDelivery) -> None:
        self._real = real
        self._delivery = delivery

    def write(self, text: str) -> int:
        group = getattr(_current, "group", None)
        if group is None or not self._delivery.subscribed(group):
            return self._real.write(text)
        buffered = getattr(_current, "pending", "") + text
        *lines, rest = buffered.split("\n")
        _current.pending = rest
        for line in lines:
            if not self._delivery.offer(group, line):
                self._real.write(line + "\n")
        return len(text)

    @property
    def wrapped(self) -> TextIO:
        return self._real

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class LocalLogDelivery:
    """The deployed subscription filters, delivering to their destination stand-ins."""

    def __init__(self, interval: float = DELIVERY_INTERVAL_SECONDS) -> None:
        self._interval = interval
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0  # events delivered so far
        self.failed = 0  # events dropped after DELIVERY_ATTEMPTS

    def install(self) -> None:
        global _delivery  # noqa: PLW0603 - one emulator per process
        _delivery = self
        self._thread = threading.Thread(target=self._run, name="log-delivery", daemon=True)
        self._thread.start()

    def register(
        self, filter_name: str, group: str, pattern: str, destination: LocalFunction
    ) -> None:
        subscription = Subscription(filter_name, group, JsonEquals.parse(pattern), destination)
        with self._lock:
            self._subscriptions.setdefault(group, []).append(subscription)

    def subscribed(self, group: str) -> bool:
        return group in self._subscriptions

    def offer(self, group: str, line: str) -> bool:
        """Queue ``line`` for every filter of ``group`` that selects it; True when one did."""
        taken = False
        now = int(time.time() * 1000)
        with self._lock:
            for subscription in self._subscriptions.get(group, ()):
                if subscription.pattern.matches(line):
                    event = {"id": uuid.uuid4().hex, "timestamp": now, "message": line}
                    subscription.pending.append(event)
                    taken = True
        return taken

    def flush(self) -> None:
        """Deliver every queued line now."""
        with self._deliver_lock:
            with self._lock:
                batches = [(s, s.pending) for subs in self._subscriptions.values() for s in subs]
                for subscription, _ in batches:
                    subscription.pending = []
            for subscription, events in batches:
                if events:
                    self._deliver(subscription, events)

    def _deliver(self, subscription: Subscription, events: list[dict[str, Any]]) -> None:
        payload = {
            "messageType": "DATA_MESSAGE",
            "owner": ACCOUNT_ID,
            "logGroup": subscription.group,
            "logStream": "local",
            "subscriptionFilters": [subscription.name],
            "logEvents": events,
        }
        event = encode_subscription_event(payload)
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                subscription.destination.invoke(event)
            except Exception as exc:  # Lambda retries an asynchronous invocation twice
                if attempt == DELIVERY_ATTEMPTS:
                    self.failed += len(events)
                    print(
                        f"log delivery to {subscription.destination.name} failed "
                        f"({len(events)} events dropped): {exc}",
                        file=sys.stderr,
                    )
            else:
                self.delivered += len(events)
                return

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def shutdown(self) -> None:
        """Deliver what is queued, stop the delivery thread, give stdout back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):
            self.flush()
        global _delivery  # noqa: PLW0603
        if _delivery is self:
            _delivery = None
        while isinstance(sys.stdout, _Stdout):
            sys.stdout = sys.stdout.wrapped

"""The local log delivery (mlserve/local/logs.py): the deployed subscription filter's lines reach
its destination function, batched as CloudWatch Logs sends them; every other line is printed."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlserve.local.logs import JsonEquals, LocalLogDelivery, function_log
from runtime import contract
from runtime.capture import decode_subscription_event


@dataclass
class Destination:
    name: str = "capture"
    events: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0

    def invoke(self, event: dict[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("throttled")
        self.events.append(decode_subscription_event(event))


def test_only_the_json_equality_form_is_evaluated() -> None:
    pattern = JsonEquals.parse(contract.CAPTURE_FILTER_PATTERN)
    assert pattern.matches('{"mlserve_capture":1,"x":2}')
    assert not pattern.matches('{"mlserve_capture":2}')
    assert not pattern.matches("mlserve_capture 1")
    assert JsonEquals.parse('{ $.kind = "capture" }').matches('{"kind": "capture"}')
    with pytest.raises(ValueError, match=r"only the JSON form"):
        JsonEquals.parse("[ip, user]")


def test_selected_lines_are_delivered_and_the_others_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    delivery = LocalLogDelivery(interval=3600)  # delivered by flush() only
    destination = Destination(failures=1)  # the first attempt fails: retried
    delivery.register("filter", "predictor-logs", contract.CAPTURE_FILTER_PATTERN, destination)
    delivery.install()
    try:
        with function_log("predictor-logs"):
            sys.stdout.write('{"mlserve_capture":1,"n":1}\n')
            print('{"_aws": {}, "PredictRows": [1]}')
            sys.stdout.write('{"mlserve_capture":1,')
            sys.stdout.write('"n":2}\n{"mlserve_capture":1,"n":3}\n')
            sys.stdout.write("no newline at the end")
        with function_log("another-group"):
            print('{"mlserve_capture":1,"n":4}')  # no filter on this group: printed
        delivery.flush()
    finally:
        delivery.shutdown()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        '{"_aws": {}, "PredictRows": [1]}',
        "no newline at the end",
        '{"mlserve_capture":1,"n":4}',
    ]
    (payload,) = destination.events
    assert payload["logGroup"] == "predictor-logs"
    assert payload["subscriptionFilters"] == ["filter"]
    assert [e["message"] for e in payload["logEvents"]] == [
        '{"mlserve_capture":1,"n":1}',
        '{"mlserve_capture":1,"n":2}',
        '{"mlserve_capture":1,"n":3}',
    ]
    assert (delivery.delivered, delivery.failed) == (3, 0)

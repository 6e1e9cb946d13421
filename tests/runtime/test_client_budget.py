"""A function behind API Gateway gives up on a failing AWS call sooner than a background one.

The job API has 10 s (components/ecs.job_api_timeout). Its clients were configured with
botocore's ``max_attempts: 4``, which counts retries only: five attempts, up to 1 + 2 + 4 + 8 s
of backoff, so a DynamoDB throttled for good timed the function out and the caller got API
Gateway's 502 instead of the job API's 503 with the reason.
"""

from __future__ import annotations

from typing import Any

import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse

from components.ecs import JOB_API_MIN_TIMEOUT_SECONDS
from runtime.context import BACKGROUND, INTERACTIVE, ClientBudget
from runtime.handlers import jobs, predict, steps


class _Raw:
    def stream(self, **_: Any) -> Any:
        yield b'{"__type": "ProvisionedThroughputExceededException", "message": "slow down"}'


def _attempts(client: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many times ``client`` sends a GetItem that is always throttled."""
    sent = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda _: None)  # no real backoff

    def throttled(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        headers = {"x-amzn-ErrorType": "ProvisionedThroughputExceededException"}
        return AWSResponse(request.url, 400, headers, _Raw())

    client.meta.events.register("before-send", throttled)
    with pytest.raises(client.exceptions.ProvisionedThroughputExceededException):
        client.get_item(TableName="jobs", Key={"job_id": {"S": "j"}})
    return len(sent)


def _worst_backoff(budget: ClientBudget) -> int:
    """botocore's standard mode: the wait before attempt n + 1 is at most 2 ** (n - 1) s."""
    return sum(2 ** (n - 1) for n in range(1, budget.total_attempts))


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_the_api_functions_give_up_within_their_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    for handler in (jobs, predict):
        client = handler.configure({}).client("dynamodb")
        assert _attempts(client, monkeypatch) == INTERACTIVE.total_attempts
    assert _worst_backoff(INTERACTIVE) + INTERACTIVE.read_timeout < JOB_API_MIN_TIMEOUT_SECONDS


def test_background_functions_retry_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    client = steps.configure({}).client("dynamodb")
    assert _attempts(client, monkeypatch) == BACKGROUND.total_attempts > INTERACTIVE.total_attempts

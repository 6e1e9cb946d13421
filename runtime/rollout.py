"""Two model versions behind one endpoint (issue 17): who answers a request, who else scores it.

- ``split``: ``CANARY_PERCENT`` % of the requests are answered by the canary, the rest by the
  stable model.
- ``shadow``: every request is answered by the stable model; ``CANARY_PERCENT`` % of them are also
  scored by the canary, whose predictions are captured (runtime/capture.py), never returned.

The assignment is deterministic: a hash of the request's key (the ``x-request-id`` header when the
client sends one, so its retries keep their version; else API Gateway's request id), so the same
key always lands on the same side. The ``x-model-version`` header pins a version (the stable or
the canary one): that version alone answers, whatever the mode. The capture sample
(``CAPTURE_SAMPLE_PERCENT``) hashes the same key with another salt, independently of the canary
assignment.

The job architectures (lambda-ecs, stepfunctions-ecs, stepfunctions-batch) decide once, when a job
is created, which version scores it (:meth:`Rollout.version`, keyed by the job: see
runtime/handlers/jobs.py and runtime/handlers/trigger.py) and record it in the job record; their
rollout is always ``split`` (a shadow canary is the lambda predictor's alone). Nothing here imports
Pulumi or touches AWS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from runtime import contract
from runtime.capture import sampled
from runtime.payload import PayloadError

CANARY_SALT: Final = "canary"
CAPTURE_SALT: Final = "capture"


UNKNOWN_MODEL_VERSION: Final = "unknown_model_version"


class UnknownVersion(PayloadError):
    """A pinned version (the ``x-model-version`` header; a batch job config's ``model_version``:
    ``where``) naming no version this endpoint serves: a 400 (a rejected job config)."""

    def __init__(
        self, asked: str, versions: Sequence[str], where: str = contract.MODEL_VERSION_HEADER
    ) -> None:
        super().__init__(
            UNKNOWN_MODEL_VERSION,
            f"{where}: {asked!r} is not a version this endpoint serves; "
            f"allowed: {', '.join(versions)}",
        )


@dataclass(frozen=True)
class Plan:
    """Who answers one request (``answer``: an index into the versions, 0 the stable one), who
    also scores it in shadow (``shadow``: None or 1), whether its record is captured."""

    answer: int
    shadow: int | None
    capture: bool


# Every plan there is, built once: a plan per request would cost a frozen dataclass's __init__.
_PLANS: Final = {
    (answer, shadow, captured): Plan(answer, shadow, captured)
    for answer in (0, 1)
    for shadow in (None, 1)
    for captured in (False, True)
}


@dataclass(frozen=True)
class Rollout:
    versions: tuple[str, ...]  # (stable,) or (stable, canary)
    canary_percent: int = 0
    mode: str = contract.CANARY_SPLIT
    capture_percent: int = 0

    def plan(self, key: str, pinned: str | None = None) -> Plan:
        if pinned is not None:
            if pinned not in self.versions:
                raise UnknownVersion(pinned, self.versions)
            return _PLANS[self.versions.index(pinned), None, self._captured(key)]
        in_canary = len(self.versions) > 1 and sampled(key, self.canary_percent, CANARY_SALT)
        if in_canary and self.mode == contract.CANARY_SHADOW:
            return _PLANS[0, 1, True]  # a shadow score is recorded: always captured
        return _PLANS[1 if in_canary else 0, None, self._captured(key)]

    def version(
        self, key: str, pinned: str | None = None, where: str = contract.MODEL_VERSION_HEADER
    ) -> str:
        """The version that answers (a job: scores) the request ``key``: the pinned one, else
        the split's choice (a shadow canary never answers). Raises :class:`UnknownVersion`."""
        if pinned is not None and pinned not in self.versions:
            raise UnknownVersion(pinned, self.versions, where)
        return self.versions[self.plan(key, pinned).answer]

    def _captured(self, key: str) -> bool:
        return sampled(key, self.capture_percent, CAPTURE_SALT)


def rollout_headers(headers: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """(``x-request-id``, ``x-model-version``) of a request's headers (any case), in one pass."""
    key = pinned = None
    if headers:
        for name, value in headers.items():
            lower = name.lower()
            if lower == contract.REQUEST_ID_HEADER:
                key = value
            elif lower == contract.MODEL_VERSION_HEADER:
                pinned = value
    return key, pinned

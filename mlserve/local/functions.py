"""Lambda functions, in-process: the real handler, its environment, a Lambda-like context.

A :class:`LocalFunction` is what the Pulumi program deploys as an ``aws.lambda_.Function``: a
handler, the environment variables it is given, a memory size and a timeout. Locally the handler
module is imported into this process; ``configure(env=...)`` stands in for the function's
environment, and calling it again stands in for a new execution environment (a cold start).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.local import recorder
from mlserve.local.aws import ACCOUNT_ID, REGION
from runtime import contract
from runtime.categories import UNKNOWN_CATEGORY_MODES, UNKNOWN_ERROR

Handler = Callable[[dict[str, Any], Any], Any]
Configure = Callable[..., object]
MAX_SYNC_WAIT_SECONDS = 25  # mlserve:syncWaitSeconds: default and most (Pulumi.yaml)


@dataclass(frozen=True)
class RuntimeSettings:
    """The function settings a user changes with ``pulumi config set`` (and ``reconfigure``)."""

    allow_missing: bool = False
    max_rows: int = contract.DEFAULT_MAX_ROWS
    # lambda-ecs: how long POST /predict waits for the task (mlserve:syncWaitSeconds, 0-25)
    sync_wait_seconds: int = MAX_SYNC_WAIT_SECONDS
    # the scoring image (mlserve:image); None: the one built from images/scoring
    image: str | None = None
    # mlserve:unknownCategory: "error" (a 400) or "missing"
    unknown_category: str = UNKNOWN_ERROR

    def __post_init__(self) -> None:
        if self.unknown_category not in UNKNOWN_CATEGORY_MODES:
            raise ValueError(
                f"unknown_category must be one of {', '.join(UNKNOWN_CATEGORY_MODES)}, got "
                f"{self.unknown_category!r}"
            )
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        if not 0 <= self.sync_wait_seconds <= MAX_SYNC_WAIT_SECONDS:
            raise ValueError(
                f"sync_wait_seconds must be 0-{MAX_SYNC_WAIT_SECONDS} (API Gateway answers "
                f"within 29 s), got {self.sync_wait_seconds}"
            )


@dataclass
class LambdaContext:
    """The attributes of the context object the Lambda Python runtime passes to a handler."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """One deployed function. Invocations are serialised, like one warm execution environment:
    the handler modules keep per-container state (the Powertools resolver's current event, the
    loaded model) in module globals, exactly as they may inside Lambda."""

    name: str
    handler: Handler
    configure: Configure
    environment: Callable[[RuntimeSettings], Mapping[str, str]]
    memory_mb: int = 1024
    timeout_seconds: int = 30
    env: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cold_start(self, settings: RuntimeSettings, scratch: Path) -> None:
        """Give the function its environment and a fresh execution environment (new /tmp)."""
        tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=scratch))
        env = {**self.environment(settings), contract.ENV_MODEL_CACHE_DIR: str(tmp)}
        with self._lock:
            self.configure(env=env)
            self.env = env

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.name, self.memory_mb, self.timeout_seconds)
        with self._lock, recorder.acting_as("function", self.name):
            return self.handler(event, context)


# operationId (runtime/openapi.yaml) -> the function API Gateway integrates it with
Routes = dict[str, LocalFunction]

"""Lambda functions, in-process: the deployed handler, its environment, a Lambda-like context.

A :class:`LocalFunction` stands in for one function the program deployed (``Handler``,
``Environment``, ``MemorySize``, ``Timeout`` read back from the embedded Lambda). Locally the
handler module is imported into this process; ``configure(env=...)`` stands in for the
function's environment, and calling it again stands in for a new execution environment (a cold
start).
"""

from __future__ import annotations

import importlib
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
from mlserve.local.logs import function_log
from runtime import contract
from runtime.categories import UNKNOWN_ERROR
from runtime.context import ENV_LAMBDA_FUNCTION_NAME

Handler = Callable[[dict[str, Any], Any], Any]
Configure = Callable[..., object]


@dataclass
class HandlerModule:
    """A handler module imported into this process. Its globals (the runtime context, caches)
    hold one function's environment at a time, while in AWS every function has its own: two
    functions of a stack with the same module (the job APIs of two architectures, the step
    functions) take turns, and a function whose deployed variables differ from those the module
    holds configures it again before it runs (a cold start of its own environment)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    environment: Mapping[str, str] | None = None  # the deployed variables its globals hold


_modules: dict[str, HandlerModule] = {}
_modules_lock = threading.Lock()


def handler_module(name: str) -> HandlerModule:
    with _modules_lock:
        return _modules.setdefault(name, HandlerModule())


@dataclass(frozen=True)
class RuntimeSettings:
    """The deployed stack settings the runtime reads (``pulumi config set`` changes them; the
    program validates them): what :meth:`mlserve.local.Emulator.reconfigure` changes."""

    allow_missing: bool = False
    max_rows: int = contract.DEFAULT_MAX_ROWS
    sync_wait_seconds: int = 25  # mlserve:syncWaitSeconds (Pulumi.yaml)
    image: str | None = None  # mlserve:image; None: the one built from images/scoring
    unknown_category: str = UNKNOWN_ERROR

    @classmethod
    def of(cls, config: Mapping[str, str]) -> RuntimeSettings:
        """These settings in a deployed stack's configuration (``mlserve:<key>`` -> text)."""
        return cls(
            allow_missing=config["mlserve:allowMissing"] == "true",
            max_rows=int(config["mlserve:maxRows"]),
            sync_wait_seconds=int(config["mlserve:syncWaitSeconds"]),
            image=config["mlserve:image"] or None,
            unknown_category=config["mlserve:unknownCategory"],
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


class FunctionTimedOut(Exception):
    """The handler ran past the function's deployed timeout (Lambda: "Task timed out")."""


@dataclass
class LocalFunction:
    """One deployed function: its deployed handler, environment, memory and timeout.
    Invocations are serialised, like one warm execution environment: the handler modules keep
    per-container state (the Powertools resolver's current event, the loaded model) in module
    globals, exactly as they may inside Lambda. Functions of the same handler module take turns
    (:class:`HandlerModule`)."""

    name: str
    handler: Handler
    configure: Configure
    environment: Mapping[str, str]
    memory_mb: int = 1024
    timeout_seconds: int = 30
    arn: str = ""
    # the deployed LoggingConfig.LogGroup (else Lambda's default /aws/lambda/<name>): where
    # what the handler writes to stdout goes (mlserve/local/logs.py)
    log_group: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # the module its handler lives in, shared with every function of the same module
    module: HandlerModule = field(default_factory=HandlerModule, repr=False)

    @classmethod
    def deployed(cls, configuration: Mapping[str, Any]) -> LocalFunction:
        """The stand-in of a deployed function (its GetFunctionConfiguration): the module its
        ``Handler`` names (``package.module.function``), whose ``configure(env=...)`` stands in
        for the execution environment's variables."""
        module_name, _, attribute = str(configuration["Handler"]).rpartition(".")
        module = importlib.import_module(module_name)
        return cls(
            name=str(configuration["FunctionName"]),
            handler=getattr(module, attribute),
            configure=module.configure,
            environment=dict((configuration.get("Environment") or {}).get("Variables") or {}),
            memory_mb=int(configuration["MemorySize"]),
            timeout_seconds=int(configuration["Timeout"]),
            arn=str(configuration["FunctionArn"]),
            module=handler_module(module_name),
            log_group=str(
                (configuration.get("LoggingConfig") or {}).get("LogGroup")
                or f"/aws/lambda/{configuration['FunctionName']}"
            ),
        )

    def cold_start(self, scratch: Path) -> None:
        """Give the function its environment and a fresh execution environment (new /tmp)."""
        tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=scratch))
        # Lambda adds its reserved variables to the function's: the name is one the runtime reads
        env = {
            **self.environment,
            ENV_LAMBDA_FUNCTION_NAME: self.name,
            contract.ENV_MODEL_CACHE_DIR: str(tmp),
        }
        with self.module.lock:
            self.configure(env=env)
            self.env = env
            self.module.environment = self.environment

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler; past the deployed timeout, :class:`FunctionTimedOut` (the handler's
        thread is left to finish: a thread cannot be killed; Lambda would end the sandbox)."""
        outcome: dict[str, Any] = {}
        started = threading.Event()

        def run() -> None:
            with (
                self.module.lock,
                recorder.acting_as("function", self.name),
                function_log(self.log_group or None),
            ):
                if self.module.environment != self.environment:  # another function's
                    self.configure(env=self.env)
                    self.module.environment = self.environment
                # the clock starts with the handler: waiting for this one environment stands
                # in for Lambda starting another one, which costs the request no timeout
                context = LambdaContext(self.name, self.memory_mb, self.timeout_seconds)
                started.set()
                try:
                    outcome["result"] = self.handler(event, context)
                except BaseException as exc:  # re-raised in the invoking thread
                    outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"lambda-{self.name}", daemon=True)
        worker.start()
        started.wait()
        worker.join(self.timeout_seconds)
        if worker.is_alive():
            raise FunctionTimedOut(f"Task timed out after {self.timeout_seconds:.2f} seconds")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")


# operationId (runtime/openapi.yaml) -> the function API Gateway integrates it with
Routes = dict[str, LocalFunction]

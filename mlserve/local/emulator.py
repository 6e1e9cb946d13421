"""The local emulator: the embedded AWS, the shared stores, the architectures, the gateway.

    with Emulator().start(architecture="lambda") as emu:
        requests.post(f"{emu.url}/predict", json=..., headers={"x-api-key": emu.api_key})

ECS tasks (``lambda-ecs``, ``stepfunctions-ecs``) run as local processes of the real scoring
entrypoint (mlserve.local.fargate); ``task_start_delay`` makes them start as late as Fargate
tasks do. Step Functions executions (``stepfunctions-ecs``) run in moto's state machine engine,
their Lambda tasks in this process (mlserve.local.stepfunctions). ``stepfunctions-batch``: AWS
Batch jobs run as local processes too, array children in parallel up to the core count
(mlserve.local.batch), and a job config uploaded to ``jobs/*.json`` of the bucket reaches the
trigger handler as an S3 event (mlserve.local.notifications).

One emulator runs per process at a time: the AWS environment variables and the handler modules
(each with its one configured runtime context) are process-wide, as they are in a Lambda
execution environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import string
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from mlserve.local import recorder
from mlserve.local.architectures import (
    ARCHITECTURES,
    LOCAL_POLL_INTERVAL_SECONDS,
    POLLING_LAMBDA,
    ArchitectureOptions,
    SettingsListener,
    StackContext,
    parse_architectures,
)
from mlserve.local.aws import EnvironmentPatch, MotoServer
from mlserve.local.batch import LocalBatch, LocalBatchJob
from mlserve.local.fargate import LocalFargate, LocalTask
from mlserve.local.functions import MAX_SYNC_WAIT_SECONDS, LocalFunction, Routes, RuntimeSettings
from mlserve.local.gateway import ApiSpec, Gateway
from mlserve.local.notifications import LocalS3Notifications
from mlserve.local.stepfunctions import LocalStepFunctions
from mlserve.local.stores import ModelArtifact, SharedStores, provision_shared_stores
from runtime import contract
from runtime.categories import UNKNOWN_ERROR

API_AUTH_MODES = ("api-key", "none")
DEFAULT_MODEL_DIR = Path("models/example")


def new_api_key() -> str:
    """40 letters and digits, the shape of an API Gateway key value."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40))


class Emulator:
    _active: ClassVar[Emulator | None] = None
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._aws: MotoServer | None = None
        self._gateway: Gateway | None = None
        self._stores: SharedStores | None = None
        self._fargate: LocalFargate | None = None
        self._stepfunctions: LocalStepFunctions | None = None
        self._batch: LocalBatch | None = None
        self._notifications: LocalS3Notifications | None = None
        self._routes: Routes = {}
        self._other_functions: list[LocalFunction] = []
        self._on_settings: list[SettingsListener] = []
        self._outputs: dict[str, str] = {}
        self.options = ArchitectureOptions()
        self._settings = RuntimeSettings()
        self._scratch: Path | None = None
        self._env = EnvironmentPatch()
        self.architectures: tuple[str, ...] = ()
        self.api_auth = "api-key"

    # --- lifecycle -------------------------------------------------------------------------------
    def start(
        self,
        architecture: str = contract.ARCH_LAMBDA,
        *,
        api_auth: str = "api-key",
        model_dir: Path = DEFAULT_MODEL_DIR,
        port: int = 0,
        allow_missing: bool = False,
        max_rows: int = contract.DEFAULT_MAX_ROWS,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        model_name: str | None = None,
        emit_metrics: bool = False,
        sync_wait_seconds: int = MAX_SYNC_WAIT_SECONDS,
        image: str | None = None,
        task_start_delay: float = 0.0,
        task_log_dir: Path | None = None,
        polling: str = POLLING_LAMBDA,
        poll_interval_seconds: int = LOCAL_POLL_INTERVAL_SECONDS,
        batch_max_parallel: int | None = None,
        engine: str = contract.ENGINE_XGBOOST,
        unknown_category: str = UNKNOWN_ERROR,
    ) -> Emulator:
        """Provision everything and serve the API; return ``self`` (also a context manager).

        ``architecture`` is one registered name or a comma-separated list. ``emit_metrics``
        leaves Powertools' EMF metric lines on stdout (off by default: one JSON blob per request
        would drown the demo's output; CloudWatch is where they matter).

        ECS architectures: ``sync_wait_seconds`` and ``image`` are the stack settings
        ``syncWaitSeconds`` and ``image`` (only the scoring image of this working tree can be
        "pulled" locally; any other image makes every task stop with CannotPullContainerError,
        as on ECS). ``task_start_delay`` is how long a task stays PROVISIONING/PENDING before
        its process starts (Fargate takes tens of seconds; 0 here by default).
        ``task_log_dir`` keeps the task logs there (default: the scratch directory, removed
        by :meth:`stop`).

        ``stepfunctions-ecs``: ``polling`` is the stack setting ``polling`` (``lambda``: Wait +
        the CheckJobStatus Lambda in a loop; ``native``: ``ecs:runTask.sync``) and
        ``poll_interval_seconds`` its ``pollIntervalSeconds`` (1 s locally by default).

        ``stepfunctions-batch``: the same two settings; Batch jobs (array children) run as
        local processes, at most ``batch_max_parallel`` at a time (default: the core count).

        ``engine`` is the stack setting ``engine`` (``onnx``: the ``lambda`` predictor serves the
        model converted and verified at start, uploaded as ``model.onnx``).
        ``unknown_category`` is ``unknownCategory``. ``model_dir`` holds ``model.ubj`` or
        ``model.json`` (with or without ``metadata.json``); a model mlserve cannot serve stops
        the start with components.compatibility.ModelRefused (or, with the onnx engine,
        components.engine.EngineConversionError), naming why.
        """
        names = parse_architectures(architecture)
        if api_auth not in API_AUTH_MODES:
            raise ValueError(
                f"api_auth {api_auth!r} is not emulated (choose from {', '.join(API_AUTH_MODES)})"
            )
        if task_start_delay < 0:
            raise ValueError(f"task_start_delay must be >= 0, got {task_start_delay}")
        options = ArchitectureOptions(
            polling=polling, poll_interval_seconds=poll_interval_seconds, engine=engine
        )
        settings = RuntimeSettings(
            allow_missing=allow_missing,
            unknown_category=unknown_category,
            max_rows=max_rows,
            sync_wait_seconds=sync_wait_seconds,
            image=image,
        )
        model = ModelArtifact.from_dir(Path(model_dir), model_name)
        with Emulator._active_lock:
            if Emulator._active is not None:
                raise RuntimeError(
                    "an Emulator is already running in this process; stop it first (the AWS "
                    "environment and the handler modules are process-wide)"
                )
            Emulator._active = self
        try:
            self._start(
                names,
                model,
                settings,
                api_auth=api_auth,
                host=host,
                port=port,
                api_key=api_key,
                emit_metrics=emit_metrics,
                task_start_delay=task_start_delay,
                task_log_dir=task_log_dir,
                options=options,
                batch_max_parallel=batch_max_parallel,
            )
            recorder.deployed(self)  # MLSERVE_RECORD_CALLS: tests/verify/test_least_privilege
        except BaseException:
            self.stop()
            raise
        return self

    def _start(
        self,
        names: tuple[str, ...],
        model: ModelArtifact,
        settings: RuntimeSettings,
        *,
        api_auth: str,
        host: str,
        port: int,
        api_key: str | None,
        emit_metrics: bool,
        task_start_delay: float,
        task_log_dir: Path | None,
        options: ArchitectureOptions,
        batch_max_parallel: int | None = None,
    ) -> None:
        self.architectures = names
        self.options = options
        self.api_auth = api_auth
        self._settings = settings
        self._scratch = Path(tempfile.mkdtemp(prefix="mlserve-local-"))
        if "POWERTOOLS_METRICS_DISABLED" not in os.environ or emit_metrics:
            self._env.apply({"POWERTOOLS_METRICS_DISABLED": "false" if emit_metrics else "true"})

        self._aws = MotoServer(host=host)
        self._aws.start()
        self._fargate = LocalFargate(
            endpoint_url=self._aws.endpoint_url,
            work_dir=self._scratch / "fargate",
            task_start_delay=task_start_delay,
            log_dir=task_log_dir,
        )
        self._fargate.install()
        if any(name.startswith("stepfunctions-") for name in names):
            self._stepfunctions = LocalStepFunctions()
            self._stepfunctions.install()
        if contract.ARCH_STEPFUNCTIONS_BATCH in names:
            self._batch = LocalBatch(
                endpoint_url=self._aws.endpoint_url,
                work_dir=self._scratch / "batch",
                max_parallel=batch_max_parallel,
                log_dir=None if task_log_dir is None else task_log_dir / "batch",
            )
            self._batch.install()
            self._notifications = LocalS3Notifications()
            self._notifications.install()
        self._stores = provision_shared_stores(
            self._aws.client("s3"), self._aws.client("dynamodb"), model
        )
        context = StackContext(
            self._aws,
            self._stores,
            self._scratch,
            stepfunctions=self._stepfunctions,
            notifications=self._notifications,
            options=options,
            settings=settings,
        )
        routes: Routes = {}
        for name in names:
            # the first architecture serving an operation gets it, as in __main__.py
            for operation_id, function in ARCHITECTURES[name](context).items():
                routes.setdefault(operation_id, function)
        self._routes = routes
        self._other_functions = list(context.functions)
        self._on_settings = list(context.on_settings)
        self._outputs = dict(context.outputs)
        for function in self.functions:
            function.cold_start(settings, self._scratch)

        key = (api_key or new_api_key()) if api_auth == "api-key" else None
        self._gateway = Gateway(ApiSpec.load(), routes, api_key=key, host=host, port=port)
        self._gateway.start()

    def reconfigure(
        self,
        *,
        allow_missing: bool | None = None,
        max_rows: int | None = None,
        sync_wait_seconds: int | None = None,
        image: str | None = None,
        default_image: bool = False,
    ) -> None:
        """Change stack settings, like ``pulumi config set`` + ``pulumi up``: every function
        gets the new environment in a fresh execution environment (cold start, empty /tmp), and
        a setting of the scoring task (image, allow_missing) registers a new task definition
        revision (and a state machine definition that names it is updated).
        ``default_image=True`` goes back to the scoring image of images/scoring."""
        if self._scratch is None:
            raise RuntimeError("the emulator is not running")
        current = self._settings
        self._settings = RuntimeSettings(
            allow_missing=current.allow_missing if allow_missing is None else allow_missing,
            unknown_category=current.unknown_category,
            max_rows=current.max_rows if max_rows is None else max_rows,
            sync_wait_seconds=(
                current.sync_wait_seconds if sync_wait_seconds is None else sync_wait_seconds
            ),
            image=None if default_image else (current.image if image is None else image),
        )
        for function in self.functions:
            function.cold_start(self._settings, self._scratch)
        for listener in self._on_settings:
            listener(self._settings)

    def stop(self) -> None:
        """Stop the API, stop and reap every task process, stop the embedded AWS, clean up."""
        gateway, self._gateway = self._gateway, None
        stepfunctions, self._stepfunctions = self._stepfunctions, None
        batch, self._batch = self._batch, None
        notifications, self._notifications = self._notifications, None
        fargate, self._fargate = self._fargate, None
        aws, self._aws = self._aws, None
        scratch, self._scratch = self._scratch, None
        try:
            if gateway is not None:
                gateway.stop()
        finally:
            try:
                # S3 events first (they start executions), then executions (they start or
                # poll tasks and jobs)
                if notifications is not None:
                    notifications.shutdown()
                if stepfunctions is not None:
                    stepfunctions.shutdown()
                if batch is not None:
                    batch.shutdown()
                if fargate is not None:
                    fargate.shutdown()
                if aws is not None:
                    aws.stop()
            finally:
                self._env.restore()
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
                with Emulator._active_lock:
                    if Emulator._active is self:
                        Emulator._active = None

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what a stack exports --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._gateway is not None

    @property
    def url(self) -> str:
        """The API's invoke URL (``apiUrl``): ``http://127.0.0.1:PORT/v1``."""
        return self._require(self._gateway).url

    @property
    def port(self) -> int:
        return self._require(self._gateway).port

    @property
    def api_key(self) -> str | None:
        """The API key value (``apiKey``), None when ``api_auth`` is ``none``."""
        return self._require(self._gateway).api_key

    @property
    def api_key_id(self) -> str:
        """The id of :attr:`api_key`: what API Gateway puts in ``requestContext.identity``
        (the job API records it as the caller of the jobs submitted with the key)."""
        return self._require(self._gateway).api.api_key_id

    def add_api_key(self) -> str:
        """A second API key of the usage plan (another client, with its own jobs); its value."""
        value = new_api_key()
        self._require(self._gateway).add_api_key(value)
        return value

    @property
    def endpoint_url(self) -> str:
        """The embedded AWS endpoint (``AWS_ENDPOINT_URL`` while the emulator runs)."""
        return self._require(self._aws).endpoint_url

    @property
    def stores(self) -> SharedStores:
        return self._require(self._stores)

    @property
    def bucket(self) -> str:
        return self.stores.bucket

    @property
    def table(self) -> str:
        return self.stores.table

    @property
    def model(self) -> ModelArtifact:
        return self.stores.model

    @property
    def model_uri(self) -> str:
        return self.stores.model_uri

    @property
    def settings(self) -> RuntimeSettings:
        return self._settings

    # --- ECS tasks (lambda-ecs) ----------------------------------------------------------------
    @property
    def fargate(self) -> LocalFargate:
        """The local Fargate behind the embedded ECS: its tasks, their processes and logs."""
        return self._require(self._fargate)

    @property
    def tasks(self) -> list[LocalTask]:
        """Every task RunTask started, in start order."""
        return self.fargate.tasks

    @property
    def task_start_delay(self) -> float:
        return self.fargate.task_start_delay

    @task_start_delay.setter
    def task_start_delay(self, seconds: float) -> None:
        """Seconds a task started from now on stays PROVISIONING/PENDING before its process."""
        if seconds < 0:
            raise ValueError(f"task_start_delay must be >= 0, got {seconds}")
        self.fargate.task_start_delay = seconds

    @property
    def routes(self) -> Routes:
        return dict(self._routes)

    @property
    def functions(self) -> list[LocalFunction]:
        """Every deployed function: those behind the API, then those other services invoke."""
        unique: dict[int, LocalFunction] = {}
        for function in [*self._routes.values(), *self._other_functions]:
            unique.setdefault(id(function), function)
        return list(unique.values())

    # --- Step Functions (stepfunctions-ecs) ------------------------------------------------------
    @property
    def outputs(self) -> dict[str, str]:
        """Stack outputs of the architectures beyond the API (e.g. ``stateMachineArn``)."""
        return dict(self._outputs)

    @property
    def stepfunctions(self) -> LocalStepFunctions:
        """moto's Step Functions engine with its Lambda and ECS hooks."""
        return self._require(self._stepfunctions)

    @property
    def state_machine_arn(self) -> str:
        arn = self._outputs.get("stateMachineArn")
        if arn is None:
            raise RuntimeError("no state machine: start a stepfunctions-* architecture")
        return arn

    def execution_arn(self, job_id: str) -> str:
        """The ARN of a job's execution (executions are named after the job id)."""
        return f"{self.state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{job_id}"

    # --- AWS Batch and S3 events (stepfunctions-batch) -------------------------------------------
    @property
    def batch(self) -> LocalBatch:
        """The local Batch behind the embedded Batch: its jobs, their processes and logs."""
        return self._require(self._batch)

    @property
    def batch_jobs(self) -> list[LocalBatchJob]:
        """Every container job SubmitJob created (array children included), in order."""
        return self.batch.jobs

    @property
    def notifications(self) -> LocalS3Notifications:
        """The bucket's S3 event notifications delivered to the trigger function."""
        return self._require(self._notifications)

    def client(self, service: str) -> Any:
        """A boto3 client for the embedded AWS."""
        return self._require(self._aws).client(service)

    @staticmethod
    def _require(value: Any) -> Any:
        if value is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return value

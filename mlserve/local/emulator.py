"""The local emulator: the stack's own Pulumi program deployed into an embedded AWS, served.

    with Emulator().start(architecture="lambda") as emu:
        requests.post(f"{emu.url}/predict", json=..., headers={"x-api-key": emu.api_key})

:meth:`Emulator.start` deploys __main__.py with the stack's configuration (Pulumi.yaml, a
``Pulumi.<stack>.yaml``, the emulator's options and ``key=value`` overrides) into the embedded
moto (:func:`mlserve.local.deploy.deploy`) and builds every stand-in from what was deployed:

- each deployed Lambda function runs in-process with its deployed handler, environment, memory
  and timeout (:mod:`mlserve.local.functions`);
- API Gateway serves the deployed OpenAPI body: its integrations route each operation to the
  function whose ARN it names, its security to the deployed API key (:mod:`.gateway`);
- ECS task definitions and Batch job definitions run as local processes of their deployed
  command and environment (:mod:`.fargate`, :mod:`.batch`; ``task_start_delay`` makes tasks
  start as late as Fargate tasks do);
- the deployed state machines run in moto's Step Functions engine, their Lambda tasks served
  by the function stand-ins (:mod:`.stepfunctions`);
- the deployed bucket notifications invoke the function stand-ins they name
  (:mod:`.notifications`).

One emulator runs per process at a time: the AWS environment variables and the handler modules
(each with its one configured runtime context) are process-wide, as they are in a Lambda
execution environment.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from mlserve.local import recorder
from mlserve.local.aws import EnvironmentPatch, MotoServer
from mlserve.local.batch import LocalBatch, LocalBatchJob
from mlserve.local.deploy import Deployment, deploy
from mlserve.local.deploy.runner import REPO
from mlserve.local.fargate import LocalFargate, LocalTask
from mlserve.local.functions import LocalFunction, Routes, RuntimeSettings
from mlserve.local.gateway import ApiSpec, Gateway, deployed_routes
from mlserve.local.logs import LocalLogDelivery
from mlserve.local.notifications import LocalS3Notifications
from mlserve.local.stepfunctions import LocalStepFunctions
from mlserve.local.stores import ModelArtifact, SharedStores
from runtime import contract

API_AUTH_MODES = ("api-key", "none")
# Seconds between two status checks of a workflow, locally (mlserve:pollIntervalSeconds when no
# stack names one): a task here takes about 1.5 s, and a long Wait would only slow the demo down.
LOCAL_POLL_INTERVAL_SECONDS = 1


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def stack_overrides(**options: Any) -> dict[str, str]:
    """The emulator's options as stack config (``mlserve:<key>``): those not None."""
    return {key: _text(value) for key, value in options.items() if value is not None}


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
        self._logs: LocalLogDelivery | None = None
        self._routes: Routes = {}
        self._functions: dict[str, LocalFunction] = {}  # ARN -> stand-in
        self.deployment: Deployment | None = None
        self._stack: str | None = None
        self._overrides: dict[str, str] = {}
        self._settings = RuntimeSettings()
        self._options: dict[str, Any] = {}
        self._scratch: Path | None = None
        self._env = EnvironmentPatch()
        self.architectures: tuple[str, ...] = ()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(
        self,
        architecture: str | None = None,
        *,
        stack: str | None = None,
        config: Mapping[str, str] | None = None,
        api_auth: str | None = None,
        model_dir: Path | None = None,
        model: Path | None = None,
        port: int = 0,
        allow_missing: bool | None = None,
        max_rows: int | None = None,
        host: str = "127.0.0.1",
        model_name: str | None = None,
        emit_metrics: bool = False,
        sync_wait_seconds: int | None = None,
        image: str | None = None,
        task_start_delay: float = 0.0,
        task_log_dir: Path | None = None,
        polling: str | None = None,
        poll_interval_seconds: int | None = None,
        batch_max_parallel: int | None = None,
        engine: str | None = None,
        unknown_category: str | None = None,
    ) -> Emulator:
        """Deploy the stack into the embedded AWS and serve it; return ``self`` (also a context
        manager).

        ``stack`` names ``Pulumi.<stack>.yaml``; every option given (not None) is that stack
        setting (``architecture``: one name or a comma-separated list, ``api_auth``:
        ``apiAuth``, ``allow_missing``, ``max_rows``, ``sync_wait_seconds``, ``image``,
        ``polling``, ``poll_interval_seconds``, ``engine``, ``unknown_category``,
        ``model_name``), then ``config`` (``key=value`` pairs, as ``--config``) on top. The
        model: ``model`` (a model.json or model.ubj file) or ``model_dir`` (holding one), with
        or without a metadata.json beside it; neither: the stack's ``modelPath``. The program
        validates the whole (components/settings.SettingsError);
        a model mlserve cannot serve stops the start with the program's reason.

        ``emit_metrics`` leaves Powertools' EMF metric lines on stdout (off by default).
        ``task_start_delay`` is how long a task stays PROVISIONING/PENDING before its process
        starts; ``task_log_dir`` keeps task logs there (default: the scratch directory);
        ``batch_max_parallel`` bounds the Batch job processes (default: the core count).
        """
        if task_start_delay < 0:
            raise ValueError(f"task_start_delay must be >= 0, got {task_start_delay}")
        model_path = self._model_path(model, model_dir)
        overrides = stack_overrides(
            architecture=architecture,
            apiAuth=api_auth,
            modelPath=model_path,
            modelName=model_name,
            allowMissing=allow_missing,
            maxRows=max_rows,
            syncWaitSeconds=sync_wait_seconds,
            image=image,
            polling=polling,
            pollIntervalSeconds=(
                LOCAL_POLL_INTERVAL_SECONDS
                if poll_interval_seconds is None and stack is None
                else poll_interval_seconds
            ),
            engine=engine,
            unknownCategory=unknown_category,
        )
        overrides.update(config or {})
        with Emulator._active_lock:
            if Emulator._active is not None:
                raise RuntimeError(
                    "an Emulator is already running in this process; stop it first (the AWS "
                    "environment and the handler modules are process-wide)"
                )
            Emulator._active = self
        try:
            self._start(
                stack,
                overrides,
                host=host,
                port=port,
                emit_metrics=emit_metrics,
                task_start_delay=task_start_delay,
                task_log_dir=task_log_dir,
                batch_max_parallel=batch_max_parallel,
            )
            recorder.deployed(self)  # MLSERVE_RECORD_CALLS: tests/verify/test_least_privilege
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _model_path(model: Path | None, model_dir: Path | None) -> Path | None:
        """The model file to deploy; None: the stack's modelPath."""
        if model is not None:
            return Path(model).resolve()
        if model_dir is not None:
            return ModelArtifact.from_dir(Path(model_dir)).model_path.resolve()
        return None

    def _start(
        self,
        stack: str | None,
        overrides: dict[str, str],
        *,
        host: str,
        port: int,
        emit_metrics: bool,
        task_start_delay: float,
        task_log_dir: Path | None,
        batch_max_parallel: int | None,
        api_key: str | None = None,
    ) -> None:
        self._options = {
            "host": host,
            "port": port,
            "emit_metrics": emit_metrics,
            "task_start_delay": task_start_delay,
            "task_log_dir": task_log_dir,
            "batch_max_parallel": batch_max_parallel,
        }
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
        self._stepfunctions = LocalStepFunctions()
        self._stepfunctions.install()
        self._batch = LocalBatch(
            endpoint_url=self._aws.endpoint_url,
            work_dir=self._scratch / "batch",
            max_parallel=batch_max_parallel,
            log_dir=None if task_log_dir is None else task_log_dir / "batch",
        )
        self._batch.install()
        self._notifications = LocalS3Notifications()
        self._notifications.install()
        self._logs = LocalLogDelivery()
        self._logs.install()
        self._stack, self._overrides = stack, overrides
        self._deploy()
        self._gateway = Gateway(
            ApiSpec(self.require_deployment().openapi_body()),
            self._routes,
            api_key=api_key or self.require_deployment().outputs.get("apiKey"),
            host=host,
            port=port,
        )
        self._gateway.start()

    def _deploy(self, previous: Deployment | None = None) -> None:
        """Deploy (an update of ``previous`` after a config change, as ``pulumi up``: what did
        not change is kept, the stores with their data) and build the stand-ins from it."""
        aws = self._require(self._aws)
        deployment = deploy(self._stack, self._overrides, aws.endpoint_url, previous=previous)
        self.deployment = deployment
        config = deployment.config
        self.architectures = tuple(deployment.outputs["architecture"])
        self._settings = RuntimeSettings.of(config)
        functions: dict[str, LocalFunction] = {
            str(c["FunctionArn"]): LocalFunction.deployed(c)
            for c in deployment.functions().values()
        }
        for function in functions.values():
            self._require(self._stepfunctions).register(function)
            function.cold_start(self._require(self._scratch))
        for notification in deployment.notifications().values():
            for target in notification.get("LambdaFunctionConfigurations", []):
                arn = target["LambdaFunctionArn"]
                self._require(self._notifications).register(functions[_unqualified(arn)], arn)
        for subscription in deployment.subscription_filters():
            self._require(self._logs).register(
                subscription["filterName"],
                subscription["logGroupName"],
                subscription.get("filterPattern", ""),
                functions[_unqualified(subscription["destinationArn"])],
            )
        self._functions = functions
        image = deployment.outputs.get("imageUri")
        if image and not config["mlserve:image"]:
            # the image substitution: the image the program builds (images/scoring) runs as a
            # local process; a prebuilt one (mlserve:image) cannot be pulled here
            self._require(self._fargate).images |= {str(image)}
            self._require(self._batch).images[str(image)] = contract.SCORING_MODULE
        self._routes = deployed_routes(deployment.openapi_body(), functions)
        model_uri = str(deployment.outputs["modelUri"])
        bucket, _, key = model_uri.removeprefix("s3://").partition("/")
        _, name, version, _ = key.split("/", 3)
        model = ModelArtifact.from_file(REPO / config["mlserve:modelPath"], name)
        model = dataclasses.replace(model, version=version)
        self._stores = SharedStores(
            bucket=bucket,
            table=str(deployment.outputs["jobTable"]),
            model=model,
            model_key=key,
            metadata_key=contract.model_metadata_key(name, version),
        )
        if self._gateway is not None:
            self._gateway.routes = dict(self._routes)

    def reconfigure(
        self,
        *,
        allow_missing: bool | None = None,
        max_rows: int | None = None,
        sync_wait_seconds: int | None = None,
        image: str | None = None,
        default_image: bool = False,
    ) -> None:
        """Change stack settings, like ``pulumi config set`` + ``pulumi up``: the program is
        deployed again as an update of the running deployment. Resources whose inputs did not
        change are kept (the bucket and the table with their data, the API key); the changed
        ones are created anew, and every function starts cold with the environment the program
        gives it for the new settings. Without a change, every function only gets a new
        execution environment (a cold start). ``default_image=True`` goes back to the scoring
        image of images/scoring."""
        if self._scratch is None:
            raise RuntimeError("the emulator is not running")
        overrides = {
            **self._overrides,
            **stack_overrides(
                allowMissing=allow_missing,
                maxRows=max_rows,
                syncWaitSeconds=sync_wait_seconds,
                image=image,
            ),
        }
        if default_image:
            overrides["image"] = ""
        if overrides == self._overrides:  # nothing to deploy: only new execution environments
            for function in self.functions:
                function.cold_start(self._scratch)
            return
        previous, before = self.require_deployment(), self._overrides
        self._overrides = overrides
        try:
            self._deploy(previous)
        except BaseException:
            self._overrides = before  # a refused change leaves the stack as it was
            raise
        recorder.deployed(self)

    def _teardown(self) -> None:
        """Stop the API, stop and reap every task process, stop the embedded AWS, clean up."""
        gateway, self._gateway = self._gateway, None
        stepfunctions, self._stepfunctions = self._stepfunctions, None
        batch, self._batch = self._batch, None
        notifications, self._notifications = self._notifications, None
        logs, self._logs = self._logs, None
        fargate, self._fargate = self._fargate, None
        aws, self._aws = self._aws, None
        scratch, self._scratch = self._scratch, None
        try:
            if gateway is not None:
                gateway.stop()
        finally:
            try:
                # the queued log lines first (their destinations write to S3), then S3 events
                # (they start executions), then executions (they start or poll tasks and jobs)
                if logs is not None:
                    logs.shutdown()
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

    def stop(self) -> None:
        """Stop everything :meth:`start` started and clean up."""
        try:
            self._teardown()
        finally:
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
        """The API key value the program created (``apiKey``), None when ``apiAuth`` is none."""
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
    def polling(self) -> str:
        """The deployed ``polling`` setting (how the workflows watch their compute)."""
        return self.require_deployment().config["mlserve:polling"]

    @property
    def settings(self) -> RuntimeSettings:
        """The deployed settings the runtime reads (allowMissing, maxRows, ...)."""
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
        """Every deployed function's stand-in."""
        return list(self._functions.values())

    def require_deployment(self) -> Deployment:
        """What the program deployed into the embedded AWS (resources and read-backs)."""
        return self._require(self.deployment)

    # --- Step Functions --------------------------------------------------------------------------
    @property
    def outputs(self) -> dict[str, Any]:
        """The stack outputs of the deployed program (``apiKey`` left out)."""
        outputs = dict(self.require_deployment().outputs)
        outputs.pop("apiKey", None)
        return outputs

    @property
    def stepfunctions(self) -> LocalStepFunctions:
        """moto's Step Functions engine with its Lambda and ECS hooks."""
        return self._require(self._stepfunctions)

    @property
    def state_machine_arn(self) -> str:
        """The state machine of the jobs (``stateMachineArn``, else ``batchStateMachineArn``)."""
        outputs = self.outputs
        arn = outputs.get("stateMachineArn") or outputs.get("batchStateMachineArn")
        if arn is None:
            raise RuntimeError("no state machine: start a stepfunctions-* architecture")
        return str(arn)

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
    def log_delivery(self) -> LocalLogDelivery:
        """The deployed log subscription filters (data capture): :meth:`LocalLogDelivery.flush`
        delivers what is queued at once."""
        return self._require(self._logs)

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


def new_api_key() -> str:
    """40 letters and digits, the shape of an API Gateway key value."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40))


def _unqualified(arn: str) -> str:
    """A function ARN without its version or alias qualifier."""
    return ":".join(arn.split(":")[:7])

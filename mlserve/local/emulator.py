"""The local emulator: the embedded AWS, the shared stores, the architectures, the gateway.

    with Emulator().start(architecture="lambda") as emu:
        requests.post(f"{emu.url}/predict", json=..., headers={"x-api-key": emu.api_key})

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

from mlserve.local.architectures import ARCHITECTURES, StackContext, parse_architectures
from mlserve.local.aws import EnvironmentPatch, MotoServer
from mlserve.local.functions import LocalFunction, Routes, RuntimeSettings
from mlserve.local.gateway import ApiSpec, Gateway
from mlserve.local.stores import ModelArtifact, SharedStores, provision_shared_stores
from runtime import contract

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
        self._routes: Routes = {}
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
    ) -> Emulator:
        """Provision everything and serve the API; return ``self`` (also a context manager).

        ``architecture`` is one registered name or a comma-separated list. ``emit_metrics``
        leaves Powertools' EMF metric lines on stdout (off by default: one JSON blob per request
        would drown the demo's output; CloudWatch is where they matter).
        """
        names = parse_architectures(architecture)
        if api_auth not in API_AUTH_MODES:
            raise ValueError(
                f"api_auth {api_auth!r} is not emulated (choose from {', '.join(API_AUTH_MODES)})"
            )
        settings = RuntimeSettings(allow_missing=allow_missing, max_rows=max_rows)
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
            )
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
    ) -> None:
        self.architectures = names
        self.api_auth = api_auth
        self._settings = settings
        self._scratch = Path(tempfile.mkdtemp(prefix="mlserve-local-"))
        if "POWERTOOLS_METRICS_DISABLED" not in os.environ or emit_metrics:
            self._env.apply({"POWERTOOLS_METRICS_DISABLED": "false" if emit_metrics else "true"})

        self._aws = MotoServer(host=host)
        self._aws.start()
        self._stores = provision_shared_stores(
            self._aws.client("s3"), self._aws.client("dynamodb"), model
        )
        context = StackContext(self._aws, self._stores, self._scratch)
        routes: Routes = {}
        for name in names:
            for operation_id, function in ARCHITECTURES[name](context).items():
                if operation_id in routes and routes[operation_id] is not function:
                    raise ValueError(
                        f"architectures {', '.join(names)} both serve {operation_id!r}"
                    )
                routes[operation_id] = function
        self._routes = routes
        for function in self.functions:
            function.cold_start(settings, self._scratch)

        key = (api_key or new_api_key()) if api_auth == "api-key" else None
        self._gateway = Gateway(ApiSpec.load(), routes, api_key=key, host=host, port=port)
        self._gateway.start()

    def reconfigure(
        self, *, allow_missing: bool | None = None, max_rows: int | None = None
    ) -> None:
        """Change function settings, like ``pulumi config set`` + ``pulumi up``: every function
        gets the new environment in a fresh execution environment (cold start, empty /tmp)."""
        if self._scratch is None:
            raise RuntimeError("the emulator is not running")
        self._settings = RuntimeSettings(
            allow_missing=self._settings.allow_missing if allow_missing is None else allow_missing,
            max_rows=self._settings.max_rows if max_rows is None else max_rows,
        )
        for function in self.functions:
            function.cold_start(self._settings, self._scratch)

    def stop(self) -> None:
        gateway, self._gateway = self._gateway, None
        aws, self._aws = self._aws, None
        scratch, self._scratch = self._scratch, None
        try:
            if gateway is not None:
                gateway.stop()
        finally:
            try:
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

    @property
    def routes(self) -> Routes:
        return dict(self._routes)

    @property
    def functions(self) -> list[LocalFunction]:
        unique: dict[int, LocalFunction] = {}
        for function in self._routes.values():
            unique.setdefault(id(function), function)
        return list(unique.values())

    def client(self, service: str) -> Any:
        """A boto3 client for the embedded AWS."""
        return self._require(self._aws).client(service)

    @staticmethod
    def _require(value: Any) -> Any:
        if value is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return value

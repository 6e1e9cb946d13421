"""The embedded AWS: a moto server on loopback, and the process environment that points at it.

Everything the emulator provisions, and every boto3 client the runtime code creates in this
process, talks to this server through ``AWS_ENDPOINT_URL``. The environment is restored when the
server stops, so a test session or a program can start and stop an emulator cleanly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

REGION = "us-east-1"
# moto's default account: ARNs and identities it hands out use it.
ACCOUNT_ID = "123456789012"
FAKE_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
# Variables that would send boto3 somewhere else than the embedded server (or to a real account).
_MASKED_PREFIXES = ("AWS_ENDPOINT_URL_",)
_MASKED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


class EnvironmentPatch:
    """Set and unset process environment variables; put every one back on :meth:`restore`."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def apply(self, values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            if name not in self._saved:
                self._saved[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


def aws_environment(endpoint_url: str, port: int) -> dict[str, str | None]:
    """The variables that make boto3 (and moto's own engines) use the embedded server."""
    values: dict[str, str | None] = {name: None for name in _MASKED}
    values.update({name: None for name in os.environ if name.startswith(_MASKED_PREFIXES)})
    values.update(FAKE_CREDENTIALS)
    values.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,  # Lambda sets both
            # moto's Step Functions engine calls the other services over HTTP and must be told
            # which port the server listens on (moto.settings.moto_server_port(), default 5000).
            "MOTO_PORT": str(port),
        }
    )
    return values


class MotoServer:
    """moto's ``ThreadedMotoServer`` on 127.0.0.1 and a free port, plus the environment for it."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, set_environment: bool = True
    ) -> None:
        self._host = host
        self._requested_port = port
        self._set_environment = set_environment
        self._server: Any = None
        self._env = EnvironmentPatch()
        self.endpoint_url = ""
        self.port = 0

    def start(self) -> str:
        """Start the server; return its endpoint URL (``http://127.0.0.1:PORT``)."""
        if self._server is not None:
            return self.endpoint_url
        from moto.server import ThreadedMotoServer

        # moto quirk: ThreadedMotoServer(verbose=False) only silences its start banner; werkzeug
        # still writes one access-log line per AWS call to stderr (it installs its own handler on
        # the "werkzeug" logger when that logger has no level). Give the logger a level instead.
        werkzeug_logger = logging.getLogger("werkzeug")
        if werkzeug_logger.level == logging.NOTSET:
            werkzeug_logger.setLevel(logging.WARNING)

        server = ThreadedMotoServer(ip_address=self._host, port=self._requested_port, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.port = int(port)
        self.endpoint_url = f"http://{host}:{self.port}"
        if self._set_environment:
            self._env.apply(aws_environment(self.endpoint_url, self.port))
        return self.endpoint_url

    @property
    def running(self) -> bool:
        return self._server is not None

    def client(self, service: str) -> Any:
        """A boto3 client bound explicitly to this server (independent of the environment)."""
        import boto3

        if self._server is None:
            raise RuntimeError("the moto server is not running")
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        try:
            if server is not None:
                server.stop()
        finally:
            self._env.restore()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

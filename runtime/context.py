"""The one lazily-built object through which handlers read their environment and get clients.

Handlers create no boto3 client and read no environment variable at import time; they ask a
:class:`RuntimeContext`, built on first use from ``os.environ`` (or from the mapping a test or the
local emulator passes), and clients can be injected.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime import contract
from runtime.model import DEFAULT_CACHE_DIR, ModelCache

_TRUE = frozenset({"1", "true", "yes", "on"})


def in_lambda() -> bool:
    """True inside a Lambda execution environment (the runtime sets this variable)."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


class ConfigurationError(Exception):
    """The function was deployed with a missing or invalid environment variable."""


class RuntimeContext:
    def __init__(
        self, env: Mapping[str, str] | None = None, clients: Mapping[str, Any] | None = None
    ) -> None:
        self.env: Mapping[str, str] = dict(os.environ if env is None else env)
        self._clients: dict[str, Any] = dict(clients or {})
        self._lock = threading.Lock()
        self._model_cache: ModelCache | None = None

    # --- settings -----------------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        return self.env.get(name, default)

    def require(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise ConfigurationError(f"environment variable {name} is not set")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.env.get(name)
        return default if value is None else value.strip().lower() in _TRUE

    def integer(self, name: str, default: int) -> int:
        value = self.env.get(name)
        if value is None or not value.strip():
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigurationError(
                f"environment variable {name}={value!r} is not an integer"
            ) from exc

    @property
    def max_rows(self) -> int:
        return self.integer(contract.ENV_MAX_ROWS, contract.DEFAULT_MAX_ROWS)

    @property
    def allow_missing(self) -> bool:
        return self.flag(contract.ENV_ALLOW_MISSING)

    # --- clients ------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client (created once; standard retry mode honours throttling)."""
        existing = self._clients.get(service)
        if existing is not None:
            return existing
        with self._lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": 4},
                    connect_timeout=3,
                    read_timeout=20,
                )
                self._clients[service] = boto3.client(service, config=config)
            return self._clients[service]

    # --- model --------------------------------------------------------------------------------
    @property
    def models(self) -> ModelCache:
        if self._model_cache is None:
            with self._lock:
                if self._model_cache is None:
                    cache_dir = self.get(contract.ENV_MODEL_CACHE_DIR)
                    self._model_cache = ModelCache(
                        self.get(contract.ENV_MODEL_URI),
                        self.get(contract.ENV_MODEL_SHA256),
                        lambda: self.client("s3"),
                        Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR,
                    )
        return self._model_cache

"""What every mapper module shares: the deployment context and the shape of a mapper.

A mapper module (one per AWS service: :mod:`.s3`, :mod:`.iam`, ...) exports two tables:

* ``RESOURCES``: resource type token -> ``create(ctx, logical_name, inputs) -> (id, outputs)``,
  which makes the AWS API call(s) the provider would make to create the resource, against the
  embedded moto, and returns the provider's id and the outputs it reads back (in the provider's
  output property names: ``arn``, ``invokeArn``, ``bucket`` ...);
* ``INVOKES``: function token -> ``call(ctx, args) -> result`` for data sources (getVpc ...).

Inputs arrive as the SDK serialises them: camelCase provider property names, every number a
float, assets as ``pulumi.FileAsset``/``FileArchive``.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import boto3

from mlserve.local.aws import FAKE_CREDENTIALS

Create = Callable[["Context", str, dict[str, Any]], tuple[str, dict[str, Any]]]
Invoke = Callable[["Context", dict[str, Any]], dict[str, Any]]

# The random suffix Pulumi's auto-naming appends to a logical name (7 hex digits).
AUTO_NAME_SUFFIX_CHARS: Final = 7


@dataclass
class Context:
    """Where and as whom resources are created: the embedded moto and the stack's identity."""

    endpoint_url: str
    region: str
    stack: str
    project: str
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        """A boto3 client bound to the embedded moto (one per service, built once)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
                )
            return self._clients[service]

    @property
    def account(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])


def auto_name(logical: str, *, max_length: int = 64, lower: bool = False) -> str:
    """A physical name the way Pulumi auto-names: the logical name plus a random suffix."""
    suffix = secrets.token_hex(4)[:AUTO_NAME_SUFFIX_CHARS]
    base = logical.lower() if lower else logical
    return f"{base[: max_length - len(suffix) - 1]}-{suffix}"


def physical(inputs: Mapping[str, Any], key: str, logical: str, **kwargs: Any) -> str:
    """The name given in ``inputs[key]``, else an auto-name."""
    given = inputs.get(key)
    return str(given) if given else auto_name(logical, **kwargs)


def integer(value: Any) -> int:
    """A number input (the SDK serialises every number as a float) as the int AWS expects."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(number)


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the None entries (boto3 refuses None parameters)."""
    return {k: v for k, v in values.items() if v is not None}


def revisioned(arn: str, revision: int, prefix_key: str) -> dict[str, Any]:
    """The provider's outputs of a registered revision (an ECS task definition, a Batch job
    definition): its ARN, the ARN without ``:REV`` under ``prefix_key``, and the revision."""
    return {"arn": arn, prefix_key: arn.rsplit(":", 1)[0], "revision": revision}

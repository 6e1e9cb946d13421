"""Read one S3 object without boto3: a GetObject signed with AWS Signature Version 4.

The ``lambda`` predictor makes a single AWS call, at init: GetObject of its model. Through boto3
that call cost ~0.4 s of every cold start before the first byte was sent (``import boto3``
~0.2 s, ``boto3.client("s3")`` ~0.16 s: botocore's service model and endpoint rules; importing
``botocore.auth`` alone, to sign with botocore, is ~0.15 s of it), measured from the built
archives, read-only (``make bench``). :class:`ObjectReader` sends the same request with the
standard library (``http.client``, ``hmac``, ``hashlib``: ~0.02 s to import) and signs it as
botocore does (tests/runtime/test_s3object.py checks the signature against botocore's
``SigV4Auth`` and the calls against a moto server). No maintained library signs AWS requests
without botocore or requests, hence the ~60 lines here.

What boto3 does that the predictor relies on is kept: credentials, session token and region from
the environment variables Lambda sets (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``); the endpoint override boto3 honours
(``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``; the local emulator sets it); the standard
retry mode's retries (jittered exponential backoff) on throttling, 5xx and connection errors,
with the attempts and timeouts of the predictor's client budget (runtime/context.py
``INTERACTIVE``: 3 attempts, 2 s to connect, 5 s per read); and its error messages
(``An error occurred (NoSuchKey) when calling the GetObject operation: ...``).

:meth:`ObjectReader.get_object` has boto3's signature (``Bucket=``, ``Key=``, a dict with a
streaming ``Body``), so runtime/model.py reads through either, and the call site inventory
(mlserve/callsites.py) and the local emulator's least-privilege recorder see it as the
GetObject it is.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

from runtime.context import INTERACTIVE, ClientBudget

SERVICE: Final = "s3"
OPERATION: Final = "GetObject"
MAX_BACKOFF_SECONDS: Final = 20.0
CONNECTION_ERROR: Final = "ConnectionError"  # no answer: retried, like botocore's
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
# What botocore's standard retry mode retries (botocore.retries.standard).
_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504, 509})
_RETRY_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
    }
)
# A bucket name usable as a host label (virtual-hosted style on AWS, as botocore addresses it).
_DNS_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


class S3Error(Exception):
    """An S3 error response (``code`` as S3 names it) or a request that could not be sent."""

    def __init__(self, message: str, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class MissingCredentials(Exception):
    """The environment carries no credentials to sign with."""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_get(
    url: str,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """The headers of a SigV4-signed ``GET url`` (no query, empty body) to S3 in ``region``."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "host": parts.netloc,
        "x-amz-content-sha256": _EMPTY_SHA256,
        "x-amz-date": amz_date,
    }
    if session_token:
        headers["x-amz-security-token"] = session_token
    names = sorted(headers)
    canonical = "\n".join(
        [
            "GET",
            parts.path or "/",
            "",  # no query string
            *(f"{name}:{headers[name].strip()}" for name in names),
            "",
            ";".join(names),
            _EMPTY_SHA256,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), amz_date[:8])
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def object_url(bucket: str, key: str, region: str, endpoint: str | None) -> str:
    """Where GetObject goes: path-style on a configured endpoint, else virtual-hosted style
    (path-style for a bucket name that is not one host label) on S3's regional endpoint."""
    path = quote(key, safe="/~")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}/{path}"
    if _DNS_BUCKET.fullmatch(bucket):
        return f"https://{bucket}.s3.{region}.amazonaws.com/{path}"
    return f"https://s3.{region}.amazonaws.com/{quote(bucket, safe='')}/{path}"


def configured_endpoint(environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint boto3 would use from the environment, or None (AWS's)."""
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


class _Body:
    """The response body: ``read(n)`` until ``b""``, then the connection is closed."""

    def __init__(self, connection: http.client.HTTPConnection, response: Any) -> None:
        self._connection = connection
        self._response = response

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._response.read(size if size >= 0 else None)
        if not data or size < 0:
            self.close()
        return data

    def close(self) -> None:
        self._connection.close()


def _error_of(status: int, reason: str, body: bytes) -> tuple[str, str]:
    """(code, message) of an S3 error response (an XML ``<Error>``; none for a HEAD-like 404)."""
    text = body.decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return (code.group(1) if code else str(status)), (message.group(1) if message else reason)


class ObjectReader:
    """GetObject with the environment's credentials, as a boto3 S3 client sends it."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        budget: ClientBudget = INTERACTIVE,
    ) -> None:
        """``budget``: attempts and timeouts, as RuntimeContext.client configures boto3 (the
        predictor's: INTERACTIVE)."""
        env = os.environ if environ is None else environ
        self._access_key = env.get("AWS_ACCESS_KEY_ID", "")
        self._secret_key = env.get("AWS_SECRET_ACCESS_KEY", "")
        if not self._access_key or not self._secret_key:
            raise MissingCredentials(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them)"
            )
        self._session_token = env.get("AWS_SESSION_TOKEN") or None
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint = configured_endpoint(env)
        self._sleep = sleep
        self._budget = budget

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        """``{"Body": stream, "ContentLength": n}``, or :class:`S3Error` after the retries."""
        url = object_url(Bucket, Key, self.region, self.endpoint)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(url)
            except S3Error as error:
                retryable = (
                    error.status in _RETRY_STATUS
                    or error.code in _RETRY_CODES
                    or error.code == CONNECTION_ERROR
                )
                if not retryable or attempt >= self._budget.total_attempts:
                    if retryable:
                        raise S3Error(
                            str(error).replace(
                                f"the {OPERATION} operation:",
                                f"the {OPERATION} operation (reached max retries: {attempt - 1}):",
                                1,
                            ),
                            error.code,
                            error.status,
                        ) from error
                    raise
            # botocore's jittered exponential backoff (jitter, not cryptography)
            self._sleep(random.random() * min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)))  # noqa: S311

    def _send(self, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        headers = sign_get(
            url,
            access_key=self._access_key,
            secret_key=self._secret_key,
            session_token=self._session_token,
            region=self.region,
            now=datetime.now(UTC),
        )
        del headers["host"]  # http.client sends it from the connection
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self._budget.connect_timeout
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=self._budget.connect_timeout
            )
        try:
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(self._budget.read_timeout)
            connection.request("GET", parts.path, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise S3Error(
                f"Could not connect to the endpoint URL: {url!r} ({type(exc).__name__}: {exc})",
                CONNECTION_ERROR,
                0,
            ) from exc
        if response.status != 200:
            try:
                body = response.read()
            finally:
                connection.close()
            code, message = _error_of(response.status, response.reason, body)
            raise S3Error(
                f"An error occurred ({code}) when calling the {OPERATION} operation: {message}",
                code,
                response.status,
            )
        length = response.getheader("Content-Length")
        return {
            "Body": _Body(connection, response),
            "ContentLength": int(length) if length else None,
        }

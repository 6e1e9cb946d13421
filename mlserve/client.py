"""The HTTP client of the commands that talk to an mlserve API (predict, jobs).

Only the standard library talks HTTP here (urllib): the CLI needs no client dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlserve.commands.base import CliError
from runtime import contract


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any  # parsed JSON, or None when the body is not JSON
    text: str


class ApiError(CliError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def call_api(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> ApiResponse:
    """One HTTP request (with ``headers`` besides the API's own); a non-2xx answer raises
    :class:`ApiError` with the API's error."""
    if not url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) URL: {url!r}")
    headers = {**(headers or {}), "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    if api_key:
        headers[contract.API_KEY_HEADER] = api_key
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {url}: {reason}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if not 200 <= status < 300:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            raise ApiError(status, str(error.get("code", "error")), str(error.get("message", "")))
        message = parsed.get("message") if isinstance(parsed, dict) else None
        raise ApiError(status, "error", str(message or text[:200] or "(empty body)"))
    return ApiResponse(status, parsed, text)


# --- jobs --------------------------------------------------------------------------------------

MAX_INLINE_BODY = contract.MAX_BODY_BYTES - 64 * 1024  # room for API Gateway's envelope
UPLOAD_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}


@dataclass(frozen=True)
class Api:
    """A deployed (or local) mlserve API: its URL (the stage's, .../v1) and API key."""

    url: str
    api_key: str | None = None
    timeout: float = 60.0

    def call(
        self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None
    ) -> ApiResponse:
        url = self.url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        return call_api(
            method,
            url,
            body=data,
            content_type="application/json" if data is not None else None,
            api_key=self.api_key,
            timeout=self.timeout,
        )

    def job(self, job_id: str, part: int | None = None) -> dict[str, Any]:
        answer = self.call("GET", f"/jobs/{job_id}", query={"part": part}).body
        if not isinstance(answer, dict) or "status" not in answer:
            raise CliError(f"unexpected answer from GET /jobs/{job_id}: {answer!r}"[:300])
        return answer


def upload_format(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    fmt = UPLOAD_FORMATS.get(suffix)
    if fmt is None:
        raise CliError(f"cannot tell the format of {path}: name it .csv, .parquet, .jsonl or .json")
    return fmt


def put_file(url: str, path: str, size: int, timeout: float) -> None:
    """PUT the file to a presigned URL (streamed; no API key: the URL is the credential)."""
    if not url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) upload URL: {url!r}")
    with open(path, "rb") as fh:
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            url,
            data=fh,
            method="PUT",
            # urllib's default for a body is a form type, which a server may parse away
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            raise CliError(
                f"the upload was refused: HTTP {exc.code} {exc.read()[:300]!r}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"the upload failed: {getattr(exc, 'reason', exc)}") from None


def download(url: str, timeout: float) -> bytes:
    """GET a presigned result_url (no API key: the URL is the credential)."""
    if not url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) result URL: {url!r}")
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        reason = "the link expired: GET the job again for a new one" if exc.code == 403 else ""
        raise CliError(f"cannot download the result: HTTP {exc.code} {reason}".strip()) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot download the result: {getattr(exc, 'reason', exc)}") from None


# --- following a job and fetching its results -------------------------------------------------


def follow(
    api: Api,
    job_id: str,
    *,
    timeout: float,
    on_update: Any = None,
    sleep: Any = None,
) -> dict[str, Any]:
    """GET the job (0.25 s, doubling, at most 2 s apart) until it finished or ``timeout``
    passed; ``on_update(job)`` after every answer (a progress display)."""
    import time

    pause = sleep or time.sleep
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        job = api.job(job_id)
        if on_update is not None:
            on_update(job)
        if job["status"] in contract.TERMINAL_STATUSES:
            return job
        if time.monotonic() + delay > deadline:
            raise CliError(
                f"job {job_id} still {job['status']} after {timeout:g} s; "
                f"follow it with `mlserve jobs get {job_id} --wait`"
            )
        pause(delay)
        delay = min(delay * 2, 2.0)


@dataclass(frozen=True)
class Results:
    """A finished job's predictions: inline (or one predictions document, downloaded), or the
    part files of a batch job, downloaded into a directory."""

    predictions: list[Any] | None
    files: tuple[str, ...] = ()
    rows: int | None = None


def fetch_results(api: Api, job: dict[str, Any], out_dir: str | None) -> Results:
    """The predictions of a SUCCEEDED job: inline, else through its presigned result_url (each
    part of a batch job's output, written to ``out_dir``, default ``mlserve-results/<job id>``)."""
    import os

    if "predictions" in job:
        return Results(list(job["predictions"]), rows=len(job["predictions"]))
    url = job.get("result_url")
    if not url:
        raise CliError(
            f"job {job['job_id']} {job['status']} has neither predictions nor result_url"
        )
    parts = job.get("result_parts")
    if parts is None:
        document = json.loads(download(url, api.timeout))
        predictions = document.get("predictions") if isinstance(document, dict) else document
        if not isinstance(predictions, list):
            raise CliError(f"the result of job {job['job_id']} holds no predictions list")
        return Results(predictions, rows=len(predictions))
    directory = out_dir or os.path.join("mlserve-results", str(job["job_id"]))
    os.makedirs(directory, exist_ok=True)
    files = []
    for index in range(int(parts)):
        linked = job if index == job.get("result_part", 0) else api.job(job["job_id"], index)
        name = linked["result_url"].split("?", 1)[0].rsplit("/", 1)[-1]
        path = os.path.join(directory, name)
        with open(path, "wb") as fh:
            fh.write(download(linked["result_url"], api.timeout))
        files.append(path)
    return Results(None, tuple(files), job.get("rows"))

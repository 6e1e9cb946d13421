"""The HTTP client of the commands that talk to an mlserve API (predict, jobs).

Only the standard library talks HTTP here (urllib): the CLI needs no client dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
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
) -> ApiResponse:
    """One HTTP request; a non-2xx answer raises :class:`ApiError` with the API's error."""
    if not url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) URL: {url!r}")
    headers = {"Accept": "application/json"}
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

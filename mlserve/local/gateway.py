"""A local stand-in for the API Gateway REST API that components/api.py deploys.

It serves ``http://127.0.0.1:PORT/v1/...`` (the stage in the path, like an invoke URL) and, for
every request, does what API Gateway does, in API Gateway's order:

1. a body over 10 MB -> ``REQUEST_TOO_LARGE`` (413);
2. the route (path template + method) from runtime/openapi.yaml; none ->
   ``MISSING_AUTHENTICATION_TOKEN`` (403);
3. the API key (``x-api-key``) when the API requires one -> ``INVALID_API_KEY`` (403);
4. the request validator ``all``: required query/header parameters -> ``BAD_REQUEST_PARAMETERS``,
   a JSON body against the operation's schema for the request's content type (Draft 4, as API
   Gateway) -> ``BAD_REQUEST_BODY``; other content types pass through to the function;
5. a REST (v1) Lambda proxy event, serialised as Lambda would (an event over Lambda's 6 MB request
   limit -> 413), the function called in-process with a Lambda-like context; a crash, a malformed
   or an oversized proxy response -> ``INTEGRATION_FAILURE`` (502) and a log line.

Error bodies and statuses come from ``x-amazon-apigateway-gateway-responses`` in the yaml.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import secrets
import string
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlserve.local.aws import ACCOUNT_ID
from mlserve.local.functions import LocalFunction
from runtime import contract

# Not under "mlserve.": Powertools' Logger(service="mlserve") in the handlers owns that logger
# and would reformat these lines as the function's JSON logs.
logger = logging.getLogger("mlserve-local.gateway")
access_logger = logging.getLogger("mlserve-local.access")

API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024  # REST API payload quota (hard limit)
LAMBDA_MAX_REQUEST_BYTES = contract.MAX_BODY_BYTES  # synchronous Invoke payload (the event)
LAMBDA_MAX_RESPONSE_BYTES = contract.MAX_BODY_BYTES + 100  # Lambda allows 100 bytes more back
_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # read and discard up to this much of a refused body
_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# API Gateway assumes this content type when a request has none (model selection, validation).
_DEFAULT_CONTENT_TYPE = "application/json"
_ERROR_TYPES = {  # x-amzn-ErrorType that API Gateway sends with its own responses
    "BAD_REQUEST_BODY": "BadRequestException",
    "BAD_REQUEST_PARAMETERS": "BadRequestException",
    "INVALID_API_KEY": "ForbiddenException",
    "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
    "REQUEST_TOO_LARGE": "RequestTooLargeException",
    "INTEGRATION_FAILURE": "InternalServerErrorException",
}
_OPENAPI_URI = "urn:mlserve:openapi"


# --- the API document -----------------------------------------------------------------------------


def deployed_routes(
    body: Mapping[str, Any], functions: Mapping[str, LocalFunction]
) -> dict[str, LocalFunction]:
    """operationId -> the function the deployed OpenAPI body integrates it with (its
    ``x-amazon-apigateway-integration`` URI names the function's, or an alias's, ARN);
    ``functions`` maps each function ARN to its stand-in."""
    routes: dict[str, LocalFunction] = {}
    for item in (body.get("paths") or {}).values():
        for method, op in item.items():
            if method.upper() not in _HTTP_METHODS or not isinstance(op, dict):
                continue
            integration = op.get("x-amazon-apigateway-integration")
            if not integration:
                continue
            target = str(integration["uri"]).split("/functions/", 1)[1].removesuffix("/invocations")
            routes[str(op["operationId"])] = functions[":".join(target.split(":")[:7])]
    return routes


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    resource: str  # the path template: /jobs/{id}
    pattern: re.Pattern[str]
    literal_segments: int
    body_validators: Mapping[str, Any]  # media type -> jsonschema validator
    required_query: tuple[str, ...] = ()
    required_headers: tuple[str, ...] = ()

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def _template_pattern(resource: str) -> tuple[re.Pattern[str], int]:
    """``/jobs/{id}`` -> ``^/jobs/(?P<id>[^/]+)$``; ``{proxy+}`` is greedy, as in API Gateway."""
    regex = ""
    literal = 0
    for segment in resource.strip("/").split("/"):
        if not segment:
            continue
        param = re.fullmatch(r"\{([A-Za-z0-9_]+)(\+?)\}", segment)
        if param is None:
            regex += "/" + re.escape(segment)
            literal += 1
        elif param.group(2):
            regex += f"/(?P<{param.group(1)}>.+)"
        else:
            regex += f"/(?P<{param.group(1)}>[^/]+)"
    return re.compile(regex or "/"), literal


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _is_json_media_type(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class ApiSpec:
    """Routes, request schemas and gateway responses of runtime/openapi.yaml."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        from jsonschema import Draft4Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        self.document = document
        # $refs (#/components/schemas/...) resolve inside the whole OpenAPI document.
        registry: Registry[Any] = Registry().with_resource(
            _OPENAPI_URI, Resource.from_contents(dict(document), default_specification=DRAFT4)
        )
        operations: list[Operation] = []
        for resource, item in (document.get("paths") or {}).items():
            shared_params = list(item.get("parameters") or [])
            for method, op in item.items():
                if method.upper() not in _HTTP_METHODS or not isinstance(op, dict):
                    continue
                validators: dict[str, Any] = {}
                content = ((op.get("requestBody") or {}).get("content")) or {}
                for media, spec in content.items():
                    if (spec or {}).get("schema") is None or not _is_json_media_type(media.lower()):
                        # API Gateway models are JSON schemas; only JSON bodies are validated
                        # here (a text/csv body is the function's to parse).
                        continue
                    ref = _pointer(
                        "paths", resource, method, "requestBody", "content", media, "schema"
                    )
                    validators[media.lower()] = Draft4Validator(
                        {"$ref": f"{_OPENAPI_URI}#/{ref}"}, registry=registry
                    )
                params = shared_params + list(op.get("parameters") or [])
                pattern, literal = _template_pattern(resource)
                operations.append(
                    Operation(
                        operation_id=str(op.get("operationId") or f"{method} {resource}"),
                        method=method.upper(),
                        resource=resource,
                        pattern=pattern,
                        literal_segments=literal,
                        body_validators=validators,
                        required_query=tuple(
                            p["name"]
                            for p in params
                            if p.get("in") == "query" and p.get("required")
                        ),
                        required_headers=tuple(
                            p["name"].lower()
                            for p in params
                            if p.get("in") == "header" and p.get("required")
                        ),
                    )
                )
        # API Gateway prefers the most specific resource: literal segments before {params}.
        operations.sort(key=lambda o: (-o.literal_segments, o.resource))
        self.operations = operations
        self.gateway_responses: Mapping[str, Any] = (
            document.get("x-amazon-apigateway-gateway-responses") or {}
        )

    @classmethod
    def load(cls, path: Path | None = None) -> ApiSpec:
        import yaml

        if path is None:
            text = resources.files("runtime").joinpath("openapi.yaml").read_text()
        else:
            text = path.read_text()
        return cls(yaml.safe_load(text))

    def route(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            if op.method != method:
                continue
            params = op.match(path)
            if params is not None:
                return op, params
        return None

    def gateway_response(self, response_type: str, request_id: str) -> GatewayResponse:
        """The configured gateway response, falling back to DEFAULT_4XX/DEFAULT_5XX like AWS."""
        status = _DEFAULT_STATUS.get(response_type, 500)
        spec = self.gateway_responses.get(response_type)
        fallback = self.gateway_responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX")
        spec = spec or fallback or {}
        status = int(spec.get("statusCode", status))
        templates = spec.get("responseTemplates") or (fallback or {}).get("responseTemplates") or {}
        body = templates.get("application/json") or json.dumps({"message": response_type})
        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
        if response_type in _ERROR_TYPES:
            headers.append(("x-amzn-ErrorType", _ERROR_TYPES[response_type]))
        for key, value in (spec.get("responseParameters") or {}).items():
            if key.startswith("gatewayresponse.header.") and str(value).startswith("'"):
                headers.append((key.removeprefix("gatewayresponse.header."), str(value).strip("'")))
        return GatewayResponse(status, tuple(headers), body.encode())


# Statuses of the gateway response types API Gateway uses when the document sets none.
_DEFAULT_STATUS = {
    "BAD_REQUEST_BODY": 400,
    "BAD_REQUEST_PARAMETERS": 400,
    "INVALID_API_KEY": 403,
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "ACCESS_DENIED": 403,
    "UNAUTHORIZED": 401,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "INTEGRATION_FAILURE": 502,
    "INTEGRATION_TIMEOUT": 504,
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_strict_json(body: bytes) -> Any:
    """RFC 8259 JSON, as API Gateway's validator parses it: no NaN/Infinity literals."""
    return json.loads(body.decode("utf-8-sig"), parse_constant=_reject_constant)


# --- the proxy event ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # the raw request target: /v1/predict?x=1
    headers: tuple[tuple[str, str], ...]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found


@dataclass
class ApiIdentity:
    """What API Gateway puts in ``requestContext`` about the API itself."""

    api_id: str = field(
        default_factory=lambda: "".join(
            secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10)
        )
    )
    api_key_id: str = field(default_factory=lambda: secrets.token_hex(5))
    stage: str = contract.STAGE_NAME
    # the id of every further key of the usage plan, by key value (Gateway.add_api_key)
    key_ids: dict[str, str] = field(default_factory=dict)


def build_proxy_event(
    request: HttpRequest,
    *,
    op: Operation,
    path: str,
    path_params: Mapping[str, str],
    api: ApiIdentity,
    request_id: str,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy integration event."""
    now = time.time()
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    forwarded = {
        "X-Forwarded-For": request.source_ip,
        "X-Forwarded-Proto": "http",
        "X-Amzn-Trace-Id": f"Root=1-{int(now):08x}-{secrets.token_hex(12)}",
    }
    for name, value in forwarded.items():
        if not any(k.lower() == name.lower() for k in headers):
            headers[name] = value
            multi_headers[name] = [value]
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(urlsplit(request.target).query, keep_blank_values=True):
        query[name] = value
        multi_query.setdefault(name, []).append(value)

    body: str | None
    if not request.body:
        body, is_base64 = None, False
    else:
        try:
            body, is_base64 = request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(request.body).decode("ascii"), True

    api_key = request.header(contract.API_KEY_HEADER)
    key_id = (api.key_ids or {}).get(api_key or "") or api.api_key_id
    host = request.header("host") or "127.0.0.1"
    resource_id = f"{zlib.crc32(op.resource.encode()):08x}"[:6]
    return {
        "resource": op.resource,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_params) or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": resource_id,
            "resourcePath": op.resource,
            "operationName": op.operation_id,
            "httpMethod": request.method,
            "extendedRequestId": secrets.token_urlsafe(12),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{api.stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": request.protocol,
            "stage": api.stage,
            "domainPrefix": api.api_id,
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "apiKey": api_key,
                "apiKeyId": key_id if api_key else None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.header("user-agent"),
                "user": None,
            },
            "domainName": host,
            "apiId": api.api_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


# --- the gateway ----------------------------------------------------------------------------------


class IntegrationError(Exception):
    """The function failed or answered something API Gateway cannot use (-> 502)."""


class Gateway:
    """Dispatches HTTP requests to the functions of a route table, as API Gateway would."""

    def __init__(
        self,
        spec: ApiSpec,
        routes: Mapping[str, LocalFunction],
        *,
        api_key: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.spec = spec
        self.routes = dict(routes)
        self.api_key = api_key
        self.api = ApiIdentity()
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def start(self) -> str:
        server = _Server((self._host, self._port), _RequestHandler)
        server.gateway = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="mlserve-gateway", daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The invoke URL: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self._host}:{self.port}/{self.api.stage}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def add_api_key(self, value: str) -> str:
        """Another key of the usage plan (a second client): its requests carry their own
        ``apiKeyId``, as API Gateway's do. Returns that id."""
        if self.api_key is None:
            raise RuntimeError("the API has no API keys (apiAuth none)")
        key_id = secrets.token_hex(5)
        self.api.key_ids[value] = key_id
        return key_id

    # --- requests ---
    def error(self, response_type: str, request_id: str) -> GatewayResponse:
        return self.spec.gateway_response(response_type, request_id)

    def dispatch(self, request: HttpRequest) -> GatewayResponse:
        request_id = str(uuid.uuid4())
        checked = self._check(request)
        if isinstance(checked, str):
            return self.error(checked, request_id)
        op, path, path_params = checked
        event = build_proxy_event(
            request, op=op, path=path, path_params=path_params, api=self.api, request_id=request_id
        )
        function = self.routes[op.operation_id]
        try:
            return self._invoke(function, event, request_id)
        except _PayloadTooLarge:
            return self.error("REQUEST_TOO_LARGE", request_id)
        except IntegrationError as exc:
            logger.error(
                "%s %s: Lambda function %s failed: %s (API Gateway answers 502)",
                request.method,
                path,
                function.name,
                exc,
                exc_info=exc.__cause__ is not None,
            )
            return self.error("INTEGRATION_FAILURE", request_id)

    def _check(self, request: HttpRequest) -> str | tuple[Operation, str, dict[str, str]]:
        """Everything API Gateway checks before the integration: a gateway response type to
        answer with, or the operation, the path without the stage, and the path parameters."""
        if len(request.body) > API_GATEWAY_MAX_BODY_BYTES:
            return "REQUEST_TOO_LARGE"
        raw_path = urlsplit(request.target).path
        prefix = f"/{self.api.stage}"
        if raw_path != prefix and not raw_path.startswith(prefix + "/"):
            return "MISSING_AUTHENTICATION_TOKEN"
        path = raw_path[len(prefix) :] or "/"
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        found = self.spec.route(request.method, path)
        if found is None or found[0].operation_id not in self.routes:
            return "MISSING_AUTHENTICATION_TOKEN"
        op, path_params = found
        if self.api_key is not None:
            given = (request.header(contract.API_KEY_HEADER) or "").encode()
            keys = [self.api_key, *self.api.key_ids]
            if not any(hmac.compare_digest(given, key.encode()) for key in keys):
                return "INVALID_API_KEY"
        return self._validate(request, op) or (op, path, path_params)

    def _validate(self, request: HttpRequest, op: Operation) -> str | None:
        query = dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True))
        if any(not query.get(name) for name in op.required_query) or any(
            not request.header(name) for name in op.required_headers
        ):
            return "BAD_REQUEST_PARAMETERS"
        media = media_type(request.header("content-type")) or _DEFAULT_CONTENT_TYPE
        validator = op.body_validators.get(media)
        if validator is None:
            return None
        try:
            document = parse_strict_json(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "BAD_REQUEST_BODY"
        if not validator.is_valid(document):
            return "BAD_REQUEST_BODY"
        return None

    def _invoke(
        self, function: LocalFunction, event: dict[str, Any], request_id: str
    ) -> GatewayResponse:
        # Lambda receives the event as JSON and the handler a freshly parsed copy of it.
        payload = json.dumps(event)
        if len(payload.encode()) > LAMBDA_MAX_REQUEST_BYTES:
            raise _PayloadTooLarge
        try:
            result = function.invoke(json.loads(payload))
        except Exception as exc:
            raise IntegrationError(f"unhandled {type(exc).__name__}: {exc}") from exc
        try:
            encoded = json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise IntegrationError(f"the response is not JSON serialisable: {exc}") from exc
        if len(encoded.encode()) > LAMBDA_MAX_RESPONSE_BYTES:
            raise IntegrationError("the response is larger than Lambda's 6 MB limit")
        return _proxy_response(result, request_id)


class _PayloadTooLarge(Exception):
    pass


def _proxy_response(result: Any, request_id: str) -> GatewayResponse:
    """Translate a Lambda proxy response; anything malformed is a 502, as in API Gateway."""
    if not isinstance(result, dict):
        raise IntegrationError(f"malformed Lambda proxy response: {type(result).__name__}")
    status = result.get("statusCode")
    try:
        status_code = int(status)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise IntegrationError(f"malformed Lambda proxy response: statusCode={status!r}") from None
    if not 100 <= status_code <= 599:
        raise IntegrationError(f"malformed Lambda proxy response: statusCode={status_code}")
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, values in (result.get("multiValueHeaders") or {}).items():
        seen.add(name.lower())
        headers.extend((name, str(v)) for v in _as_list(values))
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in seen:
            headers.append((name, str(value)))
    body = result.get("body")
    raw: bytes
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise IntegrationError("malformed Lambda proxy response: body is not a string")
    elif result.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise IntegrationError(f"malformed Lambda proxy response: {exc}") from exc
    else:
        raw = body.encode()
    headers = [
        (n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")
    ]
    headers.append(("x-amzn-RequestId", request_id))
    return GatewayResponse(status_code, tuple(headers), raw)


def _as_list(values: Any) -> Iterable[Any]:
    return values if isinstance(values, list) else [values]


# --- HTTP -----------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of concurrent clients (API Gateway
    # takes thousands) overflows it and the kernel resets their connections.
    request_queue_size = 1024
    gateway: Gateway

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the client went away; nothing to answer
            logger.debug("client %s disconnected: %s", client_address, error)
            return
        logger.exception("error while serving %s", client_address)


class _BodyTooLarge(Exception):
    pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mlserve-local-apigateway"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _handle(self) -> None:
        started = time.perf_counter()
        gateway = self.server.gateway
        try:
            body = self._read_body()
        except _BodyTooLarge:
            response = gateway.error("REQUEST_TOO_LARGE", str(uuid.uuid4()))
        except (ValueError, ConnectionError):
            self.close_connection = True
            self.send_error(400, "Bad Request")
            return
        else:
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=tuple(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            try:
                response = gateway.dispatch(request)
            except Exception:  # a defect of the emulator itself: answer like API Gateway's 5xx
                logger.exception("%s %s: the local gateway failed", self.command, self.path)
                response = gateway.error("DEFAULT_5XX", str(uuid.uuid4()))
        self._write(response)
        access_logger.info(
            '%s "%s %s" %d %d %.1fms',
            self.client_address[0],
            self.command,
            self.path,
            response.status,
            len(response.body),
            (time.perf_counter() - started) * 1000,
        )

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > API_GATEWAY_MAX_BODY_BYTES:
            self._drain(length)
            raise _BodyTooLarge
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        """Read and drop a refused body so the client gets the 413 instead of a reset."""
        if length > _DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk_size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if chunk_size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            size += chunk_size
            if size > API_GATEWAY_MAX_BODY_BYTES:
                self.close_connection = True
                raise _BodyTooLarge
            parts.append(self.rfile.read(chunk_size))
            self.rfile.readline(1024)
        return b"".join(parts)

    def _write(self, response: GatewayResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

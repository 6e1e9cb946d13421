"""Fuzzing the HTTP API: schemathesis against the local emulator, from runtime/openapi.yaml.

For every architecture, the emulator serves the operations its functions integrate; the fuzzed
document is the one API Gateway would get for that deployment (components/api.py
:func:`render_openapi` with those operations and ``apiAuth: api-key``). For each operation,
schemathesis generates positive requests (valid by the schema) and negative ones (violating it)
and every answer must hold:

- no 5xx (the emulator never answers 503 here: the model is deployed and the tasks can start);
- the status code is documented for the operation, and the body matches its schema, as do the
  documented headers and the content type;
- every error (4xx) is JSON ``{"error": {"code", "message"}}`` with a non-empty code and message
  and no stack trace;
- a request violating the schema is rejected with a 4xx, and a request without the API key is
  refused.

The schema does not know the model's features, so generated bodies are almost never rows the
model accepts; guided requests (:func:`_guided_requests`) add valid rows in every body form, the
same rows with one thing broken, the body and row limits, Idempotency-Key replays, and the
status and cancel of every job created, all checked the same way.

Hypothesis runs derandomized (the same cases every run) with a bounded number of examples per
operation and mode. The long run (every architecture) is ``@pytest.mark.verify``; a smoke run of
``lambda`` with a few examples runs in ``make test``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from components.api import HTTP_METHODS, load_openapi
from mlserve.local import Emulator
from runtime import contract
from tests.e2e.conftest import Emulators
from tests.e2e.helpers import Api, assert_error
from tests.verify.report import record

REGION = "us-east-1"
ARCHITECTURES = (
    contract.ARCH_LAMBDA,
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)
# Examples per operation and generation mode: the verify run (all four architectures in a few
# minutes on two shared cores) and the smoke run of `make test`.
VERIFY_EXAMPLES = 80
SMOKE_EXAMPLES = 8
# lambda-ecs waits for its task at most this long before answering 202 (bounds each request).
SYNC_WAIT_SECONDS = 2

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@pytest.fixture(scope="module", autouse=True)
def _stop_the_emulator_after_the_module(emulators: Emulators) -> Iterator[None]:
    """Leave no emulator running: a later module may start its own (one per process)."""
    yield
    emulators.stop()


def served_document(emulator: Emulator) -> dict[str, Any]:
    """The OpenAPI document of this deployment, as the program deployed it: the operations it
    serves, with the auth API Gateway enforces (components/api.py render_openapi)."""
    source = load_openapi()
    document = emulator.require_deployment().openapi_body()
    # render_openapi drops the text/csv schema only because API Gateway's validator would parse
    # CSV as JSON; the API accepts CSV bodies, so they are fuzzed too.
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and "requestBody" in operation:
                body = source["paths"][path][method]["requestBody"]
                operation["requestBody"] = copy.deepcopy(body)
    return document


def error_shape(response: schemathesis.Response | requests.Response) -> str | None:
    """Why an error answer is not ``{"error": {"code", "message"}}`` (None when it is)."""
    if isinstance(response, requests.Response):
        content_type = response.headers.get("content-type", "")
    else:
        content_type = ",".join(response.headers.get("content-type", []))
    if not content_type.startswith("application/json"):
        return f"content-type {content_type!r}, not application/json"
    if "Traceback" in response.text:
        return "the body carries a stack trace"
    try:
        document = response.json()
    except ValueError:
        return f"the body is not JSON: {response.text[:200]!r}"
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return f"no error object: {response.text[:200]!r}"
    for name in ("code", "message"):
        if not isinstance(error.get(name), str) or not error[name]:
            return f"error.{name} is not a non-empty string: {response.text[:200]!r}"
    return None


@dataclass
class FuzzRun:
    """Cases sent and the failures found (one line per distinct failure)."""

    cases: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def fail(self, key: str, detail: str) -> None:
        self.failures.setdefault(key, detail)

    def report(self) -> str:
        return "\n\n".join(f"{key}\n{detail}" for key, detail in self.failures.items())


def fuzz(emulator: Emulator, max_examples: int) -> FuzzRun:
    """Every operation of the deployment's document, positive and negative cases."""
    schema = schemathesis.openapi.from_dict(served_document(emulator))
    key = emulator.api_key
    assert key, "the fuzzed deployment uses apiAuth api-key"
    run = FuzzRun()
    session = requests.Session()
    results = list(schema.get_all_operations())
    assert not [r.err() for r in results if isinstance(r, Err)], "the document is invalid"
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert operations

    def send(case: schemathesis.Case) -> schemathesis.Response | None:
        return _send(case, run, session, emulator.url, key)

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_cases(operation.as_strategy(generation_mode=mode), max_examples, send)
    _guided_requests(schema, session, emulator.url, key, max(2, max_examples // 10), send)
    _off_route_requests(run, session, emulator.url, key, max_examples)
    session.close()
    return run


def _guided_requests(
    schema: OpenApiSchema,
    session: requests.Session,
    base_url: str,
    key: str,
    max_examples: int,
    send: Callable[[schemathesis.Case], schemathesis.Response | None],
) -> None:
    """Requests the schema alone cannot aim at, since it does not know the model's features:

    - rows the model accepts, in every body form, so that the success answers (200 / 202, and the
      jobs they create) are checked against their schemas too;
    - the same rows with one value broken (a huge integer, a string, null, a nested array, a
      float32 overflow, a missing or unknown feature) and other content types: a 4xx each;
    - the limits: a body over 6 MB (413) and more rows than maxRows;
    - an Idempotency-Key replayed with the same body (the same job) and with another one (422);
    - every job created: GET, DELETE (200, or 409 once finished), GET.
    """
    health = session.get(f"{base_url}/health", headers={contract.API_KEY_HEADER: key}, timeout=30)
    names = list(health.json()["model"]["feature_names"])
    job_ids: list[str] = []
    for operation_id in ("predict", "submit_job"):
        try:
            operation = schema.find_operation_by_id(operation_id)
        except LookupError:
            continue

        def post(
            body: tuple[str, Any], operation: Any = operation, headers: Any = None
        ) -> schemathesis.Response | None:
            media_type, document = body
            case = operation.Case(body=document, media_type=media_type, headers=headers)
            response = send(case)
            if response is not None and response.status_code == 202:
                job_ids.append(str(response.json()["job_id"]))
            return response

        _run_cases(valid_bodies(names), max_examples, post)
        _run_cases(broken_bodies(names), 4 * max_examples, post)
        row = [0.5] * len(names)
        too_many = "\n".join(["1" + ",0.5" * (len(names) - 1)] * (contract.DEFAULT_MAX_ROWS + 1))
        post(("text/csv", too_many))
        post(("text/csv", (",".join(map(str, row)) + "\n") * 160_000))  # ~7 MB
        if operation_id == "submit_job":
            idempotency = {"Idempotency-Key": f"fuzz-{len(job_ids)}-{base_url[-12:]}"}
            first = post(("application/json", {"instances": [row]}), headers=idempotency)
            again = post(("application/json", {"instances": [row]}), headers=idempotency)
            assert first is not None and again is not None
            assert again.json()["job_id"] == first.json()["job_id"]
            other = post(("application/json", {"instances": [row, row]}), headers=idempotency)
            assert other is not None and other.status_code == 422, other and other.text
            # upload jobs: every format (the architecture refuses those it cannot run, 400),
            # batch options, and broken upload requests
            for fmt in ("csv", "parquet", "jsonl", "json"):
                post(("application/json", {"upload": {"format": fmt}}))
            post(("application/json", {"upload": {"format": "csv", "shards": 2}}))
            for broken in UPLOAD_BROKEN:
                post(("application/json", broken))
    # each job: its status (and result part), a start (202 for an upload started twice, 409 for
    # nothing uploaded or not an upload job), a cancel (200, or 409 once finished), its status
    for operation_id in ("get_job", "start_job", "cancel_job", "get_job", "start_job"):
        try:
            operation = schema.find_operation_by_id(operation_id)
        except LookupError:
            continue
        for job_id in job_ids:
            send(operation.Case(path_parameters={"id": job_id}))
            if operation_id == "get_job":
                send(operation.Case(path_parameters={"id": job_id}, query={"part": 1}))
    # the caller's job list, page by page, and tokens it never handed out
    try:
        listing = schema.find_operation_by_id("list_jobs")
    except LookupError:
        return
    token: str | None = None
    for _ in range(3):
        page = send(listing.Case(query={"limit": 2, **({"next_token": token} if token else {})}))
        token = (
            page.json().get("next_token") if page is not None and page.status_code == 200 else None
        )
        if not token:
            break
    for query in ({"next_token": "e30"}, {"next_token": "%%"}, {"limit": 1000}):
        send(listing.Case(query=query))


UPLOAD_BROKEN: tuple[dict[str, Any], ...] = (
    {"upload": {"format": "xml"}},
    {"upload": "csv"},
    {"upload": {}},
    {"upload": {"format": "csv", "bogus": 1}},
    {"upload": {"format": "csv", "shards": 0}},
    {"upload": {"format": "csv", "priority": "urgent"}},
    {"upload": {"format": "csv"}, "instances": [[1.0]]},
    {"upload": {"format": "csv"}, "input_uri": "s3://b/inputs/x.csv"},
)


OFF_ROUTE_SEGMENTS = ("predict", "jobs", "health", "v1", "", ".", "..", "%2F", "x y", "é", "{id}")


def _off_route_requests(
    run: FuzzRun, session: requests.Session, base_url: str, key: str, max_examples: int
) -> None:
    """Any method on any path, documented or not (API Gateway answers an unknown route with
    403 MISSING_AUTHENTICATION_TOKEN): never a 5xx, every error in the JSON error shape."""
    methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    segments = st.one_of(
        st.sampled_from(OFF_ROUTE_SEGMENTS), st.text("abc-_~!$&'()*+,;=:@", max_size=6)
    )
    paths = st.lists(segments, max_size=4).map(lambda parts: "/" + "/".join(parts))

    def send(request: tuple[str, str, bool]) -> None:
        method, path, with_key = request
        run.cases += 1
        headers = {contract.API_KEY_HEADER: key} if with_key else {}
        response = session.request(method, base_url + path, headers=headers, timeout=60)
        label = f"{method} {path} [off-route]"
        if response.status_code >= 500:
            run.fail(f"{label}: {response.status_code}", response.text[:500])
        elif response.status_code >= 400 and method != "HEAD":
            problem = error_shape(response)
            if problem is not None:
                run.fail(f"{label}: error shape ({response.status_code})", problem)

    _run_cases(st.tuples(methods, paths, st.booleans()), max_examples, send)


def _rows(names: list[str]) -> st.SearchStrategy[list[list[Any]]]:
    value = st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, width=32),
        st.integers(-(10**6), 10**6),
    )
    return st.lists(
        st.lists(value, min_size=len(names), max_size=len(names)), min_size=1, max_size=5
    )


def _csv(names: list[str] | None, rows: list[list[Any]]) -> str:
    lines = [",".join(names)] if names is not None else []
    return "\n".join(lines + [",".join(map(str, row)) for row in rows]) + "\n"


def valid_bodies(names: list[str]) -> st.SearchStrategy[tuple[str, Any]]:
    """(media type, body) of 1-5 valid rows: JSON arrays, JSON objects by name, or CSV."""
    rows = _rows(names)
    as_arrays = rows.map(lambda r: ("application/json", {"instances": r}))
    as_objects = rows.map(
        lambda r: (
            "application/json",
            {"instances": [dict(zip(names, row, strict=True)) for row in r]},
        )
    )
    as_csv = rows.map(lambda r: ("text/csv", _csv(names, r)))
    return st.one_of(as_arrays, as_objects, as_csv)


BROKEN_VALUES = (10**400, -(10**400), 1e39, "1.5", "", True, None, [1.0], {"v": 1}, "NaN")
OTHER_MEDIA_TYPES = (
    "text/plain",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
)


@st.composite
def broken_bodies(draw: st.DrawFn, names: list[str]) -> tuple[str, Any]:
    """Valid rows with one thing wrong; each must be refused with a 4xx."""
    rows = draw(_rows(names))
    i = draw(st.integers(0, len(rows) - 1))
    j = draw(st.integers(0, len(names) - 1))
    how = draw(
        st.sampled_from(["value", "object value", "csv value", "shape", "media type", "encoding"])
    )
    if how == "value":
        rows[i][j] = draw(st.sampled_from(BROKEN_VALUES))
        return "application/json", {"instances": rows}
    if how == "object value":
        objects = [dict(zip(names, row, strict=True)) for row in rows]
        change = draw(st.sampled_from(["value", "missing", "unknown"]))
        if change == "value":
            objects[i][names[j]] = draw(st.sampled_from(BROKEN_VALUES))
        elif change == "missing":
            del objects[i][names[j]]
        else:
            objects[i]["no such feature"] = 1.0
        return "application/json", {"instances": objects}
    if how == "csv value":
        cells = [[str(v) for v in row] for row in rows]
        cells[i][j] = draw(st.sampled_from(["", "abc", "1e999", "nan", "1,2", '"']))
        header = draw(st.sampled_from([None, names]))
        return "text/csv", _csv(header, cells)
    if how == "shape":
        rows[i] = rows[i][: draw(st.integers(0, len(names) - 1))]
        return "application/json", {"instances": rows}
    if how == "encoding":  # not UTF-8: API Gateway passes it base64-encoded to the function
        text = _csv(names, rows)
        return "text/csv", text.encode("utf-16") if draw(st.booleans()) else b"\xff" + text.encode()
    media_type = draw(st.sampled_from(OTHER_MEDIA_TYPES))
    return media_type, _csv(names, rows)


def _run_cases(
    strategy: st.SearchStrategy[Any], max_examples: int, send: Callable[..., Any]
) -> None:
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def cases(case: Any) -> None:
        send(case)

    cases()


def _send(
    case: schemathesis.Case, run: FuzzRun, session: requests.Session, base_url: str, key: str
) -> schemathesis.Response | None:
    label = f"{case.operation.label} [{case.meta.generation.mode.value if case.meta else '?'}]"
    headers = {contract.API_KEY_HEADER: key}
    run.cases += 1
    try:
        response = case.call(base_url, session=session, headers=headers, timeout=60)
    except requests.RequestException as exc:
        run.fail(f"{label}: transport error {type(exc).__name__}", case.as_curl_command(headers))
        return None
    counts = run.statuses.setdefault(label, {})
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            run.fail(f"{label}: {failure.title}", str(group)[:3000])
    if response.status_code >= 400:
        problem = error_shape(response)
        if problem is not None:
            curl = case.as_curl_command(headers)
            run.fail(f"{label}: error shape ({response.status_code})", f"{problem}\n{curl}")
    return response


def _fuzz_architecture(emulators: Emulators, architecture: str, max_examples: int) -> FuzzRun:
    emulator = emulators.get(architecture, sync_wait_seconds=SYNC_WAIT_SECONDS)
    run = fuzz(emulator, max_examples)
    print(f"\n{architecture}: {run.cases} cases; statuses {json.dumps(run.statuses)}")
    assert not run.failures, f"{len(run.failures)} fuzz failure(s):\n\n{run.report()}"
    return run


def test_fuzz_smoke_lambda(emulators: Emulators) -> None:
    """A few cases per operation of the lambda deployment (make test)."""
    run = _fuzz_architecture(emulators, contract.ARCH_LAMBDA, SMOKE_EXAMPLES)
    assert run.cases >= SMOKE_EXAMPLES * 2 * 2


@pytest.mark.parametrize(
    ("architecture", "path"),
    [
        (contract.ARCH_LAMBDA, "/predict"),
        (contract.ARCH_LAMBDA_ECS, "/predict"),
        (contract.ARCH_LAMBDA_ECS, "/jobs"),
    ],
)
def test_a_body_that_is_not_utf8_is_a_400(
    emulators: Emulators, architecture: str, path: str
) -> None:
    """Was a 500: Powertools' decoded_body raised UnicodeDecodeError on the base64 body API
    Gateway passes for bytes that are not UTF-8 (the predict and the job API handlers)."""
    emulator = emulators.get(architecture, sync_wait_seconds=SYNC_WAIT_SECONDS)
    with Api(emulator.url, emulator.api_key) as api:
        response = api.post(
            path, data="a,b\n1,2\n".encode("utf-16"), headers={"content-type": "text/csv"}
        )
    assert_error(response, 400, "invalid_encoding", "not UTF-8")


@pytest.mark.verify
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_fuzz_api(emulators: Emulators, architecture: str) -> None:
    run = _fuzz_architecture(emulators, architecture, VERIFY_EXAMPLES)
    record("fuzz", architecture, fuzz_cases=run.cases, fuzz_failures=len(run.failures))

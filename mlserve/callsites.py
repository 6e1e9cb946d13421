"""Every AWS call site of runtime/, found by reading the code (``ast``), not by running it.

A call site is a boto3 client method call that sends a request: a keyword-only call of a method
whose name is an operation of a service runtime/ uses (botocore's service models: ``get_object``,
``update_item``, ...), ``paginator.paginate(...)`` of ``get_paginator("<operation>")``, or one of
S3's managed transfers (``upload_file`` ...: boto3 sends their requests from its own threads).
``generate_presigned_url`` and the like sign locally and send nothing: not call sites. The
predictor's GetObject without boto3 (runtime/s3object.py ``ObjectReader.get_object``) has
boto3's method name and keywords, so the call that sends it is found like a boto3 call.

A site is named ``<path>::<function>::<operation>`` (``#2`` etc. for a second call of the same
operation in the same function), so its name survives edits elsewhere in the file.
tests/verify/test_least_privilege.py checks that the recorded suites reach every site once per
identity that can make the call (tests/verify/call_sites.py lists them), and a fast test that the
list and this inventory agree.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
RUNTIME: Final = ROOT / "runtime"
# The services runtime/ creates clients of (RuntimeContext.client): their operations are calls.
SERVICES: Final = ("s3", "dynamodb", "ecs", "stepfunctions", "batch", "lambda", "logs", "sts")
# boto3's S3 managed transfers (boto3.s3.inject): positional arguments, requests sent by
# s3transfer's worker threads.
TRANSFERS: Final = frozenset(
    {"upload_file", "upload_fileobj", "download_file", "download_fileobj", "copy"}
)


@functools.cache
def _operations() -> dict[str, tuple[str, str]]:
    """boto3 method name -> (service, API operation name), for every :data:`SERVICES` operation
    (the first service listed wins a name two services share)."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    found: dict[str, tuple[str, str]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        for operation in model.operation_names:
            found.setdefault(xform_name(operation), (service, operation))
    return found


def operation_names() -> frozenset[str]:
    """Every operation of :data:`SERVICES`, as boto3 names the client methods."""
    return frozenset(_operations())


def api_operation(method: str) -> tuple[str, str]:
    """(service, API operation) of a client method: ``get_object`` -> ``("s3", "GetObject")``;
    a managed transfer names the request it is made of (``upload_file`` -> PutObject)."""
    if method in TRANSFERS:
        return "s3", "GetObject" if method.startswith("download") else "PutObject"
    return _operations()[method]


@dataclass(frozen=True)
class CallSite:
    path: str  # relative to the repository, posix
    function: str  # the enclosing function's qualified name ("<module>" at module level)
    operation: str  # the client method (for a paginator: the paginated operation)
    index: int  # 1 for the first call of ``operation`` in ``function``, 2 for the second ...
    first_line: int
    last_line: int

    @property
    def service(self) -> str:
        return api_operation(self.operation)[0]

    @property
    def api_operation(self) -> str:
        return api_operation(self.operation)[1]

    @property
    def name(self) -> str:
        suffix = f"#{self.index}" if self.index > 1 else ""
        return f"{self.path}::{self.function}::{self.operation}{suffix}"

    def covers(self, line: int) -> bool:
        return self.first_line <= line <= self.last_line


def _operation(call: ast.Call) -> str | None:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr == "paginate":
        inner = func.value
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Attribute)
            and inner.func.attr == "get_paginator"
            and inner.args
            and isinstance(inner.args[0], ast.Constant)
            and isinstance(inner.args[0].value, str)
        ):
            return inner.args[0].value
        return None
    if func.attr in TRANSFERS:
        return func.attr if len(call.args) + len(call.keywords) >= 2 else None
    if func.attr in operation_names() and not call.args:
        return func.attr
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.scope: list[str] = []
        self.found: list[CallSite] = []
        self._for_lines: dict[int, int] = {}  # id(iter expression) -> the for statement's line

    def _visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = _visit_scope
    visit_AsyncFunctionDef = _visit_scope
    visit_ClassDef = _visit_scope

    def visit_For(self, node: ast.For) -> None:
        # a paginator is iterated by the for statement: its requests are sent from that line
        self._for_lines[id(node.iter)] = node.lineno
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        operation = _operation(node)
        if operation is not None:
            function = ".".join(self.scope) or "<module>"
            index = 1 + sum(
                1 for s in self.found if s.function == function and s.operation == operation
            )
            first = min(node.lineno, self._for_lines.get(id(node), node.lineno))
            last = node.end_lineno or node.lineno
            self.found.append(CallSite(self.path, function, operation, index, first, last))
        self.generic_visit(node)


def sites_in(path: Path, root: Path = ROOT) -> list[CallSite]:
    finder = _Finder(path.relative_to(root).as_posix())
    finder.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return finder.found


def inventory(root: Path = ROOT) -> list[CallSite]:
    """Every call site of ``root``/runtime, in file and line order."""
    found: list[CallSite] = []
    for path in sorted((root / "runtime").rglob("*.py")):
        found.extend(sites_in(path, root))
    return found


def site_at(sites: Iterable[CallSite], path: str, line: int) -> CallSite | None:
    """The innermost call site of ``path`` spanning ``line`` (None: no listed site there)."""
    spanning = [s for s in sites if s.path == path and s.covers(line)]
    return min(spanning, key=lambda s: s.last_line - s.first_line, default=None)


def runtime_frames(frame: object) -> Iterator[tuple[str, int]]:
    """(path relative to the repository, line) of each runtime/ frame, innermost first."""
    prefix = str(RUNTIME) + "/"
    while frame is not None:
        filename = frame.f_code.co_filename  # type: ignore[attr-defined]
        if filename.startswith(prefix):
            yield Path(filename).relative_to(ROOT).as_posix(), frame.f_lineno  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]

"""Run the real Pulumi program (__main__.py) under Pulumi's runtime with a custom provider.

``run_program(body, config, mocks=...)`` runs a program once, without the Pulumi CLI or engine,
and returns a :class:`StackRun`: every resource registration (components included) with its
type, logical name, URN, parent URN, inputs, outputs and resource options, every invoke, and the
resolved stack outputs. ``mocks`` is the provider: it answers each custom resource's
registration with ``(id, outputs)`` and each invoke with its result. Two users:

* tests/infra (``tests/infra/conftest.py``): a fake provider with plausible ids, to assert what
  the program declares;
* the local deployment engine (:mod:`mlserve.local.deploy.engine`): a provider that creates each
  resource in the embedded moto and answers with moto's real ids and ARNs.

How it works:

* Parents and options: ``MockResourceArgs`` carries no parent and no options, so a
  ``MockMonitor`` subclass (``set_mocks(..., monitor=...)``) records the raw
  ``RegisterResourceRequest`` of each registration: ``parent`` (URN), ``retainOnDelete``,
  ``protect``, ``dependencies``. That is exactly what the engine would receive. The SDK sends a
  registration only once every input (and every ``depends_on`` resource) has resolved, so
  registrations arrive in dependency order, as the engine would create them.
* Waiting: the program runs inside ``pulumi.runtime.stack.run_pulumi_func``, the SDK's own
  driver, which after the program returns waits for every outstanding RPC and every pending
  Output (``wait_for_rpcs``) and re-raises the program's (or an apply's) exception.
* Re-runnable: each run happens in a fresh ``contextvars`` context with the root stack resource
  reset, its own mocks, monitor and config (``set_all_config``), so one process can run the
  program several times with different config.
"""

from __future__ import annotations

import contextvars
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import ROOT, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO: Final = Path(__file__).resolve().parents[3]
MAIN: Final = REPO / "__main__.py"
PROJECT: Final = "mlserve"
STACK_TYPE: Final = "pulumi:pulumi:Stack"


# --- records --------------------------------------------------------------------------------------
@dataclass
class Registered:
    """One RegisterResource call: what the engine was asked to create."""

    type: str
    name: str
    urn: str
    id: str  # the provider's id ("" for components)
    parent: str  # parent URN ("" only for the stack itself)
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    retain_on_delete: bool | None
    protect: bool | None
    delete_before_replace: bool
    dependencies: list[str]

    @property
    def is_component(self) -> bool:
        return not self.custom


@dataclass
class StackRun:
    resources: list[Registered]
    exports: dict[str, Any]
    secret_exports: set[str]
    calls: list[str] = field(default_factory=list)
    # (token, arguments) of every invoke, in call order (``calls`` holds just the tokens).
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children(self, parent: Registered) -> list[Registered]:
        return [r for r in self.resources if r.parent == parent.urn]

    @property
    def stack(self) -> Registered:
        return self.one(STACK_TYPE)

    def types(self) -> set[str]:
        return {r.type for r in self.resources}


# --- the monitor ----------------------------------------------------------------------------------
class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, additionally recording each raw registration and invoke."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.registered_outputs: dict[str, dict[str, Any]] = {}  # component URN -> outputs
        self.calls: list[str] = []
        self.invocations: list[tuple[str, dict[str, Any]]] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        inputs = rpc.deserialize_properties(request.object)
        outputs = rpc.deserialize_properties(response.object) if response.object else {}
        self.registered.append(
            Registered(
                type=request.type,
                name=request.name,
                urn=response.urn,
                id=response.id,
                parent=request.parent,
                custom=request.custom,
                inputs=inputs,
                outputs=outputs,
                retain_on_delete=(
                    request.retainOnDelete if request.HasField("retainOnDelete") else None
                ),
                protect=request.protect if request.HasField("protect") else None,
                delete_before_replace=request.deleteBeforeReplace,
                dependencies=list(request.dependencies),
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        self.registered_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)

    def Invoke(self, request: Any) -> Any:
        if request.tok != "pulumi:pulumi:getResource":
            self.calls.append(request.tok)
            self.invocations.append((request.tok, dict(rpc.deserialize_properties(request.args))))
        return super().Invoke(request)


# --- running the program --------------------------------------------------------------------------
def config_map(config: Mapping[str, Any]) -> dict[str, str]:
    """Bare keys go to the project namespace; values are strings as the CLI passes them."""
    result: dict[str, str] = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        result[full] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return result


def run_program(
    body: Callable[[], object],
    config: Mapping[str, Any] | None = None,
    *,
    mocks: pulumi.runtime.Mocks,
    stack: str = "test",
    preview: bool = False,
    runs: list[StackRun] | None = None,
) -> StackRun:
    """Run ``body`` as a Pulumi program with ``mocks`` as its provider; return what it registered.

    Raises whatever the program raises (e.g. SettingsError), after the SDK has drained its RPCs;
    what was registered until then is appended to ``runs`` (when given) either way.
    """
    monitor = RecordingMonitor(mocks)
    exports: dict[str, Any] = {}
    secret: set[str] = set()

    async def program() -> None:
        body()
        root = get_root_resource()
        outputs: dict[str, Any] = getattr(root, "outputs", {})
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            exports[key] = await out.future()
            if await out.is_secret():
                secret.add(key)

    def run() -> None:
        ROOT.set(None)  # a new root Stack resource for this run
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor
        )
        pulumi.runtime.set_all_config(config_map(config or {}))
        _sync_await(run_pulumi_func(program))

    result = StackRun(
        resources=monitor.registered,
        exports=exports,
        secret_exports=secret,
        calls=monitor.calls,
        invocations=monitor.invocations,
        component_outputs=monitor.registered_outputs,
    )
    if runs is not None:
        runs.append(result)
    contextvars.copy_context().run(run)
    return result


def run_main(
    config: Mapping[str, Any],
    *,
    mocks: pulumi.runtime.Mocks,
    stack: str = "test",
    preview: bool = False,
    runs: list[StackRun] | None = None,
) -> StackRun:
    """Run the real program, __main__.py, once with ``config``."""
    return run_program(
        lambda: runpy.run_path(str(MAIN), run_name="__main__"),
        config,
        mocks=mocks,
        stack=stack,
        preview=preview,
        runs=runs,
    )

"""``python -m mlserve cost``: what a month of mlserve costs on each architecture.

Every price lives in ``mlserve/prices.json`` (with its date and the AWS pricing page it comes
from); this module holds none. The model, in three steps (docs/cost.md has every assumption):

1. **Configuration**: the stack's own settings (Pulumi.yaml defaults, a ``Pulumi.<stack>.yaml``
   with ``--stack``, then command-line overrides): Lambda memory and CPU architecture, the
   Fargate task size, the polling mode and interval, the sync wait, the Batch compute type.
2. **Usage**: a workload (real-time requests and/or jobs per month, durations) becomes a list of
   :class:`Usage` per architecture: API Gateway requests, Lambda requests and GB-seconds,
   Fargate vCPU- and GB-hours, Step Functions state transitions, DynamoDB request units, S3
   requests, SageMaker Serverless seconds and data. The Step Functions part is counted by
   walking the real definitions of ``components/workflows.py`` (:func:`walk_workflow`).
3. **Bill**: :func:`bill` adds the usage of one architecture per price item, subtracts the
   monthly free tier from the month's total (never below zero; one free tier per account
   shared by all the functions, x86_64 and arm64 alike) and applies the price tiers.

Each architecture is billed as if it were the only workload of its account (they are
alternatives); ``--no-free-tier`` prices an account whose free tier is already used.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from runtime import contract

ARCH_SAGEMAKER: Final = "sagemaker-serverless"
CONTAINER_ARCHITECTURES: Final = (
    contract.ARCH_LAMBDA_ECS,
    contract.ARCH_STEPFUNCTIONS_ECS,
    contract.ARCH_STEPFUNCTIONS_BATCH,
)
MLSERVE_ARCHITECTURES: Final = (contract.ARCH_LAMBDA, *CONTAINER_ARCHITECTURES)
ARCHITECTURES: Final = (*MLSERVE_ARCHITECTURES, ARCH_SAGEMAKER)
PRICES_FILE: Final = "prices.json"
DEFAULT_CHART: Final = Path("build/cost.png")
# The volumes the chart and the break-even search cover (requests + jobs per month).
VOLUME_RANGE: Final = (1.0, 1e10)
CURVE_POINTS: Final = 161
MB_PER_GB: Final = 1024
KB_PER_GB: Final = 1024 * 1024
SECONDS_PER_HOUR: Final = 3600
MS_PER_SECOND: Final = 1000
CPU_UNITS_PER_VCPU: Final = 1024


class CostError(ValueError):
    """Bad input to the calculator (a setting, a workload figure, the price file)."""


# --- prices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    up_to: float | None  # the month's usage this tier ends at (units); None = no end
    price: float  # dollars per ``PriceItem.per`` units


@dataclass(frozen=True)
class PriceItem:
    key: str
    description: str
    unit: str
    per: float
    tiers: tuple[Tier, ...]
    source: str
    date: str
    free_tier: str | None = None
    note: str | None = None

    @property
    def unit_price(self) -> float:
        """Dollars per unit in the first tier."""
        return self.tiers[0].price / self.per

    def charge(self, quantity: float) -> float:
        """Dollars for ``quantity`` billable units in a month (after the free tier), tiered."""
        cost, start = 0.0, 0.0
        for tier in self.tiers:
            end = math.inf if tier.up_to is None else tier.up_to
            if quantity <= start:
                break
            cost += (min(quantity, end) - start) * tier.price / self.per
            start = end
        return cost

    def price_text(self) -> str:
        """``$0.20 / 1M``, ``$0.0000133334`` (per unit), ``*`` marks a tiered price."""
        per = "" if self.per == 1 else f" / {_count_text(self.per)}"
        tiered = "*" if len(self.tiers) > 1 else ""
        return f"${_decimal(self.tiers[0].price)}{per}{tiered}"


@dataclass(frozen=True)
class FreeTier:
    key: str
    quantity: float
    unit: str
    description: str


@dataclass(frozen=True)
class PriceList:
    region: str
    taken_on: str
    items: Mapping[str, PriceItem]
    free_tiers: Mapping[str, FreeTier]
    rules: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path | None = None) -> PriceList:
        """The price file: ``path``, or the one shipped in the package (mlserve/prices.json)."""
        try:
            if path is None:
                text = resources.files("mlserve").joinpath(PRICES_FILE).read_text()
            else:
                text = path.read_text()
            document = json.loads(text)
        except (OSError, ValueError) as exc:
            raise CostError(f"cannot read the price file {path or PRICES_FILE}: {exc}") from None
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PriceList:
        try:
            items = {
                key: PriceItem(
                    key=key,
                    description=spec["description"],
                    unit=spec["unit"],
                    per=float(spec["per"]),
                    tiers=tuple(Tier(t["up_to"], float(t["price"])) for t in spec["tiers"]),
                    source=spec["source"],
                    date=spec["date"],
                    free_tier=spec.get("free_tier"),
                    note=spec.get("note"),
                )
                for key, spec in document["items"].items()
            }
            free_tiers = {
                key: FreeTier(key, float(spec["quantity"]), spec["unit"], spec["description"])
                for key, spec in document["free_tiers"].items()
            }
            prices = cls(
                region=document["region"],
                taken_on=document["taken_on"],
                items=items,
                free_tiers=free_tiers,
                rules=dict(document["billing_rules"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CostError(f"malformed price file: {exc!r}") from None
        for item in items.values():
            if item.free_tier is not None and item.free_tier not in free_tiers:
                raise CostError(f"price {item.key}: unknown free tier {item.free_tier!r}")
            if not item.tiers or item.tiers[-1].up_to is not None:
                raise CostError(f"price {item.key}: the last tier must have no end (up_to null)")
        return prices

    def item(self, key: str) -> PriceItem:
        try:
            return self.items[key]
        except KeyError:
            raise CostError(f"the price file has no item {key!r}") from None

    def rule(self, key: str) -> Any:
        try:
            return self.rules[key]
        except KeyError:
            raise CostError(f"the price file has no billing rule {key!r}") from None


# --- bills -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    item: str  # a PriceList item key
    quantity: float  # units per month
    what: str  # where it comes from, e.g. "predictor" or "RunECS + CheckJobStatus"


@dataclass(frozen=True)
class LineItem:
    price: PriceItem
    quantity: float
    free: float  # units of the free tier applied
    cost: float
    detail: str


@dataclass(frozen=True)
class Bill:
    architecture: str
    lines: tuple[LineItem, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(line.cost for line in self.lines)


def bill(
    architecture: str,
    prices: PriceList,
    usages: Iterable[Usage],
    *,
    free_tier: bool = True,
    notes: Sequence[str] = (),
) -> Bill:
    """One line per price item: the month's total quantity, minus the free tier, priced.

    A free tier is subtracted once from the month's total of every item sharing it (Lambda's
    400,000 GB-s cover x86_64 and arm64 together), never below zero; when several items share
    one, the dearer unit price gets it first (the most favourable reading; a stack has one
    Lambda CPU architecture anyway)."""
    totals: dict[str, float] = {}
    details: dict[str, list[str]] = {}
    for usage in usages:
        if usage.quantity < 0:
            raise CostError(f"negative usage of {usage.item}: {usage.quantity}")
        prices.item(usage.item)
        totals[usage.item] = totals.get(usage.item, 0.0) + usage.quantity
        if usage.what not in details.setdefault(usage.item, []):
            details[usage.item].append(usage.what)
    free: dict[str, float] = dict.fromkeys(totals, 0.0)
    if free_tier:
        for tier in prices.free_tiers.values():
            remaining = tier.quantity
            sharing = [k for k in totals if prices.item(k).free_tier == tier.key]
            for key in sorted(sharing, key=lambda k: -prices.item(k).unit_price):
                free[key] = min(remaining, totals[key])
                remaining -= free[key]
    lines = tuple(
        LineItem(
            price=prices.item(key),
            quantity=quantity,
            free=free[key],
            cost=prices.item(key).charge(max(0.0, quantity - free[key])),
            detail=", ".join(details[key]),
        )
        for key, quantity in totals.items()
    )
    return Bill(architecture, lines, tuple(notes))


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StackConfig:
    """The settings the bill depends on (Pulumi.yaml keys in brackets)."""

    lambda_architecture: str = "arm64"  # [lambdaArchitecture]
    lambda_memory: int = 1024  # [lambdaMemory] predictor and job API functions, MB
    task_cpu: int = 1024  # [taskCpu] CPU units
    task_memory: int = 2048  # [taskMemory] MB
    polling: str = "lambda"  # [polling]
    poll_interval_seconds: int = 10  # [pollIntervalSeconds]
    sync_wait_seconds: int = 25  # [syncWaitSeconds]
    batch_compute_type: str = "FARGATE"  # [batchComputeType]
    provisioned_concurrency: int = 0  # [provisionedConcurrency] (not priced: a note)
    max_rows: int = 10_000  # [maxRows] rows a request (a job sent to lambda is split)
    lambda_timeout: int = 29  # [lambdaTimeout] seconds
    stack: str | None = None

    @property
    def step_memory(self) -> int:
        """Memory of the workflow step functions (components/stepfunctions.py), MB."""
        from components.stepfunctions import STEP_FUNCTION_MEMORY

        return STEP_FUNCTION_MEMORY

    @property
    def trigger_memory(self) -> int:
        """Memory of the stepfunctions-batch S3 trigger (components/batch.py), MB."""
        from components.batch import TRIGGER_MEMORY

        return TRIGGER_MEMORY


# Pulumi.yaml key -> StackConfig field
CONFIG_KEYS: Final = {
    "lambdaArchitecture": "lambda_architecture",
    "lambdaMemory": "lambda_memory",
    "taskCpu": "task_cpu",
    "taskMemory": "task_memory",
    "polling": "polling",
    "pollIntervalSeconds": "poll_interval_seconds",
    "syncWaitSeconds": "sync_wait_seconds",
    "batchComputeType": "batch_compute_type",
    "provisionedConcurrency": "provisioned_concurrency",
    "maxRows": "max_rows",
    "lambdaTimeout": "lambda_timeout",
}


def load_stack_config(
    stack: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    project_file: Path | None = None,
) -> StackConfig:
    """Pulumi.yaml's defaults (components.settings reads the schema), the stack file's values
    (``Pulumi.<stack>.yaml``), then ``overrides`` (StackConfig field -> value; None = unset),
    validated with the same allowed values as components/settings.py."""
    import yaml

    from components import settings

    project = project_file or settings.PROJECT_FILE
    schema = settings.load_project_schema(project)
    raw: dict[str, Any] = {field_: schema[key]["default"] for key, field_ in CONFIG_KEYS.items()}
    if stack is not None:
        stack_file = project.parent / f"Pulumi.{stack}.yaml"
        try:
            document = yaml.safe_load(stack_file.read_text()) or {}
        except OSError as exc:
            raise CostError(f"cannot read the stack file {stack_file}: {exc.strerror}") from None
        prefix = f"{settings.NAMESPACE}:"
        for name, value in (document.get("config") or {}).items():
            key = str(name).removeprefix(prefix)
            if str(name).startswith(prefix) and key in CONFIG_KEYS:
                raw[CONFIG_KEYS[key]] = value
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = value
    return _validated(raw, stack)


def _validated(raw: Mapping[str, Any], stack: str | None) -> StackConfig:
    from components import settings

    problems: list[str] = []

    def integer(name: str, lo: int, hi: int) -> int:
        value = raw[name]
        try:
            number = int(str(value).strip())
        except ValueError:
            problems.append(f"{name}: {value!r} is not an integer")
            return lo
        if not lo <= number <= hi:
            problems.append(f"{name}: {number} is out of range {lo}-{hi}")
        return number

    def choice(name: str, allowed: Sequence[str]) -> str:
        value = str(raw[name]).strip()
        if value not in allowed:
            problems.append(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        return value

    config = StackConfig(
        lambda_architecture=choice("lambda_architecture", settings.LAMBDA_ARCHITECTURES),
        lambda_memory=integer("lambda_memory", 128, 10240),
        task_cpu=integer("task_cpu", 256, 16384),
        task_memory=integer("task_memory", 512, 122880),
        polling=choice("polling", settings.POLLING),
        poll_interval_seconds=integer("poll_interval_seconds", 1, 3600),
        sync_wait_seconds=integer("sync_wait_seconds", 0, 25),
        batch_compute_type=choice("batch_compute_type", settings.BATCH_COMPUTE_TYPES),
        provisioned_concurrency=integer("provisioned_concurrency", 0, 1_000_000),
        max_rows=integer("max_rows", 1, 100_000),
        lambda_timeout=integer("lambda_timeout", 1, settings.API_GATEWAY_TIMEOUT_SECONDS),
        stack=stack,
    )
    if config.task_cpu not in settings.FARGATE_MEMORY:
        problems.append(f"task_cpu: {config.task_cpu} is not a Fargate CPU size")
    elif config.task_memory not in settings.FARGATE_MEMORY[config.task_cpu]:
        allowed = settings.describe_fargate_memory(config.task_cpu)
        problems.append(f"task_memory: {config.task_memory} does not fit {config.task_cpu} CPU")
        problems[-1] += f" (allowed: {allowed} MB)"
    if problems:
        raise CostError("invalid configuration: " + "; ".join(problems))
    return config


# --- workload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A month of work and how long each piece takes (docs/cost.md: where the figures come
    from; ``make bench`` measures the handler duration and the batch rows per second)."""

    requests: float = 0.0  # real-time POST /predict requests per month
    jobs: float = 0.0  # batch jobs per month (POST /jobs or a jobs/*.json upload)
    rows_per_job: int = 1_000_000
    rows_per_request: int = 1
    duration_ms: float = 10.0  # predictor Lambda handler duration per request
    api_ms: float = 50.0  # job API Lambda (POST/GET) duration, not counting its sync wait
    step_ms: float = 100.0  # a workflow step Lambda or the S3 trigger
    task_start_seconds: float = 40.0  # Fargate: image pull + start + model load (billed)
    rows_per_second: float = 200_000.0  # scoring rate of one task
    task_seconds: float | None = None  # a task's (or shard's) billed seconds; None = derived
    polls: int | None = None  # status checks per job (polling lambda); None = derived
    status_reads: int = 1  # GET /jobs/{id} per accepted (202) job
    shards: int = 1  # stepfunctions-batch array size
    item_kb: float = 1.0  # job record size (DynamoDB units)
    payload_kb: float = 1.0  # request + response bytes (SageMaker data processed)
    # SageMaker Serverless behind an API Gateway REST API, as mlserve's own API (api keys,
    # throttling); False: clients call InvokeEndpoint directly (SigV4)
    sagemaker_api_gateway: bool = True

    def __post_init__(self) -> None:
        numbers = {
            "requests": self.requests,
            "jobs": self.jobs,
            "duration_ms": self.duration_ms,
            "api_ms": self.api_ms,
            "step_ms": self.step_ms,
            "task_start_seconds": self.task_start_seconds,
            "status_reads": self.status_reads,
            "item_kb": self.item_kb,
            "payload_kb": self.payload_kb,
        }
        problems = [f"{k} must be >= 0, got {v}" for k, v in numbers.items() if v < 0]
        for name in ("rows_per_job", "rows_per_request", "rows_per_second", "shards"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.task_seconds is not None and self.task_seconds <= 0:
            problems.append(f"task_seconds must be > 0, got {self.task_seconds}")
        if self.polls is not None and self.polls < 1:
            problems.append(f"polls must be >= 1, got {self.polls}")
        if self.shards > contract.MAX_SHARDS:
            problems.append(f"shards must be <= {contract.MAX_SHARDS}, got {self.shards}")
        if problems:
            raise CostError("invalid workload: " + "; ".join(problems))

    def scaled(self, factor: float) -> Workload:
        return replace(self, requests=self.requests * factor, jobs=self.jobs * factor)

    @property
    def volume(self) -> float:
        return self.requests + self.jobs

    def task_wall_seconds(self, rows: int, shards: int = 1) -> float:
        """How long one task (or one shard of ``rows`` split ``shards`` ways) runs."""
        if self.task_seconds is not None:
            return self.task_seconds
        return self.task_start_seconds + rows / shards / self.rows_per_second

    def poll_rounds(self, wall_seconds: float, interval_seconds: int) -> int:
        """Status checks of a job watched every ``interval_seconds`` (the first one after one
        Wait): the given ``polls``, or enough rounds to see the task stopped."""
        if self.polls is not None:
            return self.polls
        return max(1, math.ceil(wall_seconds / interval_seconds))


# --- what the code does per job (counted from runtime/; docs/cost.md lists them) --------------


@dataclass(frozen=True)
class Calls:
    """AWS request counts of one code path: DynamoDB item reads/writes, S3 GET/PUT-class."""

    reads: int = 0
    writes: int = 0
    s3_get: int = 0
    s3_put: int = 0


CALLS: Final[Mapping[str, Calls]] = {
    # runtime.jobs.JobStore.create: one conditional PutItem
    "job_api_create": Calls(writes=1),
    # lambda-ecs LambdaEcsLauncher.start: RunTask, then the task ARN on the record
    "lambda_ecs_start": Calls(writes=1),
    # LambdaEcsLauncher.wait: one consistent GetItem per describe round (snapshot)
    "wait_round": Calls(reads=1),
    # GET /jobs/{id}: one consistent GetItem
    "status_read": Calls(reads=1),
    # stepfunctions-batch launcher _complete for inline rows: staged input PUT + record update
    "batch_stage_inline": Calls(writes=1, s3_put=1),
    # runtime.handlers.trigger: reads the config object, GetItem, PutItem
    "trigger": Calls(reads=1, writes=1, s3_get=1),
    # runtime.handlers.steps: RunECS / SubmitBatchJob: GetItem + UpdateItem; checks: GetItem
    "run_ecs": Calls(reads=1, writes=1),
    "submit_batch_job": Calls(reads=1, writes=1),
    "check_status": Calls(reads=1),
    # CheckBatchStatus records progress when it changed: counted once per job
    "batch_progress": Calls(writes=1),
    # runtime.scoring job mode: GetItem, RUNNING, SUCCEEDED (a failed conditional write is
    # charged too); the model object; an input_uri job reads its input and writes its output
    "scoring_task": Calls(reads=1, writes=2, s3_get=1),
    "scoring_task_input": Calls(s3_get=1, s3_put=1),
    # runtime.scoring batch mode, per shard: GetItem, attempts, model, LIST + GET input, part
    "scoring_shard": Calls(reads=1, writes=1, s3_get=2, s3_put=2),
    # per job: the shard completing the job writes rows (UpdateItem) + LIST + manifest PUT
    "scoring_manifest": Calls(writes=1, s3_put=2),
}


# --- the Step Functions definitions, walked --------------------------------------------------


@dataclass(frozen=True)
class WorkflowPath:
    """The states one job's execution enters (the happy path): what Standard workflows bill."""

    states: tuple[str, ...]
    lambda_invocations: Mapping[str, int]  # function name (from its ARN) -> invocations
    dynamodb_updates: int

    @property
    def transitions(self) -> int:
        return len(self.states)


def _path_value(data: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = data
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _matches(rule: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    if "And" in rule:
        return all(_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _matches(rule["Not"], data)
    present, value = _path_value(data, rule["Variable"])
    if "IsPresent" in rule:
        return present is bool(rule["IsPresent"])
    if "StringEquals" in rule:
        return present and value == rule["StringEquals"]
    if "NumericEquals" in rule:
        return present and isinstance(value, int | float) and value == rule["NumericEquals"]
    raise CostError(f"unsupported Choice rule in a workflow definition: {sorted(rule)}")


def walk_workflow(
    definition: Mapping[str, Any], *, polls: int, shards: int = 1, max_states: int = 100_000
) -> WorkflowPath:
    """Follow ``definition`` for a job that succeeds: every Task whose result lands at
    ``$.check`` (a status check) answers RUNNING ``polls - 1`` times, then SUCCEEDED; an
    ``ecs:runTask.sync`` task exits 0; the job record has ``shards`` and priority low."""
    from components import workflows

    states = definition["States"]
    data: dict[str, Any] = {
        "job_id": "job",
        "task": {"Container": {"ExitCode": 0}, "Description": {}},
        "record": {"shards": str(shards), "priority": contract.PRIORITY_LOW},
    }
    entered: list[str] = []
    invocations: dict[str, int] = {}
    updates = checks = 0
    name: str | None = definition["StartAt"]
    while name is not None:
        if len(entered) >= max_states:
            raise CostError(f"the workflow did not end within {max_states} states")
        state = states[name]
        entered.append(name)
        kind = state["Type"]
        if kind == "Task":
            resource = state["Resource"]
            if resource == workflows.LAMBDA_INVOKE:
                function = str(state["Parameters"]["FunctionName"]).rsplit(":", 1)[-1]
                invocations[function] = invocations.get(function, 0) + 1
            elif resource == workflows.DYNAMODB_UPDATE_ITEM:
                updates += 1
            if state.get("ResultPath") == workflows.CHECK_PATH:
                checks += 1
                done = checks >= polls
                data["check"] = {
                    "state": workflows.CHECK_SUCCEEDED if done else workflows.CHECK_RUNNING,
                    "error": None,
                }
        if kind == "Choice":
            targets = [c["Next"] for c in state["Choices"] if _matches(c, data)]
            name = targets[0] if targets else state.get("Default")
        elif kind in ("Succeed", "Fail") or state.get("End"):
            name = None
        else:
            name = state["Next"]
    return WorkflowPath(tuple(entered), invocations, updates)


# Stand-ins for the ARNs and names the definitions need: the walk reads only the shape.
_RUN_ECS_FUNCTION: Final = "RunECS"
_CHECK_JOB_STATUS_FUNCTION: Final = "CheckJobStatus"
_SUBMIT_BATCH_JOB_FUNCTION: Final = "SubmitBatchJob"
_CHECK_BATCH_STATUS_FUNCTION: Final = "CheckBatchStatus"
_WALK_TIMEOUT_SECONDS: Final = 365 * 24 * 3600


def _lambda_arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


@lru_cache(maxsize=256)
def workflow_path(
    architecture: str, polling: str, poll_interval_seconds: int, polls: int, shards: int = 1
) -> WorkflowPath:
    """The states a job's execution enters on ``architecture`` (stepfunctions-ecs or
    stepfunctions-batch), built by components/workflows.py exactly as deployed."""
    from components import workflows

    common: dict[str, Any] = {
        "table_name": "jobs",
        "execution_timeout_seconds": _WALK_TIMEOUT_SECONDS,
    }
    if architecture == contract.ARCH_STEPFUNCTIONS_ECS and polling == "lambda":
        definition = workflows.ecs_lambda_polling_definition(
            run_ecs_function_arn=_lambda_arn(_RUN_ECS_FUNCTION),
            check_job_status_function_arn=_lambda_arn(_CHECK_JOB_STATUS_FUNCTION),
            poll_interval_seconds=poll_interval_seconds,
            **common,
        )
    elif architecture == contract.ARCH_STEPFUNCTIONS_ECS:
        definition = workflows.ecs_native_definition(
            cluster_arn="arn:aws:ecs:us-east-1:000000000000:cluster/scoring",
            task_definition_arn="arn:aws:ecs:us-east-1:000000000000:task-definition/scoring:1",
            subnets=["subnet-00000000"],
            security_groups=[],
            **common,
        )
    elif architecture == contract.ARCH_STEPFUNCTIONS_BATCH and polling == "lambda":
        definition = workflows.batch_lambda_polling_definition(
            submit_batch_job_function_arn=_lambda_arn(_SUBMIT_BATCH_JOB_FUNCTION),
            check_batch_status_function_arn=_lambda_arn(_CHECK_BATCH_STATUS_FUNCTION),
            poll_interval_seconds=poll_interval_seconds,
            **common,
        )
    elif architecture == contract.ARCH_STEPFUNCTIONS_BATCH:
        definition = workflows.batch_native_definition(
            job_queue_high_arn="arn:aws:batch:us-east-1:000000000000:job-queue/high",
            job_queue_low_arn="arn:aws:batch:us-east-1:000000000000:job-queue/low",
            job_definition_arn="arn:aws:batch:us-east-1:000000000000:job-definition/scoring:1",
            **common,
        )
    else:
        raise CostError(f"{architecture} has no workflow")
    return walk_workflow(definition, polls=polls, shards=shards)


def wait_rounds(seconds: float) -> int:
    """Describe rounds of the lambda-ecs job API's wait (runtime.compute.poll's backoff) when
    it waits ``seconds``: one at once, then one after each sleep until the deadline."""
    from runtime.compute import FIRST_DELAY, MAX_DELAY

    rounds, waited, delay = 1, 0.0, FIRST_DELAY
    while waited < seconds:
        waited += min(delay, seconds - waited)
        delay = min(delay * 2, MAX_DELAY)
        rounds += 1
    return rounds


# --- usage per architecture ------------------------------------------------------------------


@dataclass
class Meter:
    """Collects the usage of one architecture."""

    prices: PriceList
    config: StackConfig
    usages: list[Usage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, item: str, quantity: float, what: str) -> None:
        if quantity > 0:
            self.usages.append(Usage(item, quantity, what))

    def api_requests(self, count: float, what: str) -> None:
        self.add("api_gateway_rest_requests", count, what)

    def lambda_calls(self, count: float, duration_ms: float, memory_mb: int, what: str) -> None:
        """``count`` invocations of ``duration_ms`` each (billed in whole granules)."""
        granule = float(self.prices.rule("lambda_duration_granularity_ms"))
        billed_ms = math.ceil(duration_ms / granule) * granule
        self.add("lambda_requests", count, what)
        gb_seconds = count * billed_ms / MS_PER_SECOND * memory_mb / MB_PER_GB
        self.add(f"lambda_compute_{self.config.lambda_architecture}", gb_seconds, what)

    def calls(self, count: float, calls: Calls, item_kb: float, what: str) -> None:
        write_units = math.ceil(item_kb / float(self.prices.rule("dynamodb_write_unit_kb")))
        read_units = math.ceil(item_kb / float(self.prices.rule("dynamodb_read_unit_kb")))
        self.add("dynamodb_write_request_units", count * calls.writes * max(1, write_units), what)
        self.add("dynamodb_read_request_units", count * calls.reads * max(1, read_units), what)
        self.add("s3_get_requests", count * calls.s3_get, what)
        self.add("s3_put_requests", count * calls.s3_put, what)

    def fargate(self, tasks: float, seconds: float, *, spot: bool, what: str) -> None:
        minimum = float(self.prices.rule("fargate_minimum_seconds"))
        granule = float(self.prices.rule("fargate_granularity_seconds"))
        billed = max(minimum, math.ceil(seconds / granule) * granule)
        hours = tasks * billed / SECONDS_PER_HOUR
        kind = "fargate_spot" if spot else "fargate"
        arch = self.config.lambda_architecture  # the scoring image is built for it
        vcpu = self.config.task_cpu / CPU_UNITS_PER_VCPU
        self.add(f"{kind}_vcpu_{arch}", hours * vcpu, what)
        self.add(f"{kind}_memory_{arch}", hours * self.config.task_memory / MB_PER_GB, what)

    def workflow(self, executions: float, path: WorkflowPath, item_kb: float, what: str) -> None:
        self.add("stepfunctions_standard_transitions", executions * path.transitions, what)
        self.calls(executions, Calls(writes=path.dynamodb_updates), item_kb, "workflow")


def _chunks(w: Workload, max_rows: int) -> tuple[int, float, float]:
    """A job sent to a request/response endpoint: ``(requests per job, rows per request,
    handler ms per request)``. The client splits the job's rows into requests of at most
    ``max_rows`` rows; a request takes the handler's ``duration_ms`` (measured for
    ``rows_per_request`` rows) plus each further row at the scoring rate."""
    chunks = math.ceil(w.rows_per_job / max_rows)
    rows = w.rows_per_job / chunks
    extra = max(0.0, rows - w.rows_per_request)
    return chunks, rows, w.duration_ms + extra * MS_PER_SECOND / w.rows_per_second


def _lambda(meter: Meter, w: Workload) -> None:
    c = meter.config
    meter.api_requests(w.requests, "POST /predict")
    meter.lambda_calls(w.requests, w.duration_ms, c.lambda_memory, "predictor")
    if w.jobs:
        chunks, rows, ms = _chunks(w, c.max_rows)
        what = f"jobs as {chunks:,} POST /predict of {rows:,.0f} rows"
        meter.api_requests(w.jobs * chunks, what)
        meter.lambda_calls(w.jobs * chunks, ms, c.lambda_memory, what)
        meter.notes.append(f"a job = {chunks:,} requests of {rows:,.0f} rows, {ms:,.0f} ms each")
        if ms > c.lambda_timeout * MS_PER_SECOND:
            meter.notes.append(
                f"{ms:,.0f} ms exceeds lambdaTimeout {c.lambda_timeout} s: lower maxRows"
            )
    if c.provisioned_concurrency:
        meter.notes.append("provisioned concurrency is a fixed monthly cost not priced here")


def _sagemaker(meter: Meter, w: Workload) -> None:
    c = meter.config
    sizes = [int(s) for s in meter.prices.rule("sagemaker_memory_sizes_mb")]
    memory = next((s for s in sizes if s >= c.lambda_memory), sizes[-1])
    granule = float(meter.prices.rule("sagemaker_duration_granularity_ms"))

    def seconds(count: float, ms: float) -> float:
        return count * math.ceil(ms / granule) * granule / MS_PER_SECOND

    compute = f"sagemaker_serverless_{memory}"
    data = "sagemaker_serverless_data"
    front = "behind API Gateway" if w.sagemaker_api_gateway else "invoked directly"
    if w.sagemaker_api_gateway:
        meter.api_requests(w.requests, "POST /predict")
    meter.add(compute, seconds(w.requests, w.duration_ms), "requests")
    meter.add(data, w.requests * w.payload_kb / KB_PER_GB, "requests")
    if w.jobs:
        chunks, rows, ms = _chunks(w, c.max_rows)
        what = f"jobs as {chunks:,} requests"
        if w.sagemaker_api_gateway:
            meter.api_requests(w.jobs * chunks, what)
        meter.add(compute, seconds(w.jobs * chunks, ms), what)
        kb = w.payload_kb * rows / w.rows_per_request
        meter.add(data, w.jobs * chunks * kb / KB_PER_GB, what)
    meter.notes.append(
        f"SageMaker Serverless at {memory} MB (the smallest size >= lambdaMemory "
        f"{c.lambda_memory} MB), {front}, the same handler duration"
    )


def _kinds(w: Workload) -> tuple[tuple[str, float, int], ...]:
    """(kind, count a month, rows each): requests and jobs each start one task."""
    return (("request", w.requests, w.rows_per_request), ("job", w.jobs, w.rows_per_job))


def _lambda_ecs(meter: Meter, w: Workload) -> None:
    c = meter.config
    for kind, count, rows in _kinds(w):
        if not count:
            continue
        wall = w.task_wall_seconds(rows)
        if kind == "request":  # POST /predict waits for the task up to syncWaitSeconds
            waited = min(float(c.sync_wait_seconds), wall)
            accepted = wall > c.sync_wait_seconds  # 202: the client reads the job later
            meter.calls(count * wait_rounds(waited), CALLS["wait_round"], w.item_kb, "wait")
        else:  # POST /jobs answers 202 at once
            waited, accepted = 0.0, True
        reads = w.status_reads if accepted else 0
        meter.api_requests(count * (1 + reads), f"POST + {reads} GET per {kind}")
        meter.lambda_calls(count, w.api_ms + waited * MS_PER_SECOND, c.lambda_memory, "job API")
        meter.lambda_calls(count * reads, w.api_ms, c.lambda_memory, "job API")
        meter.calls(count, CALLS["job_api_create"], w.item_kb, "job API")
        meter.calls(count, CALLS["lambda_ecs_start"], w.item_kb, "job API")
        meter.calls(count * reads, CALLS["status_read"], w.item_kb, "GET /jobs")
        meter.fargate(count, wall, spot=False, what=f"one task per {kind}")
        meter.calls(count, CALLS["scoring_task"], w.item_kb, "scoring task")
        if kind == "job":
            meter.calls(count, CALLS["scoring_task_input"], w.item_kb, "scoring task")


def _stepfunctions_ecs(meter: Meter, w: Workload) -> None:
    c = meter.config
    step = c.step_memory
    for kind, count, rows in _kinds(w):
        if not count:
            continue
        wall = w.task_wall_seconds(rows)
        polls = w.poll_rounds(wall, c.poll_interval_seconds)
        path = workflow_path(
            contract.ARCH_STEPFUNCTIONS_ECS, c.polling, c.poll_interval_seconds, polls
        )
        meter.api_requests(count * (1 + w.status_reads), f"POST + {w.status_reads} GET")
        meter.lambda_calls(count * (1 + w.status_reads), w.api_ms, c.lambda_memory, "job API")
        meter.calls(count, CALLS["job_api_create"], w.item_kb, "job API")
        meter.calls(count * w.status_reads, CALLS["status_read"], w.item_kb, "GET /jobs")
        meter.workflow(count, path, w.item_kb, f"{path.transitions} per {kind}")
        runs = path.lambda_invocations.get(_RUN_ECS_FUNCTION, 0)
        checks = path.lambda_invocations.get(_CHECK_JOB_STATUS_FUNCTION, 0)
        meter.lambda_calls(count * (runs + checks), w.step_ms, step, "RunECS + CheckJobStatus")
        meter.calls(count * runs, CALLS["run_ecs"], w.item_kb, "RunECS")
        meter.calls(count * checks, CALLS["check_status"], w.item_kb, "CheckJobStatus")
        meter.fargate(count, wall, spot=False, what=f"one task per {kind}")
        meter.calls(count, CALLS["scoring_task"], w.item_kb, "scoring task")
        if kind == "job":
            meter.calls(count, CALLS["scoring_task_input"], w.item_kb, "scoring task")
        if c.polling == "lambda":
            meter.notes.append(f"{kind}: {polls} status check(s) every {c.poll_interval_seconds} s")


def _stepfunctions_batch(meter: Meter, w: Workload) -> None:
    c = meter.config
    step = c.step_memory
    spot = c.batch_compute_type == "FARGATE_SPOT"
    for kind, count in (("request", w.requests), ("job", w.jobs)):
        if not count:
            continue
        shards = 1 if kind == "request" else w.shards
        rows = w.rows_per_request if kind == "request" else w.rows_per_job
        wall = w.task_wall_seconds(rows, shards)
        polls = w.poll_rounds(wall, c.poll_interval_seconds)
        path = workflow_path(
            contract.ARCH_STEPFUNCTIONS_BATCH, c.polling, c.poll_interval_seconds, polls, shards
        )
        if kind == "request":  # POST /predict: the job API stages the rows to S3, 202
            meter.api_requests(count * (1 + w.status_reads), f"POST + {w.status_reads} GET")
            meter.lambda_calls(count * (1 + w.status_reads), w.api_ms, c.lambda_memory, "job API")
            meter.calls(count, CALLS["job_api_create"], w.item_kb, "job API")
            meter.calls(count, CALLS["batch_stage_inline"], w.item_kb, "staged rows")
            meter.calls(count * w.status_reads, CALLS["status_read"], w.item_kb, "GET /jobs")
        else:  # a job config uploaded to jobs/*.json starts it through the trigger
            meter.add("s3_put_requests", count, "job config upload")
            meter.lambda_calls(count, w.step_ms, c.trigger_memory, "S3 trigger")
            meter.calls(count, CALLS["trigger"], w.item_kb, "S3 trigger")
        meter.workflow(count, path, w.item_kb, f"{path.transitions} per {kind}")
        submits = path.lambda_invocations.get(_SUBMIT_BATCH_JOB_FUNCTION, 0)
        checks = path.lambda_invocations.get(_CHECK_BATCH_STATUS_FUNCTION, 0)
        what = "SubmitBatchJob + CheckBatchStatus"
        meter.lambda_calls(count * (submits + checks), w.step_ms, step, what)
        meter.calls(count * submits, CALLS["submit_batch_job"], w.item_kb, "SubmitBatchJob")
        meter.calls(count * checks, CALLS["check_status"], w.item_kb, "CheckBatchStatus")
        if checks:
            meter.calls(count, CALLS["batch_progress"], w.item_kb, "CheckBatchStatus")
        compute = "Fargate Spot" if spot else "Fargate"
        meter.fargate(count * shards, wall, spot=spot, what=f"Batch on {compute}, {shards}/{kind}")
        meter.calls(count * shards, CALLS["scoring_shard"], w.item_kb, "scoring shards")
        meter.calls(count, CALLS["scoring_manifest"], w.item_kb, "manifest")
        if c.polling == "lambda":
            meter.notes.append(f"{kind}: {polls} status check(s) every {c.poll_interval_seconds} s")
    if spot:
        meter.notes.append("Fargate Spot at an assumed 70% discount; the real price varies")


_USAGE: Final[Mapping[str, Callable[[Meter, Workload], None]]] = {
    contract.ARCH_LAMBDA: _lambda,
    contract.ARCH_LAMBDA_ECS: _lambda_ecs,
    contract.ARCH_STEPFUNCTIONS_ECS: _stepfunctions_ecs,
    contract.ARCH_STEPFUNCTIONS_BATCH: _stepfunctions_batch,
    ARCH_SAGEMAKER: _sagemaker,
}


def usage(
    architecture: str, workload: Workload, config: StackConfig, prices: PriceList
) -> tuple[list[Usage], list[str]]:
    """The month's usage of ``architecture`` under ``workload`` and its notes."""
    try:
        derive = _USAGE[architecture]
    except KeyError:
        allowed = ", ".join(ARCHITECTURES)
        raise CostError(f"unknown architecture {architecture!r}; allowed: {allowed}") from None
    meter = Meter(prices, config)
    derive(meter, workload)
    return meter.usages, meter.notes


def monthly_bill(
    architecture: str,
    workload: Workload,
    config: StackConfig,
    prices: PriceList,
    *,
    free_tier: bool = True,
) -> Bill:
    usages, notes = usage(architecture, workload, config, prices)
    return bill(architecture, prices, usages, free_tier=free_tier, notes=notes)


# --- curves and break-even points ------------------------------------------------------------


@dataclass(frozen=True)
class BreakEven:
    first: str
    second: str
    axis: str  # "volume" (requests + jobs a month), "duration_ms" or "rows_per_job"
    value: float  # where the two cost the same
    cheaper_below: str
    cheaper_above: str


def log_grid(lo: float, hi: float, points: int = CURVE_POINTS) -> list[float]:
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + (b - a) * i / (points - 1)) for i in range(points)]


def volumes(points: int = CURVE_POINTS, span: tuple[float, float] = VOLUME_RANGE) -> list[float]:
    return log_grid(*span, points)


def at_volume(workload: Workload, volume: float) -> Workload:
    """``workload``'s mix of requests and jobs scaled to ``volume`` a month."""
    if workload.volume <= 0:
        raise CostError("a cost curve needs a workload with requests or jobs")
    return workload.scaled(volume / workload.volume)


def cost_curve(
    architecture: str,
    workload: Workload,
    config: StackConfig,
    prices: PriceList,
    xs: Sequence[float],
    *,
    free_tier: bool = True,
) -> list[float]:
    """Monthly cost at each total volume in ``xs``, the workload's mix scaled to it."""
    return [
        monthly_bill(
            architecture, at_volume(workload, x), config, prices, free_tier=free_tier
        ).total
        for x in xs
    ]


def crossings(
    architectures: Sequence[str],
    vary: Callable[[float], Workload],
    grid: Sequence[float],
    config: StackConfig,
    prices: PriceList,
    *,
    axis: str,
    free_tier: bool = True,
    tolerance: float = 1e-9,
) -> list[BreakEven]:
    """Every value on ``grid`` (ascending) where one architecture's monthly cost crosses
    another's, the workload being ``vary(value)``: a sign change of the cost difference,
    refined with Brent's method (scipy). Stretches where both cost the same (e.g. both inside
    the free tier) are skipped over."""
    from scipy.optimize import brentq

    def total(architecture: str, x: float) -> float:
        return monthly_bill(architecture, vary(x), config, prices, free_tier=free_tier).total

    curves = {a: [total(a, x) for x in grid] for a in architectures}
    points: list[BreakEven] = []
    for i, first in enumerate(architectures):
        for second in architectures[i + 1 :]:

            def diff(x: float, a: str = first, b: str = second) -> float:
                return total(a, x) - total(b, x)

            last_x, last_sign = 0.0, 0
            for x, ca, cb in zip(grid, curves[first], curves[second], strict=True):
                d = ca - cb
                sign = 0 if abs(d) <= tolerance else (1 if d > 0 else -1)
                if sign == 0:
                    continue
                if last_sign and sign != last_sign:
                    root = float(brentq(diff, last_x, x, xtol=1e-9, rtol=1e-9))
                    # first costs more after the crossing (sign > 0): it was cheaper below
                    below, above = (first, second) if sign > 0 else (second, first)
                    points.append(BreakEven(first, second, axis, root, below, above))
                last_x, last_sign = x, sign
    return points


def break_even_points(
    architectures: Sequence[str],
    workload: Workload,
    config: StackConfig,
    prices: PriceList,
    *,
    free_tier: bool = True,
) -> list[BreakEven]:
    """Crossings along the monthly volume (the mix kept), the handler duration (when there
    are requests) and the rows per job (when there are jobs and task times are derived)."""
    points = crossings(
        architectures,
        lambda x: at_volume(workload, x),
        volumes(),
        config,
        prices,
        axis="volume",
        free_tier=free_tier,
    )
    if workload.requests:
        points += crossings(
            architectures,
            lambda x: replace(workload, duration_ms=x),
            log_grid(1.0, float(config.lambda_timeout * MS_PER_SECOND)),
            config,
            prices,
            axis="duration_ms",
            free_tier=free_tier,
        )
    if workload.jobs and workload.task_seconds is None:
        points += crossings(
            architectures,
            lambda x: replace(workload, rows_per_job=max(1, round(x))),
            log_grid(1.0, 1e9),
            config,
            prices,
            axis="rows_per_job",
            free_tier=free_tier,
        )
    return points


def write_chart(
    path: Path,
    architectures: Sequence[str],
    workload: Workload,
    config: StackConfig,
    prices: PriceList,
    *,
    free_tier: bool = True,
    marks: Sequence[BreakEven] = (),
) -> Path:
    """A PNG of monthly cost against monthly volume, log-log, one line per architecture (a
    zero cost, inside the free tier, cannot sit on a log axis and is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = volumes()
    figure, axes = plt.subplots(figsize=(9, 6), dpi=110)
    try:
        # curves often lie on top of one another: distinct dashes and widths keep each visible
        styles = ("-", "--", "-.", ":", (0, (6, 2, 1, 2)))
        for n, architecture in enumerate(architectures):
            ys = cost_curve(architecture, workload, config, prices, xs, free_tier=free_tier)
            shown = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
            if shown:
                axes.plot(
                    *zip(*shown, strict=True),
                    label=architecture,
                    linestyle=styles[n % len(styles)],
                    linewidth=3.0 - 0.4 * (n % len(styles)),
                )
        axes.axvline(workload.volume, color="grey", linestyle=":", label="this workload")
        on_volume = [point.value for point in marks if point.axis == "volume"]
        for n, value in enumerate(on_volume):
            label = "break-even point" if n == 0 else None
            axes.axvline(value, color="silver", linewidth=0.9, label=label)
        axes.set_xscale("log")
        axes.set_yscale("log")
        what = _volume_label(workload)
        axes.set_xlabel(f"monthly volume ({what})")
        axes.set_ylabel(f"monthly cost (USD, {prices.region}, prices of {prices.taken_on})")
        axes.set_title("mlserve: monthly cost by architecture")
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path


def _volume_label(workload: Workload) -> str:
    if workload.jobs and workload.requests:
        share = workload.requests / workload.volume
        return f"requests + jobs, {share:.0%} requests"
    return "jobs" if workload.jobs else "requests"


# --- text --------------------------------------------------------------------------------------


def _count_text(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size and value % size == 0:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _quantity(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.4g}"


def _decimal(value: float) -> str:
    text = f"{value:.10f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction:0<2}"


def money(value: float) -> str:
    return f"${value:,.2f}"


def render(
    console: Any,
    bills: Sequence[Bill],
    *,
    points: Sequence[BreakEven],
    workload: Workload,
    config: StackConfig,
    prices: PriceList,
    free_tier: bool,
) -> None:
    """The tables: one per architecture, the totals side by side, the break-even points."""
    from rich.table import Table

    stack = f"stack {config.stack}" if config.stack else "Pulumi.yaml defaults"
    console.print(
        f"[bold]Monthly cost[/] · {prices.region} prices of {prices.taken_on} (mlserve/prices.json)"
        f" · {stack}: Lambda {config.lambda_architecture} {config.lambda_memory} MB, task "
        f"{config.task_cpu} CPU / {config.task_memory} MB, polling {config.polling} every "
        f"{config.poll_interval_seconds} s, sync wait {config.sync_wait_seconds} s, Batch "
        f"{config.batch_compute_type}" + ("" if free_tier else " · no free tier"),
        highlight=False,
    )
    console.print(
        f"workload: {workload.requests:,.0f} requests and {workload.jobs:,.0f} jobs a month "
        f"({workload.rows_per_job:,} rows per job, {workload.shards} shard(s)); handler "
        f"{workload.duration_ms:g} ms, job API {workload.api_ms:g} ms, "
        f"step {workload.step_ms:g} ms",
        highlight=False,
    )
    from rich.markup import escape

    for b in bills:
        table = Table(title=f"[bold]{b.architecture}[/]", title_justify="left")
        table.add_column("item (from)")
        table.add_column("quantity", justify="right")
        table.add_column("price", justify="right")
        table.add_column("free tier", justify="right")
        table.add_column("cost", justify="right")
        for line in b.lines:
            table.add_row(
                f"{line.price.description}\n[dim]{escape(line.detail)}[/]",
                f"{_quantity(line.quantity)} {line.price.unit}",
                line.price.price_text(),
                f"-{_quantity(line.free)}" if line.free else "",
                money(line.cost),
            )
        table.add_section()
        table.add_row("[bold]total[/]", "", "", "", f"[bold]{money(b.total)}[/]")
        console.print(table)
        for note in b.notes:
            console.print(f"  note: {note}", highlight=False)
    console.print("  price: $ per unit, or per 1k / 1M units; * the first of several tiers")
    totals = Table(title="[bold]totals side by side[/]", title_justify="left")
    totals.add_column("architecture")
    totals.add_column("per month", justify="right")
    totals.add_column("per 1M requests + jobs", justify="right")
    volume = workload.volume
    for b in bills:
        per_million = money(b.total / volume * 1e6) if volume else "-"
        totals.add_row(b.architecture, money(b.total), per_million)
    console.print(totals)
    axes = {
        "volume": ("monthly volume", f"{_volume_label(workload)} a month", "{:,.0f}"),
        "duration_ms": ("handler duration, this volume", "ms per request", "{:,.1f}"),
        "rows_per_job": ("rows per job, this volume", "rows per job", "{:,.0f}"),
    }
    for axis, (title, unit, fmt) in axes.items():
        if axis != "volume" and not any(p.axis == axis for p in points):
            continue
        console.print(f"[bold]break-even points[/] along the {title}:")
        found = [p for p in points if p.axis == axis]
        for p in found:
            console.print(
                f"  {p.first} = {p.second} at {fmt.format(p.value)} {unit}: "
                f"{p.cheaper_below} cheaper below, {p.cheaper_above} above",
                highlight=False,
            )
        if not found:
            console.print(
                f"  none between {VOLUME_RANGE[0]:g} and {VOLUME_RANGE[1]:g} a month: every "
                "architecture is billed per use (no fixed cost), so the order holds",
                highlight=False,
            )


# --- command line ------------------------------------------------------------------------------


def parse_architectures(value: str) -> tuple[str, ...]:
    names: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if name == "all":
            names.extend(a for a in ARCHITECTURES if a not in names)
        elif name in ARCHITECTURES:
            if name not in names:
                names.append(name)
        elif name:
            raise argparse.ArgumentTypeError(
                f"unknown architecture {name!r}; allowed: all, {', '.join(ARCHITECTURES)}"
            )
    if not names:
        raise argparse.ArgumentTypeError("no architecture given")
    return tuple(names)


def _count(value: str) -> float:
    try:
        number = float(value.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number < 0 or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``cost`` command's options (mlserve/cli.py adds the subcommand)."""
    a = parser.add_argument
    a(
        "--architecture",
        type=parse_architectures,
        default=ARCHITECTURES,
        metavar="NAMES",
        help=f"all (default) or a comma-separated list of: {', '.join(ARCHITECTURES)}",
    )
    work = parser.add_argument_group("workload (per month; docs/cost.md)")
    w = work.add_argument
    w("--requests", type=_count, default=0.0, help="real-time POST /predict requests a month")
    w("--jobs", type=_count, default=0.0, help="batch jobs a month")
    w("--rows-per-job", type=int, default=Workload.rows_per_job, help="(default: %(default)s)")
    w("--rows-per-request", type=int, default=Workload.rows_per_request, help="(default: 1)")
    w(
        "--duration-ms",
        type=float,
        default=Workload.duration_ms,
        help="predictor handler duration per request, e.g. from make bench (default: %(default)s)",
    )
    w(
        "--api-ms",
        type=float,
        default=Workload.api_ms,
        help="job API Lambda duration, without its sync wait (default: %(default)s)",
    )
    w(
        "--step-ms",
        type=float,
        default=Workload.step_ms,
        help="workflow step Lambda / S3 trigger duration (default: %(default)s)",
    )
    w(
        "--task-seconds",
        type=float,
        default=None,
        help="billed seconds of one scoring task or shard (default: start + rows / rate)",
    )
    w(
        "--task-start-seconds",
        type=float,
        default=Workload.task_start_seconds,
        help="Fargate image pull + start + model load (default: %(default)s)",
    )
    w(
        "--rows-per-second",
        type=float,
        default=Workload.rows_per_second,
        help="scoring rate of one task, e.g. from make bench (default: %(default)s)",
    )
    w(
        "--polls",
        type=int,
        default=None,
        help="status checks per job (polling lambda; default: task time / pollIntervalSeconds)",
    )
    w(
        "--status-reads",
        type=int,
        default=Workload.status_reads,
        help="GET /jobs/{id} per accepted job (default: %(default)s)",
    )
    w("--shards", type=int, default=Workload.shards, help="stepfunctions-batch shards per job")
    w("--item-kb", type=float, default=Workload.item_kb, help="job record size (default: 1)")
    w(
        "--payload-kb",
        type=float,
        default=Workload.payload_kb,
        help="request + response size, SageMaker data processed (default: 1)",
    )
    w(
        "--sagemaker-direct",
        action="store_true",
        help="price SageMaker Serverless without API Gateway in front (clients call "
        "InvokeEndpoint with SigV4); by default it gets the same REST API as mlserve",
    )
    stack = parser.add_argument_group("stack configuration (default: Pulumi.yaml)")
    s = stack.add_argument
    s("--stack", default=None, help="read Pulumi.<STACK>.yaml over Pulumi.yaml's defaults")
    s("--lambda-architecture", choices=("arm64", "x86_64"), default=None)
    s("--lambda-memory", type=int, default=None, metavar="MB")
    s("--task-cpu", type=int, default=None, metavar="UNITS")
    s("--task-memory", type=int, default=None, metavar="MB")
    s("--polling", choices=("lambda", "native"), default=None)
    s("--poll-interval-seconds", type=int, default=None, metavar="SECONDS")
    s("--sync-wait-seconds", type=int, default=None, metavar="SECONDS")
    s("--batch-compute-type", choices=("FARGATE", "FARGATE_SPOT"), default=None)
    s("--max-rows", type=int, default=None, metavar="ROWS")
    out = parser.add_argument_group("output")
    o = out.add_argument
    o("--no-free-tier", action="store_true", help="the account's free tier is used elsewhere")
    o("--prices", type=Path, default=None, help="another price file (default: mlserve/prices.json)")
    o("--chart", type=Path, default=DEFAULT_CHART, help="PNG chart path (default: %(default)s)")
    o("--no-chart", action="store_true", help="do not write the chart")


def run(args: argparse.Namespace, console: Any = None) -> int:
    """``python -m mlserve cost``: print the bills and the break-even points, write the chart."""
    from rich.console import Console

    console = console or Console()
    if not args.requests and not args.jobs:
        raise CostError("give a workload: --requests N and/or --jobs N (per month)")
    workload = Workload(
        requests=args.requests,
        jobs=args.jobs,
        rows_per_job=args.rows_per_job,
        rows_per_request=args.rows_per_request,
        duration_ms=args.duration_ms,
        api_ms=args.api_ms,
        step_ms=args.step_ms,
        task_seconds=args.task_seconds,
        task_start_seconds=args.task_start_seconds,
        rows_per_second=args.rows_per_second,
        polls=args.polls,
        status_reads=args.status_reads,
        shards=args.shards,
        item_kb=args.item_kb,
        payload_kb=args.payload_kb,
        sagemaker_api_gateway=not args.sagemaker_direct,
    )
    config = load_stack_config(
        args.stack, {f: getattr(args, f, None) for f in CONFIG_KEYS.values()}
    )
    prices = PriceList.load(args.prices)
    free_tier = not args.no_free_tier
    architectures = tuple(args.architecture)
    bills = [monthly_bill(a, workload, config, prices, free_tier=free_tier) for a in architectures]
    points = break_even_points(architectures, workload, config, prices, free_tier=free_tier)
    render(
        console,
        bills,
        points=points,
        workload=workload,
        config=config,
        prices=prices,
        free_tier=free_tier,
    )
    if not args.no_chart:
        path = write_chart(
            args.chart, architectures, workload, config, prices, free_tier=free_tier, marks=points
        )
        console.print(f"chart: {path}", highlight=False, soft_wrap=True)
    return 0

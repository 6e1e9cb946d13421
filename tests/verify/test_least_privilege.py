"""Least privilege, both ways, proven on the emulator.

While the e2e suite runs on the local emulator with ``MLSERVE_RECORD_CALLS`` set,
mlserve.local.recorder writes every AWS call each identity of the stack makes (each Lambda
function, the ECS task role, the Batch job role, each state machine's own calls in moto's Step
Functions engine) with the IAM action, resource ARN and condition keys AWS authorises it
against, and the stack's deployed role policies as the emulator's IAM returns them
(GetRolePolicy of every role the program created). This module asserts:

(a) every recorded call is allowed by its identity's policy, evaluated with moto's IAM policy
    evaluator (``moto.iam.access_control.IAMPolicyStatement``: Action/Resource matching and
    Allow/Deny) plus :func:`conditions_hold` for the Condition block;
(b) every (action, resource) a policy grants is used by some recorded call, except the grants
    :func:`not_exercised` names, each with the reason the emulator cannot exercise it;
(c) parliament (with its community auditors) finds nothing in any deployed policy, except the
    findings :data:`ACCEPTED_FINDINGS` justifies;
(d) every AWS call site of runtime/ (mlserve/callsites.py reads them from the code) is reached
    once per identity that makes it (tests/verify/call_sites.py), per architecture: a recorded
    call from an unlisted site or by an unlisted identity, and a pair never reached, fail.

Why conditions are evaluated here: moto's evaluator (moto 5.2, policy_conditions.py) evaluates
only ``StringEquals`` and treats every other operator (``ArnEquals``, ``StringLike``) as
satisfied, and a condition key missing from the request as satisfied too: a condition could
never deny there. :func:`conditions_hold` implements the four operators policies.py uses, with
IAM's semantics (a key absent from the request fails the condition; several values: any one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import parliament
import pytest
from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from components import policies
from components.settings import ARCHITECTURES as KNOWN_ARCHITECTURES
from mlserve import callsites
from mlserve.local import Emulator, recorder
from mlserve.local.aws import ACCOUNT_ID, REGION, MotoServer
from mlserve.local.deploy import deploy
from mlserve.local.recorder import RECORD_ENV
from runtime import contract
from tests.infra.conftest import train_tiny_model
from tests.verify.call_sites import CALLERS, NOT_REACHED
from tests.verify.report import record

REPO_ROOT = Path(__file__).resolve().parents[2]
Policy = dict[str, Any]

# --- the evaluator ---


def _wildcard(pattern: str) -> re.Pattern[str]:
    """IAM's ``*`` (any run of characters) and ``?`` (one character); the rest is literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _like(expected: str, actual: str) -> bool:
    return _wildcard(expected).fullmatch(actual) is not None


# The condition operators policies.py uses. ArnEquals and ArnLike behave alike in IAM (both
# take wildcards); the values compared here are whole ARNs.
CONDITION_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": _string_equals,
    "StringLike": _like,
    "ArnEquals": _like,
    "ArnLike": _like,
}


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """Every operator block holds: for each key, the request has it and it matches one of the
    expected values. An unknown operator is an error, never a silent pass."""
    for operator, keys in condition.items():
        compare = CONDITION_OPERATORS.get(operator)
        if compare is None:
            raise ValueError(f"condition operator {operator} is not evaluated by this test")
        for key, expected in keys.items():
            values = [expected] if isinstance(expected, str) else list(expected)
            actual = context.get(key)
            if actual is None or not any(compare(value, actual) for value in values):
                return False
    return True


def is_allowed(
    policy: Policy, action: str, resource: str, context: Mapping[str, str] | None = None
) -> bool:
    """IAM's answer for one identity policy: allowed when an Allow statement matches (action,
    resource, conditions) and no Deny statement does."""
    allowed = False
    for statement in _statements(policy):
        bare = {k: v for k, v in statement.items() if k != "Condition"}
        outcome = IAMPolicyStatement(bare).is_action_permitted(action, resource)
        if outcome is PermissionResult.NEUTRAL:
            continue
        if not conditions_hold(statement.get("Condition", {}), context or {}):
            continue
        if outcome is PermissionResult.DENIED:
            return False
        allowed = True
    return allowed


def _statements(policy: Policy) -> list[dict[str, Any]]:
    statements = policy["Statement"]
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# --- each identity's policy, from the emulator's ARNs ---

ECS_ARCHITECTURES = (contract.ARCH_LAMBDA_ECS, contract.ARCH_STEPFUNCTIONS_ECS)
# identity role -> the architecture it belongs to ("ecs" roles: both ECS architectures)
ROLE_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "predictor": (contract.ARCH_LAMBDA,),
    "capture": (contract.ARCH_LAMBDA,),
    "job-api": (contract.ARCH_LAMBDA_ECS,),
    "ecs-task": ECS_ARCHITECTURES,
    "ecs-execution": ECS_ARCHITECTURES,
    "sfn-job-api": (contract.ARCH_STEPFUNCTIONS_ECS,),
    "run-ecs": (contract.ARCH_STEPFUNCTIONS_ECS,),
    "check-job-status": (contract.ARCH_STEPFUNCTIONS_ECS,),
    "state-machine": (contract.ARCH_STEPFUNCTIONS_ECS,),
    "batch-job-api": (contract.ARCH_STEPFUNCTIONS_BATCH,),
    "submit-batch-job": (contract.ARCH_STEPFUNCTIONS_BATCH,),
    "check-batch-status": (contract.ARCH_STEPFUNCTIONS_BATCH,),
    "job-trigger": (contract.ARCH_STEPFUNCTIONS_BATCH,),
    "batch-state-machine": (contract.ARCH_STEPFUNCTIONS_BATCH,),
    "batch-job": (contract.ARCH_STEPFUNCTIONS_BATCH,),
    "batch-execution": (contract.ARCH_STEPFUNCTIONS_BATCH,),
}
FUNCTION_ROLES = frozenset(
    {
        "predictor",
        "capture",
        "job-api",
        "sfn-job-api",
        "run-ecs",
        "check-job-status",
        "batch-job-api",
        "submit-batch-job",
        "check-batch-status",
        "job-trigger",
    }
)
# A deployed function's identity, by the handler it runs (the job API: by its ARCHITECTURE).
HANDLER_ROLES = {
    contract.HANDLER_PREDICT: "predictor",
    contract.HANDLER_CAPTURE: "capture",
    contract.HANDLER_RUN_ECS: "run-ecs",
    contract.HANDLER_CHECK_JOB_STATUS: "check-job-status",
    contract.HANDLER_SUBMIT_BATCH_JOB: "submit-batch-job",
    contract.HANDLER_CHECK_BATCH_STATUS: "check-batch-status",
    contract.HANDLER_TRIGGER: "job-trigger",
}
JOB_API_ROLES = {
    contract.ARCH_LAMBDA_ECS: "job-api",
    contract.ARCH_STEPFUNCTIONS_ECS: "sfn-job-api",
    contract.ARCH_STEPFUNCTIONS_BATCH: "batch-job-api",
}


def merged(documents: Mapping[str, Policy]) -> Policy:
    """A role's inline policies as one document (IAM evaluates their union)."""
    statements = [st for name in sorted(documents) for st in _statements(documents[name])]
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class Stack:
    """One deployed stack, as mlserve.local.recorder.describe read it from the emulator."""

    id: str
    architectures: tuple[str, ...]
    polling: str
    bucket: str
    table: str
    model_key: str
    metadata_key: str
    functions: tuple[str, ...]
    outputs: Mapping[str, Any]
    # function name -> handler and ARCHITECTURE, identity -> the role it assumes, role -> its
    # inline policies as deployed (GetRolePolicy)
    handlers: Mapping[str, str]
    function_architectures: Mapping[str, str]
    assumes: Mapping[str, str]
    role_policies: Mapping[str, Mapping[str, Policy]]

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Stack:
        return cls(
            id=line["id"],
            architectures=tuple(line["architectures"]),
            polling=line["polling"],
            bucket=line["bucket"],
            table=line["table"],
            model_key=line["model_key"],
            metadata_key=line["metadata_key"],
            functions=tuple(line["functions"]),
            outputs=dict(line["outputs"]),
            handlers=dict(line["handlers"]),
            function_architectures=dict(line["function_architectures"]),
            assumes=dict(line["assumes"]),
            role_policies=dict(line["role_policies"]),
        )

    def function_identity(self, name: str) -> str:
        """The identity (predictor, job-api, ...) of a function of this stack: by the handler
        it was deployed with (the job API: by its ARCHITECTURE)."""
        handler = self.handlers[name]
        if handler == contract.HANDLER_JOBS:
            return JOB_API_ROLES[self.function_architectures[name]]
        return HANDLER_ROLES[handler]

    def policies(self) -> dict[str, Policy]:
        """identity -> the policies of the role it assumes, as the program deployed them."""
        found: dict[str, Policy] = {}
        for who, role in self.assumes.items():
            kind, _, name = who.partition(":")
            if kind == "function":
                identity = self.function_identity(name)
            elif kind == "state-machine":
                machine = name == self.ecs_state_machine
                identity = "state-machine" if machine else "batch-state-machine"
            else:
                identity = kind  # ecs-task, ecs-execution, batch-job, batch-execution
            found[identity] = merged(self.role_policies[role])
        return found

    @property
    def ecs_state_machine(self) -> str | None:
        if contract.ARCH_STEPFUNCTIONS_ECS not in self.architectures:
            return None
        return self.outputs["stateMachineArn"]

    @property
    def batch_state_machine(self) -> str | None:
        return self.outputs.get("batchStateMachineArn")

    def function(self, role: str) -> str:
        names = [name for name in self.functions if self.function_identity(name) == role]
        if len(names) != 1:
            raise LookupError(f"stack {self.id} has {len(names)} {role} functions")
        return names[0]

    def role_key(self, role: str) -> str:
        """The role's name across stacks: a state machine's grants depend on ``polling``."""
        return f"{role} (polling: {self.polling})" if role.endswith("state-machine") else role

    def ecs_architecture(self) -> str:
        return next(a for a in self.architectures if a in ECS_ARCHITECTURES)


# --- grants the emulator cannot exercise, and accepted linter findings ---

_LAMBDA_LOGS = (
    "the Lambda service itself writes a function's output to its log group with the "
    "function's role; the emulator prints handler output instead, nothing calls CloudWatch Logs"
)
_SFN_LOG_DELIVERY = (
    "Step Functions sets up the state machine's vended log delivery (logging_configuration) "
    "and X-Ray tracing itself; moto's engine has neither"
)
_SYNC_RULE = (
    "for a .sync integration Step Functions manages an EventBridge rule to learn that the "
    "task/job ended; moto's engine polls Describe* instead and never calls EventBridge"
)
_IMAGE_PULL = (
    "the ECS/Batch agent pulls the scoring image from ECR and ships the container's logs "
    "(awslogs driver) with the execution role; the emulator runs the working tree's code and "
    "ships the logs itself, so the execution role makes no call locally"
)


_MULTIPART_ABORT = (
    "boto3's upload_file aborts a multipart upload that failed midway (parts over 8 MB); the "
    "emulator's parts are small single PutObjects and nothing fails an upload midway"
)


def not_exercised(role: str, action: str) -> str | None:
    """Why ``role``'s grant of ``action`` cannot be used on the emulator (None: it can)."""
    if role in FUNCTION_ROLES and action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        return _LAMBDA_LOGS
    if role.endswith("state-machine"):
        if action in policies.LOG_DELIVERY_ACTIONS or action in policies.XRAY_ACTIONS:
            return _SFN_LOG_DELIVERY
        if action.startswith("events:"):
            return _SYNC_RULE
    if role.endswith("execution"):
        return _IMAGE_PULL
    if role == "batch-job" and action == "s3:AbortMultipartUpload":
        return _MULTIPART_ABORT
    return None


# Parliament findings accepted, by (issue, action) -> why. Everything else fails the test.
ACCEPTED_FINDINGS: dict[tuple[str, str], str] = {
    # community auditor "sensitive actions": the grant is needed, and scoped
    ("PERMISSIONS_MANAGEMENT_ACTIONS", "iam:passrole"): (
        "RunTask needs to pass the scoring task's two roles; the grant names exactly those two "
        "roles and only to ecs-tasks.amazonaws.com (iam:PassedToService)"
    ),
    ("PERMISSIONS_MANAGEMENT_ACTIONS", "logs:putresourcepolicy"): (
        "Step Functions' CloudWatch Logs delivery needs it on Resource '*' (AWS documents no "
        "resource-level permission for the log delivery actions)"
    ),
    ("CREDENTIALS_EXPOSURE", "ecr:getauthorizationtoken"): (
        "pulling an image from ECR needs a registry token; AWS supports only Resource '*'"
    ),
}
# RESOURCE_MISMATCH findings accepted, by (action, the resource format parliament misses) -> why
ACCEPTED_RESOURCE_MISMATCHES: dict[tuple[str, str], str] = {
    ("batch:SubmitJob", "arn:*:batch:*:*:job-definition/*"): (
        "parliament's ARN check refuses a ':' in a job-definition id, but SubmitJob of a "
        "revision is authorised on job-definition/NAME:REV and AWS Batch documents "
        "job-definition/NAME:* for every revision (policies.batch_job_definition_family_arn); "
        "the other required resources (job-queue, job) are granted"
    ),
    ("states:DescribeExecution", "arn:*:states:*:*:express:*:*:*"): (
        "the state machines are STANDARD (components/stepfunctions.py): their executions are "
        "execution:... ARNs, which are granted; express:... ARNs exist only for EXPRESS ones"
    ),
}


# parliament lints every document as an identity policy; a trust policy has a Principal and,
# by IAM's grammar, no Resource: this one finding is accepted for trust policies only.
TRUST_POLICY_FINDING = "Statement contains neither Resource nor NotResource"


def lint(policy: Policy, *, trust: bool = False) -> tuple[list[str], list[str]]:
    """(findings not accepted, findings accepted) of parliament, community auditors included."""
    analysed = parliament.analyze_policy_string(json.dumps(policy), include_community_auditors=True)
    rejected: list[str] = []
    accepted: list[str] = []
    for finding in analysed.findings:
        actions = _finding_actions(finding)
        text = f"{finding.issue} {actions or ''} {finding.detail}"
        if trust and finding.issue == "MALFORMED" and finding.detail == TRUST_POLICY_FINDING:
            ok = True
        elif finding.issue == "RESOURCE_MISMATCH":
            missing = {(d["action"], d["required_format"]) for d in finding.detail}
            ok = missing <= set(ACCEPTED_RESOURCE_MISMATCHES)
        else:
            ok = bool(actions) and all((finding.issue, a) in ACCEPTED_FINDINGS for a in actions)
        (accepted if ok else rejected).append(text)
    return rejected, accepted


def _finding_actions(finding: Any) -> list[str]:
    location = finding.location if isinstance(finding.location, dict) else {}
    if "actions" in location:
        return [str(a) for a in location["actions"]]
    if isinstance(finding.detail, list):
        return sorted({str(d.get("action")) for d in finding.detail if isinstance(d, dict)})
    return []


# --- reading a recording ---


@dataclass
class Recording:
    stacks: dict[str, Stack]
    calls: list[dict[str, Any]]

    @classmethod
    def read(cls, directory: Path) -> Recording:
        stacks: dict[str, Stack] = {}
        calls: list[dict[str, Any]] = []
        for path in sorted(directory.glob("calls-*.jsonl")):
            for text in path.read_text(encoding="utf-8").splitlines():
                if not text.strip():
                    continue
                line = json.loads(text)
                if line["type"] == "stack":
                    stacks[line["id"]] = Stack.of(line)
                else:
                    calls.append(line)
        return cls(stacks, calls)

    def owner(self, identity: Mapping[str, str]) -> tuple[Stack, str]:
        """(stack, role) of a recorded identity."""
        kind = identity["kind"]
        if kind == "state-machine":
            for stack in self.stacks.values():
                if identity["arn"] == stack.ecs_state_machine:
                    return stack, "state-machine"
                if identity["arn"] == stack.batch_state_machine:
                    return stack, "batch-state-machine"
            raise LookupError(f"no recorded stack has the state machine {identity['arn']}")
        stack = self.stacks[identity["stack"]]
        if kind == "function":
            return stack, stack.function_identity(identity["name"])
        return stack, kind  # ecs-task, batch-job


@dataclass
class Verdict:
    """Per architecture: the figures of the summary table, and what went wrong."""

    calls_checked: Counter[str]
    denied: dict[str, list[str]]
    unused: dict[str, list[str]]
    findings: dict[str, list[str]]
    problems: list[str]
    # (d) the call sites of runtime/, once per identity that makes them (tests/verify/
    # call_sites.py): per architecture, how many (site, identity) pairs there are, how many
    # the recording reached, and the ones it did not (NOT_REACHED's excused ones apart)
    sites_total: Counter[str]
    sites_reached: Counter[str]
    unreached: dict[str, list[str]]


def _call_architecture(stack: Stack, role: str) -> str:
    if role == "ecs-task":
        return stack.ecs_architecture()
    return ROLE_ARCHITECTURES[role][0]


def verify(recording: Recording) -> Verdict:
    """Check (a), (b) and (c) over a whole recording."""
    checked: Counter[str] = Counter()
    denied: dict[str, list[str]] = defaultdict(list)
    problems: list[str] = []
    stack_policies = {sid: stack.policies() for sid, stack in recording.stacks.items()}
    # (role key, statement, action, resource index) -> used?
    grants: dict[tuple[str, str, str, int], bool] = {}
    grant_patterns: dict[tuple[str, str], list[tuple[tuple[str, str, str, int], Policy]]] = {}
    for sid, found in stack_policies.items():
        stack = recording.stacks[sid]
        for role, policy in found.items():
            patterns = grant_patterns.setdefault((sid, role), [])
            for index, statement in enumerate(_statements(policy)):
                name = str(statement.get("Sid", index))
                for action in _as_list(statement["Action"]):
                    for r_index, resource in enumerate(_as_list(statement["Resource"])):
                        key = (stack.role_key(role), name, action, r_index)
                        grants.setdefault(key, False)
                        single = {k: v for k, v in statement.items() if k != "Sid"}
                        single.update(Action=[action], Resource=[resource])
                        patterns.append((key, {"Version": "2012-10-17", "Statement": [single]}))

    sites = callsites.inventory()
    reached: set[tuple[str, str, str]] = set()  # (site, role, architecture)
    for call in recording.calls:
        try:
            stack, role = recording.owner(call["identity"])
        except (LookupError, ValueError) as exc:
            problems.append(f"unattributed call {call['service']}:{call['operation']}: {exc}")
            continue
        arch = _call_architecture(stack, role)
        checked[arch] += 1
        site_problem = _reach(call, role, arch, sites, reached)
        if site_problem:
            problems.append(site_problem)
        if "error" in call:
            problems.append(f"{role}: {call['error']}")
            continue
        granted = stack_policies[stack.id].get(role)
        if granted is None:
            problems.append(f"{role} of stack {stack.architectures} has no policy")
            continue
        for auth in call["authorisations"]:
            action, resource, context = auth["action"], auth["resource"], auth["context"]
            if not is_allowed(granted, action, resource, context):
                denied[arch].append(f"{role}: {action} on {resource} {context or ''}")
            for key, single in grant_patterns[(stack.id, role)]:
                if not grants[key] and key[2] == action and is_allowed(single, *auth.values()):
                    grants[key] = True

    unused: dict[str, list[str]] = defaultdict(list)
    for (role_key, name, action, r_index), used in sorted(grants.items()):
        role = role_key.split(" ", 1)[0]
        if used or not_exercised(role, action) is not None:
            continue
        for arch in ROLE_ARCHITECTURES[role]:
            unused[arch].append(f"{role_key}: {name} {action} (resource #{r_index})")

    findings: dict[str, list[str]] = defaultdict(list)
    linted: set[str] = set()
    for sid, found in stack_policies.items():
        for role, policy in found.items():
            role_key = recording.stacks[sid].role_key(role)
            if role_key in linted:
                continue
            linted.add(role_key)
            rejected, _ = lint(policy)
            for arch in ROLE_ARCHITECTURES[role] if rejected else ():
                findings[arch] += [f"{role_key}: {text}" for text in rejected]
    total, hit, unreached = _site_coverage(reached)
    return Verdict(
        checked, dict(denied), dict(unused), dict(findings), problems, total, hit, unreached
    )


def _reach(
    call: Mapping[str, Any],
    role: str,
    arch: str,
    sites: list[callsites.CallSite],
    reached: set[tuple[str, str, str]],
) -> str | None:
    """Note the call site a recorded call was made from; a problem when it is at none."""
    if call.get("presigned"):
        return None  # a presigned URL is signed locally: a grant to check, not a call site
    where = call.get("site")
    if where is None:
        if role.endswith("state-machine"):
            return None  # moto's Step Functions engine: not runtime/ code
        return f"{role}: {call['service']}:{call['operation']} made from no runtime/ frame"
    site = callsites.site_at(sites, where["path"], where["line"])
    if site is None:
        return (
            f"{role}: {call['service']}:{call['operation']} from {where['path']}:{where['line']}, "
            "which mlserve/callsites.py does not list as a call site"
        )
    if role not in CALLERS.get(site.name, ()):
        return f"{role} made the call at {site.name}: tests/verify/call_sites.py does not say so"
    reached.add((site.name, role, arch))
    return None


def _site_coverage(
    reached: set[tuple[str, str, str]],
) -> tuple[Counter[str], Counter[str], dict[str, list[str]]]:
    """Per architecture: (site, identity) pairs, those reached, and those neither reached nor
    named in NOT_REACHED."""
    total: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    unreached: dict[str, list[str]] = defaultdict(list)
    for site, roles in CALLERS.items():
        for role in roles:
            for arch in ROLE_ARCHITECTURES[role]:
                total[arch] += 1
                if (site, role, arch) in reached:
                    hit[arch] += 1
                elif (site, role) not in NOT_REACHED:
                    unreached[arch].append(f"{site} as {role}")
    return total, hit, dict(unreached)


# --- the deployed stacks: every identity, both polling modes (fast tests) ---

EVERY_ARCHITECTURE = ",".join(KNOWN_ARCHITECTURES)


@dataclass(frozen=True)
class Deployed:
    """The program deployed locally with every architecture, read back from the embedded AWS."""

    stack: Stack
    environments: Mapping[str, Mapping[str, str]]  # identity -> its function's environment
    trust_policies: Mapping[str, Policy]  # role name -> AssumeRolePolicyDocument
    bucket_policy: Policy


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Deployed]:
    """polling mode -> the program deployed with every architecture and data capture in that
    mode (so every identity once); both into one embedded AWS, where their generated names do
    not collide."""
    model = train_tiny_model(tmp_path_factory.mktemp("least-privilege-model"))
    found: dict[str, Deployed] = {}
    with MotoServer(set_environment=False) as server:
        for polling in ("lambda", "native"):
            overrides = {
                "modelPath": str(model),
                "architecture": EVERY_ARCHITECTURE,
                "captureSamplePercent": "10",  # the capture function and its role too
            }
            deployment = deploy(None, {**overrides, "polling": polling}, server.endpoint_url)
            stack = Stack.of({"id": f"deployed-{polling}", **recorder.describe(deployment)})
            environments = {
                stack.function_identity(name): dict(c["Environment"]["Variables"])
                for name, c in deployment.functions().items()
            }
            policy = deployment.client("s3").get_bucket_policy(Bucket=stack.bucket)["Policy"]
            found[polling] = Deployed(
                stack, environments, deployment.trust_policies(), json.loads(policy)
            )
    return found


def test_the_evaluator_denies_what_the_policies_do_not_grant(
    deployed: dict[str, Deployed],
) -> None:
    """The evaluator is real: the resource, the action and every condition can deny."""
    stack, environments = deployed["lambda"].stack, deployed["lambda"].environments
    found = stack.policies()
    bucket = f"arn:aws:s3:::{stack.bucket}"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{stack.table}"
    model = "arn:aws:s3:::" + environments["predictor"][contract.ENV_MODEL_URI][len("s3://") :]
    _, name, version, _ = stack.model_key.split("/", 3)
    predictor = found["predictor"]
    assert is_allowed(predictor, "s3:GetObject", model)
    assert not is_allowed(predictor, "s3:GetObject", model.replace(f"/{version}/", "/other/"))
    assert not is_allowed(predictor, "s3:PutObject", model)
    assert not is_allowed(predictor, "s3:GetObject", f"{bucket}X/models/{name}/{version}/x")

    task = found["ecs-task"]
    assert is_allowed(task, "dynamodb:UpdateItem", table)
    assert not is_allowed(task, "dynamodb:PutItem", table)
    assert not is_allowed(task, "dynamodb:UpdateItem", table + "X")
    assert is_allowed(task, "s3:PutObject", f"{bucket}/results/job-1/predictions.json")
    assert not is_allowed(task, "s3:PutObject", f"{bucket}/inputs/job-1.json")

    # ecs:RunTask: the ecs:cluster condition (ArnEquals) decides, and must be present
    job_api = found["job-api"]
    definition = environments["job-api"][contract.ENV_ECS_TASK_DEFINITION]
    cluster = environments["job-api"][contract.ENV_ECS_CLUSTER]
    assert is_allowed(job_api, "ecs:RunTask", definition, {"ecs:cluster": cluster})
    assert not is_allowed(job_api, "ecs:RunTask", definition, {"ecs:cluster": cluster + "-other"})
    assert not is_allowed(job_api, "ecs:RunTask", definition, {})
    family = definition.rsplit("/", 1)[-1].split(":")[0]
    other_family = definition.replace(f"/{family}:", "/other:")
    assert not is_allowed(job_api, "ecs:RunTask", other_family, {"ecs:cluster": cluster})
    # iam:PassRole: only the two scoring roles, only to ECS tasks (StringEquals)
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/{stack.assumes['ecs-task']}"
    to_ecs = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    assert is_allowed(job_api, "iam:PassRole", role, to_ecs)
    assert not is_allowed(job_api, "iam:PassRole", role, {"iam:PassedToService": "ec2"})
    assert not is_allowed(job_api, "iam:PassRole", role + "-admin", to_ecs)

    # s3:ListBucket of the Batch job: the s3:prefix condition (StringLike) decides
    batch_job = found["batch-job"]
    assert is_allowed(batch_job, "s3:ListBucket", bucket, {"s3:prefix": "inputs/big/"})
    assert not is_allowed(batch_job, "s3:ListBucket", bucket, {"s3:prefix": "models/"})
    assert not is_allowed(batch_job, "s3:ListBucket", bucket, {"s3:prefix": ""})
    assert not is_allowed(batch_job, "s3:ListBucket", bucket, {})

    # a Deny statement wins over an Allow
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{bucket}/secret/*"},
        ],
    }
    assert is_allowed(deny, "s3:GetObject", f"{bucket}/public/x")
    assert not is_allowed(deny, "s3:GetObject", f"{bucket}/secret/x")
    with pytest.raises(ValueError, match="NumericLessThan"):
        conditions_hold({"NumericLessThan": {"aws:x": "1"}}, {"aws:x": "0"})


def test_every_deployed_policy_passes_the_linter(deployed: dict[str, Deployed]) -> None:
    """parliament (community auditors included) finds nothing but the justified findings, in
    every role policy, trust policy and the bucket policy the program deployed."""
    accepted_seen: set[str] = set()
    for polling, found in deployed.items():
        for role, documents in found.stack.role_policies.items():
            rejected, accepted = lint(merged(documents))
            assert rejected == [], f"{role} (polling {polling}): {rejected}"
            accepted_seen.update(text.split(" ", 1)[0] for text in accepted)
        # a trust policy: only the missing Resource (see TRUST_POLICY_FINDING)
        for role, trust in found.trust_policies.items():
            rejected, accepted = lint(trust, trust=True)
            assert (rejected, len(accepted)) == ([], 1), (role, trust)
        assert lint(found.bucket_policy) == ([], [])
    # the accepted list names only findings that occur (no stale justification)
    assert accepted_seen == {issue for issue, _ in ACCEPTED_FINDINGS} | {"RESOURCE_MISMATCH"}


# --- paths the e2e suite does not take ---

BIG_ROWS = 60_000  # rows whose predictions outgrow the job item (MAX_INLINE_ITEM_BYTES)
SPILLED_ROWS = 5_000  # rows (30 features) that outgrow the job item themselves: spilled
JOB_TIMEOUT = 240.0


class _Client:
    def __init__(self, emulator: Emulator) -> None:
        import requests

        self.url = emulator.url
        self.session = requests.Session()
        if emulator.api_key:
            self.session.headers["x-api-key"] = emulator.api_key

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.url + path, timeout=60, **kwargs)

    def wait_terminal(self, job_id: str) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.request("GET", f"/jobs/{job_id}").json()
            if job["status"] not in (contract.STATUS_PENDING, contract.STATUS_RUNNING):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still not terminal after {JOB_TIMEOUT} s")


def _rows(emulator: Emulator, count: int) -> list[list[int]]:
    features = len(emulator.model.metadata["feature_names"])
    return [[(i * 7 + j) % 10 for j in range(features)] for i in range(count)]


def _big_prediction(emulator: Emulator, key: str) -> None:
    """POST /predict of rows too big for the job item: the job API spills them to inputs/, the
    scoring task reads them and writes its predictions to results/, and the job API answers
    them from there (within the wait, or on a replay with the same Idempotency-Key)."""
    api = _Client(emulator)
    body = {"instances": _rows(emulator, BIG_ROWS)}
    headers = {"Idempotency-Key": key}
    first = api.request("POST", "/predict", json=body, headers=headers)
    if first.status_code == 202:
        job = api.wait_terminal(first.json()["job_id"])
        assert job["status"] == contract.STATUS_SUCCEEDED, job
        first = api.request("POST", "/predict", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert len(first.json()["predictions"]) == BIG_ROWS


def _function(emulator: Emulator, identity: str) -> Any:
    """The emulator's stand-in of the deployed step function of ``identity`` (run-ecs, ...),
    found by its deployed handler."""
    (handler,) = [h for h, role in HANDLER_ROLES.items() if role == identity]
    name = emulator.require_deployment().function_by_handler(handler)["FunctionName"]
    (function,) = [f for f in emulator.functions if f.name == name]
    return function


def _run_ecs_for_a_cancelled_job(emulator: Emulator) -> None:
    """RunECS started the task, then finds the job cancelled meanwhile: it stops the task."""
    from runtime.jobs import JobStore, new_job_id

    store = JobStore(emulator.client("dynamodb"), emulator.table)
    job = store.new_job(
        new_job_id(),
        architecture=contract.ARCH_STEPFUNCTIONS_ECS,
        model_version="v",
        instances=json.dumps(_rows(emulator, 1)),
        rows=1,
    )
    store.create(job)
    store.transition(job.job_id, contract.STATUS_CANCELLED, expected=[contract.STATUS_PENDING])
    assert "task_arn" in _function(emulator, "run-ecs").invoke({"job_id": job.job_id})


def _submit_batch_job_for_a_job_cancelled_meanwhile(emulator: Emulator) -> None:
    """SubmitBatchJob read the record (PENDING), and the job is cancelled while Batch accepts
    the job: the record it updates is CANCELLED, so it terminates the job it just submitted.
    The cancel is made deterministic by doing it inside moto's Batch SubmitJob."""
    from moto.batch.models import batch_backends

    from mlserve.local.aws import ACCOUNT_ID as ACCOUNT
    from runtime.jobs import JobStore, new_job_id

    store = JobStore(emulator.client("dynamodb"), emulator.table)
    job = store.new_job(
        new_job_id(),
        architecture=contract.ARCH_STEPFUNCTIONS_BATCH,
        model_version="v",
        input_uri=f"s3://{emulator.bucket}/inputs/lp.csv",
        output_uri=f"s3://{emulator.bucket}/results/lp-cancel/",
        format="csv",
        shards=1,
        priority="low",
    )
    store.create(job)
    backend: Any = batch_backends[ACCOUNT][REGION]
    submit = backend.submit_job

    def cancel_then_submit(*args: Any, **kwargs: Any) -> Any:
        store.transition(job.job_id, contract.STATUS_CANCELLED, expected=[contract.STATUS_PENDING])
        return submit(*args, **kwargs)

    backend.submit_job = cancel_then_submit
    try:
        function = _function(emulator, "submit-batch-job")
        assert "batch_job_id" in function.invoke({"job_id": job.job_id})
    finally:
        backend.submit_job = submit
    assert store.require(job.job_id).status == contract.STATUS_CANCELLED


def _batch_paths(emulator: Emulator) -> None:
    """stepfunctions-batch: inline rows POSTed to /jobs are staged under inputs/; a job config
    whose execution cannot start (the state machine is gone) is recorded FAILED."""
    import time

    api = _Client(emulator)
    # 20 rows fit the job item; SPILLED_ROWS do not: the job API spills them to
    # inputs/{id}.json and the launcher reads them back to stage them (s3:GetObject)
    for count in (20, SPILLED_ROWS):
        accepted = api.request("POST", "/jobs", json={"instances": _rows(emulator, count)})
        assert accepted.status_code == 202, accepted.text
        job = api.wait_terminal(accepted.json()["job_id"])
        assert job["status"] == contract.STATUS_SUCCEEDED, job

    s3 = emulator.client("s3")
    header = ",".join(emulator.model.metadata["feature_names"])
    # an input given as a prefix: the Batch job lists it (s3:ListBucket with s3:prefix)
    rows = "\n".join(",".join(str(v) for v in row) for row in _rows(emulator, 3))
    for part in ("a", "b"):
        body = f"{header}\n{rows}\n".encode()
        s3.put_object(Bucket=emulator.bucket, Key=f"inputs/lp-dir/{part}.csv", Body=body)
    directory = {
        "input_uri": f"s3://{emulator.bucket}/inputs/lp-dir/",
        "output_uri": f"s3://{emulator.bucket}/results/lp-dir/",
        "format": "csv",
    }
    accepted = api.request("POST", "/jobs", json=directory)
    assert accepted.status_code == 202, accepted.text
    job = api.wait_terminal(accepted.json()["job_id"])
    assert job["status"] == contract.STATUS_SUCCEEDED, job

    s3.put_object(Bucket=emulator.bucket, Key="inputs/lp.csv", Body=f"{header}\n".encode())
    emulator.client("stepfunctions").delete_state_machine(
        stateMachineArn=emulator.outputs["batchStateMachineArn"]
    )
    before = len(emulator.notifications.deliveries)
    config = {
        "input_uri": f"s3://{emulator.bucket}/inputs/lp.csv",
        "output_uri": f"s3://{emulator.bucket}/results/lp/",
        "format": "csv",
    }
    s3.put_object(Bucket=emulator.bucket, Key="jobs/lp.json", Body=json.dumps(config).encode())
    deadline = time.monotonic() + 60
    while len(emulator.notifications.deliveries) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    delivery = emulator.notifications.deliveries[before]
    assert delivery.done.wait(60), "the trigger is still running"
    (result,) = delivery.result["results"]
    assert result["outcome"] != "rejected", result  # a valid config: its start failed
    failed = api.request("GET", f"/jobs/{result['job_id']}").json()
    assert failed["status"] == contract.STATUS_FAILED, failed
    _submit_batch_job_for_a_job_cancelled_meanwhile(emulator)


def exercise_paths_beyond_the_e2e_suite(model_dir: Path) -> None:
    """Code paths that need a grant but that no e2e test takes, run with recording on."""
    with Emulator().start(contract.ARCH_LAMBDA_ECS, model_dir=model_dir, max_rows=BIG_ROWS) as emu:
        _big_prediction(emu, "lp-lambda-ecs")
    with Emulator().start(
        contract.ARCH_STEPFUNCTIONS_ECS, model_dir=model_dir, max_rows=BIG_ROWS
    ) as emu:
        _big_prediction(emu, "lp-stepfunctions-ecs")
        _run_ecs_for_a_cancelled_job(emu)
    with Emulator().start(
        contract.ARCH_STEPFUNCTIONS_BATCH, model_dir=model_dir, max_rows=SPILLED_ROWS
    ) as emu:
        _batch_paths(emu)


# The recorded e2e run uses every core, one worker per test file, as make test runs the suite:
# each worker process records its calls to a file of its own (mlserve.local.recorder).
E2E_WORKERS = ("-n", "auto", "--dist", "loadfile")


@pytest.mark.verify
def test_every_recorded_call_is_allowed_and_every_grant_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verify_model_dir: Path
) -> None:
    """The e2e suite of all four architectures, recorded; then (a), (b) and (c)."""
    calls_dir = tmp_path / "calls"
    env = {**os.environ, RECORD_ENV: str(calls_dir)}
    env.pop("MLSERVE_VERIFY_REPORT", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e", "-q", "-p", "no:cacheprovider", *E2E_WORKERS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    # The e2e suite's own failures are its business (under heavy load a CLI banner may come
    # late); what a failed test did not exercise shows up below as an unused grant.
    e2e = "\n".join(run.stdout.splitlines()[-15:])
    if run.returncode != 0:
        warnings.warn(f"the recorded e2e run had failures:\n{e2e}", stacklevel=1)
    monkeypatch.setenv(RECORD_ENV, str(calls_dir))
    try:
        exercise_paths_beyond_the_e2e_suite(verify_model_dir)
    finally:
        recorder.uninstall()
    recording = Recording.read(calls_dir)
    architectures = {a for stack in recording.stacks.values() for a in stack.architectures}
    assert architectures == set(KNOWN_ARCHITECTURES), architectures
    pollings = {
        (a, stack.polling)
        for stack in recording.stacks.values()
        for a in stack.architectures
        if a.startswith("stepfunctions-")
    }
    both = {(a, p) for a in KNOWN_ARCHITECTURES[2:] for p in ("lambda", "native")}
    assert both <= pollings, pollings  # each state machine policy in both polling modes

    verdict = verify(recording)
    assert verdict.problems == [], e2e
    assert verdict.denied == {}, e2e
    assert verdict.unused == {}, e2e
    assert verdict.findings == {}
    assert verdict.unreached == {}, verdict.unreached
    for architecture in KNOWN_ARCHITECTURES:
        assert verdict.calls_checked[architecture] > 0, architecture
        record(
            "least_privilege",
            architecture,
            calls_checked=verdict.calls_checked[architecture],
            calls_denied=0,
            unused_grants=0,
            policy_findings=0,
            call_sites_reached=verdict.sites_reached[architecture],
            call_sites_total=verdict.sites_total[architecture],
            call_sites_unreached=0,
        )


def test_a_call_is_recorded_as_what_iam_authorises() -> None:
    """The recorder's mapping of API calls to IAM actions, resources and condition keys."""
    authorise = recorder.authorisations
    assert authorise("s3", "HeadObject", {"Bucket": "b", "Key": "results/j/p.json"}) == [
        ("s3:GetObject", "arn:aws:s3:::b/results/j/p.json", {})
    ]
    copy = {
        "Bucket": "b",
        "Key": "jobs/rejected/x.json",
        "CopySource": {"Bucket": "b", "Key": "jobs/x.json"},
    }
    assert authorise("s3", "CopyObject", copy) == [
        ("s3:GetObject", "arn:aws:s3:::b/jobs/x.json", {}),
        ("s3:PutObject", "arn:aws:s3:::b/jobs/rejected/x.json", {}),
    ]
    assert authorise("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "inputs/a/"}) == [
        ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "inputs/a/"})
    ]
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/c"
    assert authorise("ecs", "StopTask", {"cluster": "c", "task": "abc"}) == [
        ("ecs:StopTask", f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/c/abc", {"ecs:cluster": cluster})
    ]
    assert authorise("lambda", "Invoke", {"FunctionName": "f", "Qualifier": "live"}) == [
        ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:f:live", {})
    ]
    assert authorise("batch", "TerminateJob", {"jobId": "j1", "reason": "r"}) == [
        ("batch:TerminateJob", f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:job/j1", {})
    ]
    with pytest.raises(recorder.UnmappedCall, match="s3:PutBucketPolicy"):
        authorise("s3", "PutBucketPolicy", {"Bucket": "b", "Policy": "{}"})


def test_the_batch_job_api_may_read_back_the_rows_it_spilled(
    deployed: dict[str, Deployed],
) -> None:
    """stepfunctions-batch: rows too big for the job item are spilled by the job API to
    ``inputs/{id}.json`` and read back by StepFunctionsBatchLauncher.start (GetObject) to stage
    them as JSON lines; without the grant every such request failed "input was not staged".
    (Every job API reads ``inputs/*``: the upload check of POST /jobs/{id}/start too.)"""
    from runtime.jobs import input_uri_for
    from runtime.launchers import staged_input_key

    stack = deployed["lambda"].stack
    api = stack.policies()["batch-job-api"]
    spilled = input_uri_for(stack.bucket, "job-1").removeprefix("s3://")
    ((action, resource, _),) = recorder.authorisations(
        "s3", "GetObject", {"Bucket": stack.bucket, "Key": spilled.split("/", 1)[1]}
    )
    assert is_allowed(api, action, resource)
    bucket = f"arn:aws:s3:::{stack.bucket}"
    assert is_allowed(api, "s3:GetObject", f"{bucket}/{staged_input_key('j')}")
    # nothing more: not the job configs, not the models, not another prefix
    for key in ("jobs/x.json", stack.model_key, "capture/x.json"):
        assert not is_allowed(api, "s3:GetObject", f"{bucket}/{key}"), key


# --- the call-site inventory (fast: make test) ---


def test_every_call_site_of_runtime_is_listed_with_its_callers() -> None:
    """A new boto3 call in runtime/ fails here until tests/verify/call_sites.py names the
    identities that make it (and `make verify` then proves each reaches it); a removed one
    fails until its entry goes."""
    found = {site.name for site in callsites.inventory()}
    listed = set(CALLERS)
    assert found - listed == set(), "call sites with no caller listed in call_sites.py"
    assert listed - found == set(), "call_sites.py lists call sites runtime/ no longer has"
    code_roles = FUNCTION_ROLES | {"ecs-task", "batch-job"}
    for site, roles in CALLERS.items():
        assert roles and len(set(roles)) == len(roles), site
        assert set(roles) <= code_roles, (site, set(roles) - code_roles)
    pairs = {(site, role) for site, roles in CALLERS.items() for role in roles}
    assert set(NOT_REACHED) <= pairs
    assert all(NOT_REACHED.values())  # every excused pair says why


def test_every_caller_is_granted_the_actions_of_its_call_sites(
    deployed: dict[str, Deployed],
) -> None:
    """The policy deployed for each identity allows the IAM actions of the call sites it makes,
    on some resource: a caller added to call_sites.py without its grant fails here already (the
    recorded suites of `make verify` check the exact resources)."""
    sites = {site.name: site for site in callsites.inventory()}
    found = deployed["lambda"].stack.policies()
    missing = []
    for name, roles in CALLERS.items():
        site = sites[name]
        for role in roles:
            granted = {
                action
                for statement in _statements(found[role])
                if statement["Effect"] == "Allow"
                for action in _as_list(statement["Action"])
            }
            for action in recorder.iam_actions(site.service, site.api_operation):
                if action not in granted:
                    missing.append(f"{role} lacks {action} for {name}")
    assert missing == []


def test_the_inventory_reads_boto3_calls_from_the_code(tmp_path: Path) -> None:
    source = tmp_path / "runtime" / "example.py"
    source.parent.mkdir()
    source.write_text(
        "def stage(s3, store, rows):\n"
        "    s3.put_object(Bucket='b', Key='k', Body=b'')\n"
        "    s3.put_object(Bucket='b', Key='k2', Body=b'')\n"
        "    url = s3.generate_presigned_url('get_object', Params={})  # signs locally\n"
        "    store.get_item('not a client: positional')\n"
        "    for page in s3.get_paginator('list_objects_v2').paginate(\n"
        "        Bucket='b', Prefix='p/'\n"
        "    ):\n"
        "        pass\n"
        "    s3.upload_file('/tmp/f', 'b', 'k')\n"
        "\n"
        "class Store:\n"
        "    def get(self, job_id):\n"
        "        return self.dynamodb.get_item(TableName='t', Key={})\n",
        encoding="utf-8",
    )
    sites = callsites.sites_in(source, tmp_path)
    assert [s.name for s in sites] == [
        "runtime/example.py::stage::put_object",
        "runtime/example.py::stage::put_object#2",
        "runtime/example.py::stage::list_objects_v2",
        "runtime/example.py::stage::upload_file",
        "runtime/example.py::Store.get::get_item",
    ]
    assert [(s.service, s.api_operation) for s in sites][2:] == [
        ("s3", "ListObjectsV2"),
        ("s3", "PutObject"),
        ("dynamodb", "GetItem"),
    ]
    # a paginator's requests are sent from the for statement's line, inside the call's span
    assert callsites.site_at(sites, "runtime/example.py", 6) == sites[2]
    assert callsites.site_at(sites, "runtime/example.py", 7) == sites[2]
    assert callsites.site_at(sites, "runtime/example.py", 5) is None

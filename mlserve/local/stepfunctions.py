"""Step Functions, locally: moto's state machine engine runs the definitions of
components/workflows.py, and the Lambda functions it invokes are the real handlers, in-process.

The embedded moto server (mlserve.local.aws) runs in this process, so everything here is an
in-process hook, installed while the emulator runs and removed when it stops:

- The engine: moto keeps Step Functions as a record-keeper unless its user config says
  ``{"stepfunctions": {"execute_state_machine": True}}``; then StartExecution runs the definition
  in a worker thread that calls the other services over HTTP on ``MOTO_PORT``
  (mlserve.local.aws sets it).
- Lambda: ``Invoke`` of a function registered with :meth:`LocalStepFunctions.register` runs its
  :class:`~mlserve.local.functions.LocalFunction` (the real handler, its environment, a Lambda
  context) and answers with its result, or with ``FunctionError: Unhandled`` and the
  ``errorType``/``errorMessage`` payload Lambda sends when a handler raises.
- ``ecs:runTask`` (and ``.sync``): the request and the responses are converted between the
  ASL's PascalCase and ECS's camelCase as Step Functions does, so a ``.sync`` task waits for the
  local task process (mlserve.local.fargate) to stop and returns the described task
  (``Containers[0].ExitCode``, ``StoppedReason``, ...).

Each work-around for a moto 5.2 defect is marked ``moto defect:``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from mlserve.local.aws import ACCOUNT_ID, REGION
from mlserve.local.functions import LocalFunction

logger = logging.getLogger("mlserve-local.stepfunctions")

_LOCAL_DIR = Path(__file__).resolve().parent  # mlserve/local: frames left out of stack traces
SHUTDOWN_GRACE = 5.0  # seconds to wait for the executions' worker threads after StopExecution
_hook_lock = threading.Lock()
_MARKER = "_mlserve_local_stepfunctions"


class LocalStepFunctions:
    """moto's Step Functions engine with the Lambda and ECS hooks (see the module docstring)."""

    def __init__(self) -> None:
        self._functions: dict[str, LocalFunction] = {}
        self._lock = threading.Lock()
        self._saved_config: Any = None
        self._lambda_backend: Any = None
        self._class_originals: list[tuple[Any, str, Any]] = []  # (class, name, original)
        self._json_path_originals: list[tuple[Any, Any]] = []
        self._installed = False
        self.invocations: dict[str, int] = {}  # function name -> Invoke calls it served

    # --- the hooks ----------------------------------------------------------------------------
    def install(self) -> None:
        from moto.awslambda.models import lambda_backends
        from moto.core.config import default_user_config
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_batch,
            state_task_service_ecs,
        )

        with _hook_lock:
            backend: Any = lambda_backends[ACCOUNT_ID][REGION]
            if getattr(backend, _MARKER, None) is not None:
                raise RuntimeError("moto's Lambda backend is already run by another emulator")
            self._installed = True  # from here on, uninstall() puts back what was changed
            # moto's default: StartExecution only records an execution (status RUNNING for
            # ever); this config makes its engine execute the definition. Put back on stop.
            self._saved_config = default_user_config.get("stepfunctions")
            default_user_config["stepfunctions"] = {"execute_state_machine": True}
            # moto defect: without Docker a Lambda Invoke does not run the function; it answers
            # a canned "Simple Lambda happy path OK" (or echoes the input). Registered functions
            # run their real handler here instead; an instance attribute shadows the backend's
            # method for this backend only.
            backend.invoke = self._invoke
            setattr(backend, _MARKER, self)
            self._lambda_backend = backend
            # moto defect: the engine's ECS integration hands the ASL's PascalCase parameters
            # (Cluster, TaskDefinition, ...) to boto3 unconverted and reads the camelCase
            # responses as PascalCase (response["Tasks"][0]["ClusterArn"]): ecs:runTask and
            # ecs:runTask.sync fail with a KeyError. moto ported Step Functions' request and
            # response normalisation (_to_boto_request/_from_boto_response) but left the two
            # methods that apply it empty; these fill them in for the ECS integration.
            # moto defect: stopping an execution (StopExecution, or its timeout) while an
            # ecs:runTask.sync state waits leaves the task running; Step Functions stops it.
            # _build_sync_resolver notes the task, _eval_sync stops it when the wait ended
            # without a stopped task.
            ecs_class = state_task_service_ecs.StateTaskServiceEcs
            # moto defect: the same for batch:submitJob(.sync): the ASL's JobName/JobQueue/
            # ArrayProperties.Size/ContainerOverrides.Environment[].Name are not converted to
            # boto3's jobName/..., and the .sync resolver reads submission["JobId"] from the
            # camelCase response (KeyError). Stopping the execution while it waits leaves the
            # Batch job running; Step Functions terminates it.
            batch_class = state_task_service_batch.StateTaskServiceBatch
            for cls, name, method in (
                (ecs_class, "_normalise_parameters", _normalise_parameters),
                (ecs_class, "_normalise_response", _normalise_response),
                (ecs_class, "_build_sync_resolver", _sync_resolver_noting_the_task(ecs_class)),
                (ecs_class, "_eval_sync", _eval_sync_stopping_the_task(ecs_class)),
                (batch_class, "_normalise_parameters", _normalise_parameters),
                (batch_class, "_normalise_response", _normalise_response),
                (batch_class, "_build_sync_resolver", _sync_resolver_noting_the_job(batch_class)),
                (batch_class, "_eval_sync", _eval_sync_terminating_the_job(batch_class)),
            ):
                self._class_originals.append((cls, name, cls.__dict__.get(name)))
                setattr(cls, name, method)
            # moto defect: its JSONPath evaluation returns a list for any path through an array
            # index: "$.task.Containers[0].ExitCode" gives [0], not 0 (a fix for wildcard paths,
            # getmoto/moto#7825, that also catches definite ones), so a Choice on the exit code
            # of a runTask.sync result never matches. A definite path (no wildcard, slice,
            # filter or recursive descent) with one match is that match's value, as in AWS.
            self._json_path_originals = _patch_extract_json()

    def uninstall(self) -> None:
        from moto.core.config import default_user_config

        with _hook_lock:
            if not self._installed:
                return
            self._installed = False
            backend, self._lambda_backend = self._lambda_backend, None
            if backend is not None:
                for name in ("invoke", _MARKER):
                    vars(backend).pop(name, None)
            for cls, name, original in reversed(self._class_originals):
                if original is None:
                    if name in cls.__dict__:
                        delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self._class_originals.clear()
            for module, original in self._json_path_originals:
                module.extract_json = original
            self._json_path_originals = []
            if self._saved_config is None:
                default_user_config.pop("stepfunctions", None)
            else:
                default_user_config["stepfunctions"] = self._saved_config

    def register(self, function: LocalFunction) -> None:
        """Serve Lambda ``Invoke`` of the function of this name with ``function``."""
        with self._lock:
            self._functions[function.name] = function

    # --- executions -----------------------------------------------------------------------------
    @staticmethod
    def backend() -> Any:
        """moto's executing Step Functions backend of the emulator's account and region."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        return stepfunctions_parser_backends[ACCOUNT_ID][REGION]

    def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop every running execution, wait (bounded) for their worker threads, unhook."""
        try:
            if self._installed:
                self._stop_executions(grace)
        finally:
            self.uninstall()

    def _stop_executions(self, grace: float) -> None:
        from moto.stepfunctions.parser.utils import TMP_THREADS

        backend = self.backend()
        for machine in list(backend.state_machines):
            for execution in list(machine.executions):
                if execution.status != "RUNNING":  # a str Enum
                    continue
                try:
                    backend.stop_execution(execution.execution_arn)
                except Exception:  # finished meanwhile
                    logger.debug("stop_execution %s", execution.execution_arn, exc_info=True)
        # The engine starts one daemon worker thread per execution and keeps it in TMP_THREADS
        # (it never joins them); a stopped execution's thread ends at its next step.
        deadline = time.monotonic() + grace
        for thread in list(TMP_THREADS):
            if thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                with contextlib.suppress(ValueError):
                    TMP_THREADS.remove(thread)

    # --- Lambda Invoke --------------------------------------------------------------------------
    def _invoke(
        self,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> str | bytes | None:
        backend = self._lambda_backend
        fn = backend.get_function(function_name, qualifier)  # unknown -> ResourceNotFound
        with self._lock:
            local = self._functions.get(fn.function_name)
            if local is not None:
                self.invocations[local.name] = self.invocations.get(local.name, 0) + 1
        if local is None:
            result: str | bytes | None = type(backend).invoke(
                backend, function_name, qualifier, body, headers, response_headers
            )
            return result
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        event = json.loads(body) if body else {}
        try:
            output = local.invoke(event)
            payload = json.dumps(output).encode("utf-8")
        except Exception as exc:  # what the Lambda runtime answers for an unhandled error
            logger.info("function %s raised %s: %s", local.name, type(exc).__name__, exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": "",
                    "stackTrace": [  # the handler's frames, not the emulator's
                        line
                        for frame, line in zip(
                            traceback.extract_tb(exc.__traceback__),
                            traceback.format_tb(exc.__traceback__),
                            strict=True,
                        )
                        if not frame.filename.startswith(str(_LOCAL_DIR))
                    ],
                }
            ).encode("utf-8")
        response_headers["Content-Length"] = str(len(payload))
        return payload


# --- ecs:runTask.sync: stop the task of a stopped execution -------------------------------------

_SYNC_TASK = "mlserve_task"  # attribute of a sync resolver: (cluster ARN, task ARN)
SYNC_STOPPED_REASON = "Task stopped by AWS Step Functions: its execution ended"


def _sync_resolver_noting_the_task(ecs_class: Any) -> Callable[..., Any]:
    original = ecs_class._build_sync_resolver

    def _build_sync_resolver(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        submission: Any = env.stack[-1] if env.stack else None
        resolver = original(self, env, *args, **kwargs)
        try:
            task = submission["Tasks"][0]
            setattr(resolver, _SYNC_TASK, (str(task["ClusterArn"]), str(task["TaskArn"])))
        except (KeyError, IndexError, TypeError):
            pass
        return resolver

    return _build_sync_resolver


def _eval_sync_stopping_the_task(ecs_class: Any) -> Callable[..., Any]:
    original = ecs_class._eval_sync

    def _eval_sync(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = original(self, env, *args, **kwargs)
        resolver = kwargs.get("sync_resolver", args[0] if args else None)
        task = getattr(resolver, _SYNC_TASK, None)
        if outcome is None and task is not None:  # the wait ended, the task did not
            cluster, task_arn = task
            try:
                _engine_ecs_client().stop_task(
                    cluster=cluster, task=task_arn, reason=SYNC_STOPPED_REASON
                )
                logger.info("execution ended: stopped its task %s", task_arn)
            except Exception:
                logger.warning("could not stop the task %s", task_arn, exc_info=True)
        return outcome

    return _eval_sync


def _engine_ecs_client() -> Any:
    """An ECS client the way the engine makes them (the server's port, as MOTO_PORT says)."""
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    return boto_client_for(region=REGION, service="ecs")


# --- batch:submitJob.sync: terminate the job of a stopped execution ------------------------------

_SYNC_JOB = "mlserve_batch_job"  # attribute of a sync resolver: the Batch job id
SYNC_TERMINATED_REASON = "Job terminated by AWS Step Functions: its execution ended"


def _sync_resolver_noting_the_job(batch_class: Any) -> Callable[..., Any]:
    original = batch_class._build_sync_resolver

    def _build_sync_resolver(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        submission: Any = env.stack[-1] if env.stack else None
        resolver = original(self, env, *args, **kwargs)
        with contextlib.suppress(KeyError, TypeError):
            setattr(resolver, _SYNC_JOB, str(submission["JobId"]))
        return resolver

    return _build_sync_resolver


def _eval_sync_terminating_the_job(batch_class: Any) -> Callable[..., Any]:
    original = batch_class._eval_sync

    def _eval_sync(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = original(self, env, *args, **kwargs)
        resolver = kwargs.get("sync_resolver", args[0] if args else None)
        job_id = getattr(resolver, _SYNC_JOB, None)
        if outcome is None and job_id is not None:  # the wait ended, the job did not
            try:
                from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

                batch = boto_client_for(region=REGION, service="batch")
                batch.terminate_job(jobId=job_id, reason=SYNC_TERMINATED_REASON)
                logger.info("execution ended: terminated its Batch job %s", job_id)
            except Exception:
                logger.warning("could not terminate the Batch job %s", job_id, exc_info=True)
        return outcome

    return _eval_sync


# --- JSONPath -----------------------------------------------------------------------------------

# Modules of moto's engine that evaluate JSONPath with ``extract_json`` (imported by name).
_JSON_PATH_USERS = (
    "moto.stepfunctions.parser.asl.utils.json_path",
    "moto.stepfunctions.parser.asl.eval.states",
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.intrinsic.argument.argument",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations"
    ".numeric",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations"
    ".string_operators",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations"
    ".boolean_equals",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations"
    ".timestamp_operators",
)
_INDEFINITE_PATH = re.compile(r"\[\s*(\*|-?\d*\s*:|\?)|\.\.")


def _patch_extract_json() -> list[tuple[Any, Any]]:
    """Point every engine module's ``extract_json`` at one that gives a definite path's single
    match as it is; return the (module, original) pairs to put back."""
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        if not _INDEFINITE_PATH.search(path):
            from jsonpath_ng.ext import parse

            matches = parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return original(path, data)

    patched: list[tuple[Any, Any]] = []
    for name in _JSON_PATH_USERS:
        module = importlib.import_module(name)
        if getattr(module, "extract_json", None) is original:
            module.extract_json = extract_json  # type: ignore[attr-defined]
            patched.append((module, original))
    return patched


# --- the ECS integration's normalisation (installed on StateTaskServiceEcs) ----------------------


@functools.cache
def _service_model(service: str) -> tuple[Any, dict[str, str]]:
    """botocore's service model of ``service`` (ecs, batch), and its operation names by
    snake_case name."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return model, {xform_name(name): name for name in model.operation_names}


def _operation(service: Any, action: str | None, boto_service_name: str | None = None) -> Any:
    """botocore's operation model of ``action`` (snake_case, e.g. ``run_task``)."""
    model, names = _service_model(service._get_boto_service_name(boto_service_name))
    wanted = action or service._get_boto_service_action()
    return model.operation_model(names.get(wanted, wanted))


def _normalise_parameters(
    self: Any,
    parameters: dict[str, Any],
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """ASL ``{"Cluster": ..., "Overrides": {"ContainerOverrides": [{"Name": ...}]}}`` ->
    boto3's ``{"cluster": ..., "overrides": {"containerOverrides": [{"name": ...}]}}``."""
    operation = _operation(self, service_action_name, boto_service_name)
    self._to_boto_request(parameters, operation.input_shape)


def _normalise_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    """boto3's ``{"tasks": [{"taskArn": ...}]}`` -> ``{"Tasks": [{"TaskArn": ...}]}``
    (idempotent: keys already converted are not members of the shape and stay as they are)."""
    operation = _operation(self, service_action_name, boto_service_name)
    if operation.output_shape is not None:
        self._from_boto_response(response, operation.output_shape)
    # moto defect: the engine keeps boto3's datetime objects (CreatedAt, StoppedAt, ...) in the
    # state's output, which then is not JSON: DescribeExecution fails with HTTP 500. Step
    # Functions gives these timestamps as epoch milliseconds.
    _timestamps_to_millis(response)


def _timestamps_to_millis(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _timestamps_to_millis(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = _timestamps_to_millis(item)
    return value

"""AWS Batch on Fargate, locally: ``SubmitJob`` runs the job's container as local processes.

The embedded moto server (mlserve.local.aws) runs in this process, so its Batch backend is hooked
in-process, per backend instance, while the emulator runs:

- ``SubmitJob`` validates and creates the job in moto as usual (same job ids and ARNs; array
  children ``<parent id>:<index>``) but nothing of moto's runs it. Each job (or each child of an
  array job) goes RUNNABLE onto a scheduler that runs at most ``max_parallel`` containers at a
  time (``os.cpu_count()`` by default, the local "maxVcpus"), higher-priority queues first. A
  container is ``python -m runtime.scoring`` (the scoring image's ENTRYPOINT, run from this
  working tree) with the job definition's command and environment, the container overrides,
  ``AWS_BATCH_JOB_ID`` / ``AWS_BATCH_JOB_ATTEMPT`` / ``AWS_BATCH_JOB_ARRAY_INDEX`` (children),
  ``AWS_BATCH_JQ_NAME`` and the embedded AWS endpoint, credentials and region.
- Retries follow the job definition's ``retryStrategy``: ``attempts`` and the first matching
  ``evaluateOnExit`` rule (``onStatusReason``/``onReason``/``onExitCode`` glob patterns, action
  RETRY or EXIT; no rule matching means retry while attempts remain), as Batch does.
- ``DescribeJobs`` reports SUBMITTED / PENDING / RUNNABLE / STARTING / RUNNING / SUCCEEDED /
  FAILED, ``statusReason``, ``attempts`` (each with its container ``exitCode``, ``reason``,
  ``logStreamName``, ``startedAt``/``stoppedAt`` and ``statusReason``), ``container.exitCode``,
  and for an array parent ``arrayProperties.statusSummary`` and the aggregate status: SUCCEEDED
  when every child succeeded, FAILED once every child finished and one failed.
- ``TerminateJob`` (and ``CancelJob`` of a job not started yet) fails the job (an array parent:
  every child) without retrying it; a running container gets SIGTERM, then SIGKILL after
  :data:`STOP_TIMEOUT`. The job definition's (or SubmitJob's) ``attemptDurationSeconds`` kills
  an attempt that runs longer ("Job attempt duration exceeded timeout").
- Fault injection for tests: :meth:`LocalBatch.inject_failure` makes chosen attempts fail the
  way infrastructure fails them (``Host EC2 (instance ...) terminated.``, no exit code) or with
  an exit code, before their container runs.

Each work-around for a moto 5.2 defect is marked ``moto defect:``.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import itertools
import logging
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlserve.local import recorder
from mlserve.local.aws import ACCOUNT_ID, FAKE_CREDENTIALS, REGION
from mlserve.local.fargate import _HOST_PASSTHROUGH, LOCAL_SCORING_IMAGE, REPO_ROOT
from runtime import contract

logger = logging.getLogger("mlserve-local.batch")

STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL when a job is terminated
SHUTDOWN_GRACE = 5.0
ESSENTIAL_EXITED = "Essential container in task exited"
HOST_TERMINATED = "Host EC2 (instance i-0mlservelocal) terminated."
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
TERMINAL = ("SUCCEEDED", "FAILED")
DEFAULT_LOG_GROUP = "/aws/batch/job"  # Batch's awslogs group when the definition names none
_MARKER = "_mlserve_local_batch"
_hook_lock = threading.Lock()
_request = threading.local()  # the SubmitJob request's retryStrategy (see install)


def _millis() -> int:
    return int(time.time() * 1000)


@dataclass
class Fault:
    """An injected failure: attempts ``attempts`` of the jobs it matches fail before running."""

    array_index: int | None = None  # None: any job (array child or not)
    attempts: tuple[int, ...] = (1,)
    status_reason: str = HOST_TERMINATED
    exit_code: int | None = None  # None: an infrastructure failure (no container exit code)
    job_name: str | None = None
    hits: int = 0

    def matches(self, run: LocalBatchJob, attempt: int) -> bool:
        if self.job_name is not None and run.job_name != self.job_name:
            return False
        if self.array_index is not None and run.array_index != self.array_index:
            return False
        return attempt in self.attempts


@dataclass
class LocalBatchJob:
    """One job that runs a container: a non-array job or one child of an array job."""

    job_id: str
    job_name: str
    queue_name: str
    priority: int
    array_index: int | None
    command: list[str]
    environment: dict[str, str]
    image: str
    max_attempts: int
    evaluate_on_exit: list[dict[str, Any]]
    attempt_timeout: float | None
    log_stream_prefix: str
    log_group: str  # the awslogs group (Batch's default: /aws/batch/job)
    model: Any = field(repr=False)  # moto's Job (our subclass): what DescribeJobs serialises
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    attempt: int = 0
    exit_codes: list[int | None] = field(default_factory=list)
    terminated: str | None = None  # the TerminateJob/CancelJob reason
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    log_paths: list[Path] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.model.status)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_paths if p.exists())


def _local_job_class() -> type:
    """A subclass of moto's Job that never runs itself and describes itself like Batch."""
    from moto.batch.models import Job

    class _LocalJob(Job):
        # moto defect: Job is a ManagedState whose default transitions step SUBMITTED ->
        # ... -> RUNNING on DescribeJobs with nothing running (and, without Docker, its thread
        # marks jobs SUCCEEDED or FAILED without running anything). Only LocalBatch moves
        # this status; the thread is never started.
        mlserve_env: dict[str, str]
        mlserve_reason: str | None

        def run(self) -> None:  # pragma: no cover - never started
            return

        def _get_container_property(self, p: str, default: Any) -> Any:
            # moto defect: the environment is rebuilt by appending the definition's variables
            # and AWS_BATCH_JOB_ID to the override list on every DescribeJobs (it grows
            # without end). The container's environment is the one LocalBatch gave it.
            if p == "environment":
                env = {**self.mlserve_env, "AWS_BATCH_JOB_ID": self.job_id}
                return [{"name": k, "value": v} for k, v in sorted(env.items())]
            return super()._get_container_property(p, default)

        def describe(self) -> dict[str, Any]:
            children = self._child_jobs
            if children:
                self.status = _aggregate([str(c.status) for c in children])
                if self.status in TERMINAL and not self.job_stopped:
                    self.job_stopped = True
                    self.job_stopped_at = max(c.job_stopped_at for c in children)
                    failed = [c for c in children if c.status == "FAILED"]
                    if failed and self.job_stopped_reason is None:
                        self.job_stopped_reason = (
                            f"Array Child Job failed: {len(failed)} of {len(children)}"
                        )
            result: dict[str, Any] = super().describe()
            # moto defect: describe() sets SUCCEEDED only; a parent with a failed child stays
            # PENDING for ever. The aggregate above is what Batch reports.
            result["status"] = self.status
            container = result.get("container")
            if isinstance(container, dict):
                # moto defect: the container's exitCode/reason (from describe_short) are
                # overwritten by the container details.
                if self.exit_code is not None:
                    container["exitCode"] = self.exit_code
                if getattr(self, "mlserve_reason", None):
                    container["reason"] = self.mlserve_reason
            if not children and self.array_properties.get("index") is not None:
                result["arrayProperties"] = {"index": self.array_properties["index"]}
            if self.job_stopped_reason is not None:
                result["statusReason"] = self.job_stopped_reason
            return result

    return _LocalJob


def _aggregate(statuses: list[str]) -> str:
    """An array parent's status from its children's."""
    if all(s == "SUCCEEDED" for s in statuses):
        return "SUCCEEDED"
    if all(s in TERMINAL for s in statuses):
        return "FAILED"
    if any(s in ("STARTING", "RUNNING", "SUCCEEDED", "FAILED") for s in statuses):
        return "RUNNING"
    return "PENDING"


def _pairs(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(i["name"]): str(i.get("value", "")) for i in items or [] if "name" in i}


def _glob(pattern: str | None, value: str | None) -> bool:
    """Batch's evaluateOnExit patterns: exact, or a prefix ending in ``*``."""
    if pattern is None:
        return True
    if value is None:
        return False
    return fnmatch.fnmatchcase(value, pattern)


def evaluate_on_exit(
    rules: list[dict[str, Any]],
    *,
    status_reason: str | None,
    reason: str | None,
    exit_code: int | None,
) -> str | None:
    """The action (RETRY/EXIT) of the first rule matching an attempt's outcome, else None."""
    for rule in rules:
        if (
            _glob(rule.get("onStatusReason"), status_reason)
            and _glob(rule.get("onReason"), reason)
            and _glob(rule.get("onExitCode"), None if exit_code is None else str(exit_code))
        ):
            # moto defect: RegisterJobDefinition stores the action lower-cased ("retry").
            return str(rule.get("action", "")).upper()
    return None


class LocalBatch:
    """Runs the jobs of the embedded moto's Batch as local processes (module docstring)."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        work_dir: Path,
        max_parallel: int | None = None,
        images: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        start_delay: float = 0.0,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.work_dir = work_dir
        self.log_dir = log_dir or work_dir / "logs"
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 1)
        # The local "registry": image -> the module its ENTRYPOINT runs (python -m MODULE).
        # Only the scoring image of this working tree by default; any other image cannot be
        # pulled (CannotPullContainerError, retried as the job definition says).
        self.images: dict[str, str] = dict(images or {LOCAL_SCORING_IMAGE: contract.SCORING_MODULE})
        self.start_delay = start_delay  # seconds RUNNABLE/STARTING before a container starts
        self._lock = threading.Lock()
        self._runs: dict[str, LocalBatchJob] = {}
        self._faults: list[Fault] = []
        self._queue: queue.PriorityQueue[tuple[int, int, str | None]] = queue.PriorityQueue()
        self._sequence = itertools.count()
        self._workers: list[threading.Thread] = []
        self._backend: Any = None
        self._original_submitjob: Any = None
        self._stopping = threading.Event()
        self.submit_job_calls = 0
        self.running_peak = 0
        self._running = 0

    # --- the hooks ----------------------------------------------------------------------------
    def install(self) -> None:
        from moto.batch.models import batch_backends

        with _hook_lock:
            backend: Any = batch_backends[ACCOUNT_ID][REGION]
            if getattr(backend, _MARKER, None) is not None:
                raise RuntimeError("moto's Batch backend is already run by another LocalBatch")
            # Instance attributes shadow the backend's methods for this backend only.
            backend.submit_job = self._submit_job
            backend.terminate_job = self._terminate_job
            backend.cancel_job = self._cancel_job
            setattr(backend, _MARKER, self)
            self._backend = backend
            # moto defect: SubmitJob drops the request's retryStrategy (it overrides the job
            # definition's in Batch). The response method notes it for _submit_job.
            from moto.batch.responses import BatchResponse

            if self._original_submitjob is None:
                original = BatchResponse.submitjob
                self._original_submitjob = original

                def submitjob(response: Any) -> str:
                    _request.retry_strategy = response._get_param("retryStrategy")
                    try:
                        return str(original(response))
                    finally:
                        _request.retry_strategy = None

                setattr(BatchResponse, "submitjob", submitjob)  # noqa: B010
        for n in range(self.max_parallel):
            worker = threading.Thread(target=self._work, name=f"batch-worker-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        atexit.register(self._kill_all)

    def uninstall(self) -> None:
        with _hook_lock:
            backend, self._backend = self._backend, None
            if backend is not None:
                for name in ("submit_job", "terminate_job", "cancel_job", _MARKER):
                    vars(backend).pop(name, None)
            original, self._original_submitjob = self._original_submitjob, None
            if original is not None:
                from moto.batch.responses import BatchResponse

                setattr(BatchResponse, "submitjob", original)  # noqa: B010
        atexit.unregister(self._kill_all)

    # --- what tests and the CLI look at ---------------------------------------------------------
    @property
    def jobs(self) -> list[LocalBatchJob]:
        """Every container job (non-array jobs and array children), in submission order."""
        with self._lock:
            return list(self._runs.values())

    def job(self, job_id: str) -> LocalBatchJob:
        with self._lock:
            return self._runs[job_id]

    def children(self, parent_id: str) -> list[LocalBatchJob]:
        prefix = f"{parent_id}:"
        return [r for r in self.jobs if r.job_id.startswith(prefix)]

    def wait(self, job_id: str, timeout: float) -> str:
        """Wait until the job (every child of an array job) is done; its status."""
        runs = self.children(job_id) or [self.job(job_id)]
        deadline = time.monotonic() + timeout
        for run in runs:
            if not run.done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"batch job {run.job_id} still {run.status} after {timeout} s")
        return _aggregate([r.status for r in runs])

    def inject_failure(
        self,
        *,
        array_index: int | None = None,
        attempts: Iterable[int] = (1,),
        status_reason: str = HOST_TERMINATED,
        exit_code: int | None = None,
        job_name: str | None = None,
    ) -> Fault:
        """Make the matching attempts fail before their container runs (an infrastructure
        failure by default: no exit code, statusReason "Host EC2 (...) terminated.")."""
        fault = Fault(array_index, tuple(attempts), status_reason, exit_code, job_name)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # --- lifecycle ------------------------------------------------------------------------------
    def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        try:
            self._stopping.set()
            for run in self.jobs:
                if not run.done.is_set():
                    run.terminated = run.terminated or "emulator stopped"
                    self._signal(run, signal.SIGTERM)
            for _ in self._workers:
                self._queue.put((-(10**9), next(self._sequence), None))
            deadline = time.monotonic() + grace
            for worker in self._workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            self._kill_all()
        finally:
            self.uninstall()

    # --- SubmitJob ------------------------------------------------------------------------------
    def _submit_job(  # noqa: PLR0917 - moto's BatchBackend.submit_job signature
        self,
        job_name: str,
        job_def_id: str,
        job_queue: str,
        array_properties: dict[str, int],
        depends_on: list[dict[str, str]] | None = None,
        container_overrides: dict[str, Any] | None = None,
        eks_properties_override: dict[str, Any] | None = None,
        timeout: dict[str, int] | None = None,
        parameters: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[str, str, str]:
        from moto.batch.exceptions import ClientException
        from moto.batch.models import JOB_NAME_REGEX

        backend = self._backend
        if JOB_NAME_REGEX.match(job_name) is None:
            raise ClientException("Job name should match valid pattern")
        job_def = backend.get_job_definition(job_def_id)
        if job_def is None:
            raise ClientException(f"Job definition {job_def_id} does not exist")
        job_queue_model = backend.get_job_queue(job_queue)
        if job_queue_model is None:
            raise ClientException(f"Job queue {job_queue} does not exist")
        size = int((array_properties or {}).get("size") or 0)
        if array_properties and "size" in array_properties and not 2 <= size <= 10000:
            raise ClientException("Array job size must be between 2 and 10,000")
        job_class = _local_job_class()
        retry_override = getattr(_request, "retry_strategy", None)

        def make(index: int | None, provided: str | None) -> Any:
            job = job_class(
                job_name,
                job_def,
                job_queue_model,
                backend,
                log_backend=backend.logs_backend,
                container_overrides=dict(container_overrides or {}),
                eks_properties_override=eks_properties_override,
                depends_on=depends_on,
                all_jobs=backend._jobs,
                timeout=timeout,
                array_properties=(
                    {"index": index} if index is not None else dict(array_properties or {})
                ),
                parameters=parameters,
                provided_job_id=provided,
                tags=tags if index is None else None,
            )
            job._transitions = []  # see _LocalJob: only LocalBatch moves the status
            job.status = "SUBMITTED"
            job.mlserve_env = {}
            job.mlserve_reason = None
            return job

        parent = make(None, None)
        backend._jobs[parent.job_id] = parent
        with self._lock:
            self.submit_job_calls += 1
        if size:
            parent._child_jobs = []
            for index in range(size):
                child = make(index, f"{parent.job_id}:{index}")
                backend._jobs[child.job_id] = child
                parent._child_jobs.append(child)
            parent.status = "PENDING"
            parent.mlserve_env = {}
            for child in parent._child_jobs:
                self._enqueue(self._adopt(child, job_def, job_queue_model, timeout, retry_override))
        else:
            self._enqueue(self._adopt(parent, job_def, job_queue_model, timeout, retry_override))
        logger.info(
            "SubmitJob %s (%s): %s", job_name, parent.job_id, f"array of {size}" if size else "1"
        )
        return job_name, parent.job_id, parent.arn

    def _adopt(
        self, model: Any, job_def: Any, job_queue: Any, timeout: Any, retry: Any = None
    ) -> LocalBatchJob:
        props = dict(job_def.container_properties or {})
        log_options = (props.get("logConfiguration") or {}).get("options") or {}
        overrides = model.container_overrides or {}
        environment = _pairs(props.get("environment"))
        environment.update(_pairs(overrides.get("environment")))
        command = list(overrides.get("command") or props.get("command") or [])
        command = model._add_parameters_to_command(command)
        index = model.array_properties.get("index")
        retry = retry or job_def.retry_strategy or {}
        duration = (timeout or job_def.timeout or {}).get("attemptDurationSeconds")
        run = LocalBatchJob(
            job_id=model.job_id,
            job_name=model.job_name,
            queue_name=job_queue.name,
            priority=int(job_queue.priority),
            array_index=None if index is None else int(index),
            command=[str(c) for c in command],
            environment=environment,
            image=str(props.get("image")),
            max_attempts=max(1, min(10, int(retry.get("attempts") or 1))),
            evaluate_on_exit=list(retry.get("evaluateOnExit") or []),
            attempt_timeout=float(duration) if duration else None,
            log_stream_prefix=f"{log_options.get('awslogs-stream-prefix') or job_def.name}/default",
            log_group=str(log_options.get("awslogs-group") or DEFAULT_LOG_GROUP),
            model=model,
        )
        model.mlserve_env = dict(environment)
        model.status = "RUNNABLE" if index is None else "PENDING"
        with self._lock:
            self._runs[run.job_id] = run
        return run

    def _enqueue(self, run: LocalBatchJob) -> None:
        if run.array_index is not None:
            run.model.status = "RUNNABLE"
        self._queue.put((-run.priority, next(self._sequence), run.job_id))

    # --- the scheduler --------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            _, _, job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            run = self._runs.get(job_id)
            if run is None or run.done.is_set():
                continue
            try:
                again = self._attempt(run)
            except Exception as exc:  # a bug here must not leave the job RUNNING for ever
                logger.exception("batch job %s: local runner failed", run.job_id)
                self._finish(run, "FAILED", f"mlserve local runner failed: {exc}")
                continue
            if again:
                self._enqueue(run)

    def _attempt(self, run: LocalBatchJob) -> bool:
        """Run one attempt; True when the job is to be retried."""
        model = run.model
        if run.terminated is not None:
            self._finish(run, "FAILED", run.terminated)
            return False
        run.attempt += 1
        attempt = run.attempt
        with self._lock:
            model.status = "STARTING"
            fault = next((f for f in self._faults if f.matches(run, attempt)), None)
            if fault is not None:
                fault.hits += 1
        if self.start_delay:
            time.sleep(self.start_delay)
        started = _millis()
        task_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{run.job_id}/{attempt}").hex
        stream = f"{run.log_stream_prefix}/{task_id}"
        log_path = self.log_dir / f"{stream}.log"
        run.log_paths.append(log_path)
        exit_code: int | None
        if fault is not None:
            exit_code, status_reason = fault.exit_code, fault.status_reason
            reason = None if exit_code is not None else status_reason
            logger.info("batch job %s attempt %d: injected %s", run.job_id, attempt, status_reason)
        elif run.image not in self.images:
            exit_code = None
            status_reason = reason = (
                f"CannotPullContainerError: failed to resolve ref {run.image}: not found"
            )
        else:
            exit_code, status_reason, reason = self._run_container(run, attempt, log_path)
        stopped = _millis()
        self._ship_logs(run.log_group, stream, log_path)
        run.exit_codes.append(exit_code)
        container: dict[str, Any] = {
            "logStreamName": stream,
            "taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/AWSBatch-local/{task_id}",
            "networkInterfaces": [],
        }
        if exit_code is not None:
            container["exitCode"] = exit_code
        if reason is not None:
            container["reason"] = reason
        with self._lock:
            model.attempts.append(
                {
                    "container": container,
                    "startedAt": started,
                    "stoppedAt": stopped,
                    "statusReason": status_reason,
                }
            )
            model.exit_code = exit_code
            model.mlserve_reason = reason
            model.log_stream_name = stream
        if run.terminated is not None:  # TerminateJob: FAILED, never retried
            self._finish(run, "FAILED", run.terminated)
            return False
        if exit_code == 0:
            self._finish(run, "SUCCEEDED", ESSENTIAL_EXITED)
            return False
        action = evaluate_on_exit(
            run.evaluate_on_exit, status_reason=status_reason, reason=reason, exit_code=exit_code
        )
        if action != "EXIT" and attempt < run.max_attempts and not self._stopping.is_set():
            logger.info(
                "batch job %s attempt %d failed (%s): retrying", run.job_id, attempt, status_reason
            )
            return True
        self._finish(run, "FAILED", status_reason)
        return False

    def _run_container(
        self, run: LocalBatchJob, attempt: int, log_path: Path
    ) -> tuple[int | None, str, str | None]:
        model = run.model
        workdir = self.work_dir / "jobs" / run.job_id.replace(":", "-") / str(attempt)
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = recorder.command(self.images[run.image], "batch-job", run.command)
        with self._lock:
            if run.terminated is not None:
                return None, run.terminated, None
            with log_path.open("ab") as log:
                try:
                    run.process = subprocess.Popen(
                        argv,
                        cwd=REPO_ROOT,
                        env=self._process_environment(run, attempt, workdir),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as exc:
                    reason = f"CannotStartContainerError: {exc}"
                    return None, reason, reason
            model.job_started_at = datetime.now()
            model.status = "RUNNING"
            self._running += 1
            self.running_peak = max(self.running_peak, self._running)
        process = run.process
        timed_out = False
        try:
            status = process.wait(timeout=run.attempt_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._signal(run, signal.SIGTERM)
            try:
                status = process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(run, signal.SIGKILL)
                status = process.wait()
        with self._lock:
            self._running -= 1
        exit_code = status if status >= 0 else 128 - status  # signal N -> 128+N, as Docker
        if timed_out:
            return exit_code, TIMEOUT_REASON, None
        if run.terminated is not None:
            return exit_code, run.terminated, None
        return exit_code, ESSENTIAL_EXITED, None

    def _ship_logs(self, group: str, stream: str, log_path: Path) -> None:
        """What the awslogs driver does: the container's output into its CloudWatch stream."""
        try:
            lines = log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return
        if not lines:
            return
        try:
            import boto3

            logs = boto3.client(
                "logs",
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            )
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
            now = _millis()
            for start in range(0, len(lines), 1000):
                logs.put_log_events(
                    logGroupName=group,
                    logStreamName=stream,
                    logEvents=[
                        {"timestamp": now, "message": line[:65536] or " "}
                        for line in lines[start : start + 1000]
                    ],
                )
        except Exception as exc:  # the log file is still there
            logger.warning("batch logs not sent to CloudWatch Logs (%s): %s", stream, exc)

    def _process_environment(
        self, run: LocalBatchJob, attempt: int, workdir: Path
    ) -> dict[str, str]:
        env = {name: os.environ[name] for name in _HOST_PASSTHROUGH if name in os.environ}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "HOME": str(workdir),
                "TMPDIR": str(workdir / "tmp"),
                "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        env.update(run.environment)
        env.update(
            {
                "AWS_BATCH_JOB_ID": run.job_id,
                "AWS_BATCH_JOB_ATTEMPT": str(attempt),
                "AWS_BATCH_JQ_NAME": run.queue_name,
                "AWS_BATCH_CE_NAME": "local",
            }
        )
        if run.array_index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(run.array_index)
        env.update(FAKE_CREDENTIALS)
        env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env

    def _finish(self, run: LocalBatchJob, status: str, reason: str | None) -> None:
        model = run.model
        with self._lock:
            model.job_stopped_reason = reason
            model.job_stopped = True
            model.job_stopped_at = datetime.now()
            model.status = status
        run.done.set()
        logger.info("batch job %s %s (%s)", run.job_id, status, reason)

    # --- TerminateJob / CancelJob ---------------------------------------------------------------
    def _terminate_job(self, job_id: str, reason: str, *, cancel: bool = False) -> None:
        from moto.batch.exceptions import ClientException

        if not job_id:
            raise ClientException("'jobId' is a required field (cannot be a empty string)")
        if not reason:
            raise ClientException("'reason' is a required field (cannot be a empty string)")
        runs = self.children(job_id)
        with self._lock:
            if not runs and job_id in self._runs:
                runs = [self._runs[job_id]]
        for run in runs:
            if run.done.is_set():
                continue
            if cancel and run.status in ("STARTING", "RUNNING"):
                continue  # CancelJob does not stop a started job
            run.terminated = reason
            with self._lock:
                process = run.process
                before_start = process is None or run.status != "RUNNING"
            if before_start and run.status != "STARTING":
                self._finish(run, "FAILED", reason)
                continue
            self._signal(run, signal.SIGTERM)
            timer = threading.Timer(STOP_TIMEOUT, self._signal, args=(run, signal.SIGKILL))
            timer.daemon = True
            timer.start()

    def _cancel_job(self, job_id: str, reason: str) -> None:
        self._terminate_job(job_id, reason, cancel=True)

    @staticmethod
    def _signal(run: LocalBatchJob, signum: int) -> None:
        process = run.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
            if signum == signal.SIGTERM:
                os.killpg(process.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def _kill_all(self) -> None:
        for run in self.jobs:
            process = run.process
            if process is not None and process.poll() is None:
                self._signal(run, signal.SIGKILL)
                try:
                    process.wait(timeout=SHUTDOWN_GRACE)
                except subprocess.TimeoutExpired:
                    logger.error("batch job %s: process %d did not die", run.job_id, process.pid)


# --- what components/batch.py creates, provisioned in the embedded AWS ------------------------

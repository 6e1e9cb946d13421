"""ECS on Fargate, locally: ``RunTask`` runs the task's essential container as a local process.

The embedded moto server (mlserve.local.aws) runs in this process, so its ECS backend is hooked
in-process, per backend instance, while the emulator runs:

- ``RunTask`` creates the task in moto as usual (same validation, same ARNs) and starts a
  supervisor thread. After ``task_start_delay`` seconds (Fargate's PROVISIONING, then PENDING
  while the image is pulled) the container's process starts: ``python -m runtime.scoring`` (the
  scoring image's ENTRYPOINT, run from this working tree) with the task definition's container
  environment, the RunTask container overrides and the embedded AWS endpoint, credentials and
  region; its output goes to a per-task log file (what the awslogs driver sends to CloudWatch).
- ``DescribeTasks`` reports PROVISIONING / PENDING / RUNNING while that happens and STOPPED once
  the process exited: the essential container's ``exitCode`` is the process's exit status (a
  signal N is 128+N, as Docker reports it), ``stopCode`` EssentialContainerExited and
  ``stoppedReason`` "Essential container in task exited".
- ``StopTask`` sends SIGTERM, then SIGKILL after the stop timeout (ECS's ``stopTimeout``, 30 s by
  default), and the task stops with ``stopCode`` UserInitiated and the reason given.
- A task whose image the local "registry" does not have never starts: it stops with no exit code,
  ``stopCode`` TaskFailedToStart and ``stoppedReason`` "CannotPullContainerError: ...", as on ECS.
  The only image available locally is :data:`LOCAL_SCORING_IMAGE` (images/scoring, as this
  working tree would build it).

Each work-around for a moto 5.2 defect is marked ``moto defect:``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlserve.local import recorder
from mlserve.local.aws import ACCOUNT_ID, FAKE_CREDENTIALS, REGION
from runtime import contract

# Not under "mlserve.": Powertools' Logger(service="mlserve") owns that logger.
logger = logging.getLogger("mlserve-local.ecs")

# The image the emulator's task definition names: the scoring image of images/scoring, which
# locally is this working tree's runtime run by this interpreter. No other image can be "pulled".
LOCAL_SCORING_IMAGE = "mlserve/scoring:local"
REPO_ROOT = Path(contract.__file__).resolve().parent.parent
DEFAULT_STOP_TIMEOUT = 30.0  # ECS: seconds between SIGTERM and SIGKILL unless stopTimeout is set
SHUTDOWN_GRACE = 5.0  # emulator stop: SIGTERM, then SIGKILL after this long
# At most this many task processes run at once; later tasks wait PENDING for a free slot (a
# machine cannot run hundreds of Python processes the way Fargate runs hundreds of tasks).
DEFAULT_MAX_RUNNING = max(4, 4 * (os.cpu_count() or 1))
ESSENTIAL_EXITED = "Essential container in task exited"
USER_STOPPED = "Task stopped by user"
# What a container may inherit from the host; everything else comes from the task.
_HOST_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")

# PutLogEvents: at most 10,000 events and 1 MB (message bytes + 26 each) per call, an event at
# most 256 KB
_EVENTS_PER_BATCH = 1000
_MAX_BATCH_BYTES = 1_000_000
_MAX_EVENT_CHARS = 64 * 1024

_hook_lock = threading.Lock()
_MARKER = "_mlserve_local_fargate"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LocalTask:
    """One task started through RunTask and the local process behind its essential container."""

    arn: str
    task_id: str
    cluster: str
    container_name: str
    image: str
    command: list[str]
    environment: dict[str, str]
    log_path: Path
    log_group: str | None  # the awslogs group of the container (None: no awslogs driver)
    log_stream: str
    workdir: Path
    stop_timeout: float
    model: Any = field(repr=False)  # moto's Task: what DescribeTasks serialises
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    _kill_timer: threading.Timer | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        """lastStatus: PROVISIONING, PENDING, RUNNING or STOPPED."""
        return str(self.model.last_status)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def job_id(self) -> str | None:
        return self.environment.get(contract.ENV_JOB_ID)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class LocalFargate:
    """Runs the tasks of the embedded moto's ECS as local processes (see the module docstring)."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        work_dir: Path,
        task_start_delay: float = 0.0,
        images: Iterable[str] = (LOCAL_SCORING_IMAGE,),
        module: str = contract.SCORING_MODULE,
        log_dir: Path | None = None,
        max_running: int = DEFAULT_MAX_RUNNING,
    ) -> None:
        if task_start_delay < 0:
            raise ValueError(f"task_start_delay must be >= 0, got {task_start_delay}")
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self.max_running = max_running  # may be changed while running
        self._slots = threading.Condition()
        self._running = 0
        self.endpoint_url = endpoint_url
        self.work_dir = work_dir
        self.log_dir = log_dir or work_dir / "logs"
        self.task_start_delay = task_start_delay
        self.images = frozenset(images)
        self.module = module
        self._lock = threading.Lock()
        self._tasks: dict[str, LocalTask] = {}
        self._threads: list[threading.Thread] = []
        self._backend: Any = None
        self._original_describe: Any = None
        self._original_run_task: Any = None
        self._client_tokens: dict[str, list[Any]] = {}  # RunTask clientToken -> its tasks
        self._token_lock = threading.Lock()
        self._logs_client: Any = None
        self.run_task_calls = 0  # RunTask requests that created tasks

    # --- the hooks ----------------------------------------------------------------------------
    def install(self) -> None:
        """Hook moto's ECS backend of the emulator's account and region."""
        from moto.ecs.models import ecs_backends
        from moto.ecs.responses import EC2ContainerServiceResponse

        with _hook_lock:
            backend: Any = ecs_backends[ACCOUNT_ID][REGION]
            if getattr(backend, _MARKER, None) is not None:
                raise RuntimeError("moto's ECS backend is already run by another LocalFargate")
            # Instance attributes shadow the backend class's methods for this backend only;
            # uninstall() deletes them again.
            backend.run_task = self._run_task
            backend.stop_task = self._stop_task
            setattr(backend, _MARKER, self)
            self._backend = backend
            # moto defect: DescribeTasks leaves tasks it does not know out of the answer instead
            # of listing them under failures with reason MISSING (as ECS does for unknown or
            # long-stopped tasks). The response class builds "failures": [] itself, so this one
            # hook is on the class; it only acts for a backend this runner owns.
            if self._original_describe is None:
                original = EC2ContainerServiceResponse.describe_tasks
                self._original_describe = original
                setattr(  # noqa: B010 - a method, patched on the class
                    EC2ContainerServiceResponse,
                    "describe_tasks",
                    _describe_tasks_reporting_missing(original),
                )
            # moto defect: RunTask ignores clientToken, so a retried request (a Lambda retry
            # of RunECS, which passes clientToken=job_id) starts a second task; ECS answers
            # with the tasks the first request started.
            if self._original_run_task is None:
                original_run = EC2ContainerServiceResponse.run_task
                self._original_run_task = original_run
                setattr(  # noqa: B010 - a method, patched on the class
                    EC2ContainerServiceResponse,
                    "run_task",
                    _run_task_honouring_client_token(original_run),
                )
        atexit.register(self._kill_all)

    def uninstall(self) -> None:
        from moto.ecs.responses import EC2ContainerServiceResponse

        with _hook_lock:
            backend, self._backend = self._backend, None
            if backend is not None:
                for name in ("run_task", "stop_task", _MARKER):
                    vars(backend).pop(name, None)
            original, self._original_describe = self._original_describe, None
            if original is not None:
                setattr(EC2ContainerServiceResponse, "describe_tasks", original)  # noqa: B010
            original_run, self._original_run_task = self._original_run_task, None
            if original_run is not None:
                setattr(EC2ContainerServiceResponse, "run_task", original_run)  # noqa: B010
        atexit.unregister(self._kill_all)

    # --- what tests and the CLI look at ---------------------------------------------------------
    @property
    def tasks(self) -> list[LocalTask]:
        with self._lock:
            return list(self._tasks.values())

    def task(self, arn_or_id: str) -> LocalTask:
        task_id = arn_or_id.rsplit("/", 1)[-1]
        with self._lock:
            for task in self._tasks.values():
                if task.task_id == task_id:
                    return task
        raise KeyError(f"no task {arn_or_id}")

    def wait(self, arn_or_id: str, timeout: float) -> LocalTask:
        """Wait until the task is STOPPED (its process reaped); TimeoutError after ``timeout``."""
        task = self.task(arn_or_id)
        if not task.done.wait(timeout):
            raise TimeoutError(f"task {task.task_id} still {task.status} after {timeout} s")
        return task

    # --- lifecycle ------------------------------------------------------------------------------
    def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop every task (SIGTERM, SIGKILL after ``grace``), reap them, remove the hooks."""
        try:
            tasks = self.tasks
            for task in tasks:
                task.stop_requested.set()
                self._signal(task, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for task in tasks:
                if not task.done.wait(max(0.0, deadline - time.monotonic())):
                    self._signal(task, signal.SIGKILL)
            for thread in list(self._threads):
                thread.join(timeout=grace)
            self._kill_all()  # anything a stuck supervisor did not reap
        finally:
            self.uninstall()

    # --- RunTask --------------------------------------------------------------------------------
    def _run_task(self, *args: Any, **kwargs: Any) -> list[Any]:
        backend = self._backend
        network = kwargs.get("networking_configuration", args[7] if len(args) > 7 else None)
        _default_security_group(network)
        tasks: list[Any] = type(backend).run_task(backend, *args, **kwargs)
        with self._lock:
            self.run_task_calls += 1
        for model in tasks:
            self._adopt(backend, model)
        return tasks

    def _adopt(self, backend: Any, model: Any) -> None:
        definition = backend.describe_task_definition(model.task_definition_arn)
        container = dict(definition.container_definitions[0])
        environment = _pairs(container.get("environment"))
        command = list(container.get("command") or [])
        for override in (model.overrides or {}).get("containerOverrides") or []:
            if override.get("name") == container.get("name"):
                environment.update(_pairs(override.get("environment")))
                command = list(override.get("command") or command)
        task_id = model.task_arn.rsplit("/", 1)[-1]
        now = _now()
        # moto defect: a Task is a ManagedState whose default transition (manual, times=1) steps
        # RUNNING -> DEACTIVATING -> STOPPING -> DEPROVISIONING -> STOPPED, one step per
        # DescribeTasks, with nothing running. An empty transition table freezes that state
        # machine under every progression setting; only this runner moves lastStatus.
        model._transitions = []
        model.last_status = "PROVISIONING"
        model.created_at = now
        model.cpu = definition.cpu
        model.memory = definition.memory
        model.platform_version = model.platform_version or "1.4.0"
        model.connectivity = "CONNECTED"
        model.connectivity_at = now
        essential = model.containers[0]
        # moto defect: the container's taskArn is the task definition's ARN, its containerArn
        # is built from that too, and its exitCode is 0 from the start (a running container has
        # none yet); the task's stoppedReason is "" (ECS leaves it out until the task stops).
        essential.task_arn = model.task_arn
        essential.container_arn = (
            f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:container/{model.cluster_name}/{task_id}/"
            f"{essential.container_arn.rsplit('/', 1)[-1]}"
        )
        model.stopped_reason = None
        essential.exitCode = None
        essential.last_status = "PENDING"
        stop_timeout = float(container.get("stopTimeout") or DEFAULT_STOP_TIMEOUT)
        workdir = self.work_dir / "tasks" / task_id
        task = LocalTask(
            arn=model.task_arn,
            task_id=task_id,
            cluster=model.cluster_name,
            container_name=str(container.get("name")),
            image=str(container.get("image")),
            command=command,
            environment=environment,
            log_path=self.log_dir / f"{_log_stream(container, task_id)}.log",
            log_group=_log_group(container),
            log_stream=_log_stream(container, task_id),
            workdir=workdir,
            stop_timeout=stop_timeout,
            model=model,
        )
        thread = threading.Thread(
            target=self._supervise, args=(task,), name=f"ecs-task-{task_id[:8]}", daemon=True
        )
        with self._lock:
            self._tasks[task.arn] = task
            self._threads.append(thread)
        logger.info(
            "task %s PROVISIONING (%s%s)",
            task_id,
            f"{contract.ENV_JOB_ID}={task.job_id}" if task.job_id else "no JOB_ID",
            f", starts in {self.task_start_delay:g} s" if self.task_start_delay else "",
        )
        thread.start()

    def _supervise(self, task: LocalTask) -> None:
        try:
            self._run(task)
        except Exception as exc:  # a defect here must still leave the task STOPPED
            logger.exception("task %s: the local runner failed", task.task_id)
            self._stopped(
                task,
                exit_code=None,
                stop_code="TaskFailedToStart",
                reason=f"mlserve local runner failed: {type(exc).__name__}: {exc}",
            )

    def _run(self, task: LocalTask) -> None:
        model = task.model
        delay = self.task_start_delay
        # PROVISIONING (network interface), then PENDING (image pull), half the delay each.
        if task.stop_requested.wait(delay / 2):
            self._stopped(task, exit_code=None)
            return
        with self._lock:
            model.pull_started_at = _now()
            model.last_status = "PENDING"
        if task.stop_requested.wait(delay / 2):
            self._stopped(task, exit_code=None)
            return
        if task.image not in self.images:
            reason = (
                "CannotPullContainerError: pull image manifest has been retried 7 time(s): "
                f"failed to resolve ref {task.image}: not found"
            )
            self._stopped(task, exit_code=None, stop_code="TaskFailedToStart", reason=reason)
            return

        if not self._acquire_slot(task):  # stopped while waiting for a free slot
            self._stopped(task, exit_code=None)
            return
        try:
            self._run_container(task)
        finally:
            self._release_slot()

    def _acquire_slot(self, task: LocalTask) -> bool:
        """Wait (PENDING) until fewer than ``max_running`` processes run; False if stopped."""
        with self._slots:
            while self._running >= self.max_running and not task.stop_requested.is_set():
                self._slots.wait(0.2)
            if task.stop_requested.is_set():
                return False
            self._running += 1
            return True

    def _release_slot(self) -> None:
        with self._slots:
            self._running -= 1
            self._slots.notify()

    def _run_container(self, task: LocalTask) -> None:
        with self._lock:
            stop_now = task.stop_requested.is_set()
            error = None if stop_now else self._spawn(task)
        if stop_now:
            self._stopped(task, exit_code=None)
            return
        process = task.process
        if error is not None or process is None:
            self._stopped(task, exit_code=None, stop_code="TaskFailedToStart", reason=error)
            return
        logger.info(
            "task %s RUNNING: python -m %s (pid %d), log %s",
            task.task_id,
            self.module,
            process.pid,
            task.log_path,
        )
        status = process.wait()
        timer = task._kill_timer
        if timer is not None:
            timer.cancel()
        self._ship_logs(task)
        # Docker reports a container killed by signal N as exit code 128+N.
        self._stopped(task, exit_code=status if status >= 0 else 128 - status)

    def _spawn(self, task: LocalTask) -> str | None:
        """Start the container's process (under the lock); the reason when it cannot start."""
        task.workdir.mkdir(parents=True, exist_ok=True)
        (task.workdir / "tmp").mkdir(exist_ok=True)
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = recorder.command(self.module, "ecs-task", task.command)
        with task.log_path.open("ab") as log:
            try:
                task.process = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=self._process_environment(task),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # its own process group: a Ctrl-C in the terminal is the emulator's to
                    # handle (it stops the tasks), and a stop signal reaches every process.
                    start_new_session=True,
                )
            except OSError as exc:
                return f"CannotStartContainerError: {exc}"
        model = task.model
        now = _now()
        model.pull_stopped_at = now
        model.started_at = now
        essential = model.containers[0]
        essential.runtime_id = f"{task.task_id}-{task.process.pid}"
        essential.last_status = "RUNNING"
        model.last_status = "RUNNING"
        return None

    def _ship_logs(self, task: LocalTask) -> None:
        """What the awslogs driver does: the container's output into its CloudWatch log stream
        (here when the container exited), so `aws logs` finds it in the embedded AWS too."""
        lines = task.log_text().splitlines()
        if task.log_group is None or not lines:
            return
        try:
            if self._logs_client is None:
                import boto3

                self._logs_client = boto3.client(
                    "logs",
                    endpoint_url=self.endpoint_url,
                    region_name=REGION,
                    aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
                )
            logs = self._logs_client
            logs.create_log_stream(logGroupName=task.log_group, logStreamName=task.log_stream)
            now = int(time.time() * 1000)
            batch: list[dict[str, Any]] = []
            size = 0
            for line in [*lines, None]:  # None: send what is left
                message = None if line is None else line[:_MAX_EVENT_CHARS] or " "
                cost = 0 if message is None else len(message.encode()) + 26
                if batch and (
                    message is None
                    or len(batch) >= _EVENTS_PER_BATCH
                    or size + cost > _MAX_BATCH_BYTES
                ):
                    logs.put_log_events(
                        logGroupName=task.log_group, logStreamName=task.log_stream, logEvents=batch
                    )
                    batch, size = [], 0
                if message is not None:
                    batch.append({"timestamp": now, "message": message})
                    size += cost
        except Exception as exc:  # the log file is still there
            logger.warning("task %s: logs not sent to CloudWatch Logs: %s", task.task_id, exc)

    def _process_environment(self, task: LocalTask) -> dict[str, str]:
        env = {name: os.environ[name] for name in _HOST_PASSTHROUGH if name in os.environ}
        env.update(
            {
                # what the image sets (images/scoring/Dockerfile)
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                # a fresh container filesystem: /tmp (and the model cache in it) and $HOME
                "HOME": str(task.workdir),
                "TMPDIR": str(task.workdir / "tmp"),
                # what Fargate sets
                "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        env.update(task.environment)
        # the task role's credentials, and the embedded AWS instead of the real endpoints
        env.update(FAKE_CREDENTIALS)
        env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env

    # --- StopTask -------------------------------------------------------------------------------
    def _stop_task(self, cluster_str: str, task_str: str, reason: str | None) -> Any:
        from moto.ecs.exceptions import InvalidParameterException

        backend = self._backend
        cluster = backend._get_cluster(cluster_str)  # ClusterNotFoundException, as ECS
        task_id = (task_str or "").rsplit("/", 1)[-1]
        with self._lock:
            task = next(
                (
                    t
                    for t in self._tasks.values()
                    if t.task_id == task_id and t.cluster == cluster.name
                ),
                None,
            )
        if task is None:
            # moto defect: StopTask of an unknown task raises a bare Exception (HTTP 500).
            if not any(arn.endswith(task_id) for arn in (backend.tasks.get(cluster.name) or {})):
                raise InvalidParameterException("The referenced task was not found.")
            return type(backend).stop_task(backend, cluster_str, task_str, reason)
        model = task.model
        with self._lock:
            # moto defect: StopTask marks the task STOPPED at once, with nothing stopped. ECS
            # answers with desiredStatus STOPPED; lastStatus follows once the container exits.
            if not task.stop_requested.is_set() and not task.done.is_set():
                task.stop_code = "UserInitiated"
                task.stopped_reason = reason or USER_STOPPED
                model.desired_status = "STOPPED"
                model.stopping_at = _now()
                model.stop_code = task.stop_code
                model.stopped_reason = task.stopped_reason
                task.stop_requested.set()
                if task.process is not None:
                    logger.info("task %s: StopTask (%s): SIGTERM", task_id, task.stopped_reason)
                    self._signal(task, signal.SIGTERM)
                    timer = threading.Timer(
                        task.stop_timeout, self._signal, args=(task, signal.SIGKILL)
                    )
                    timer.daemon = True
                    task._kill_timer = timer
                    timer.start()
        return model

    # --- helpers --------------------------------------------------------------------------------
    def _stopped(
        self,
        task: LocalTask,
        *,
        exit_code: int | None,
        stop_code: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Record the stop in moto's task; lastStatus last, so no reader sees half of it."""
        model = task.model
        essential = model.containers[0]
        with self._lock:
            if task.stop_code is not None and stop_code is None:
                stop_code, reason = task.stop_code, task.stopped_reason  # StopTask's
            elif stop_code is None:
                stop_code, reason = "EssentialContainerExited", ESSENTIAL_EXITED
            task.exit_code = exit_code
            task.stop_code = stop_code
            task.stopped_reason = reason
            now = _now()
            essential.exitCode = exit_code
            if exit_code is None and stop_code == "TaskFailedToStart":
                essential.reason = reason
            essential.last_status = "STOPPED"
            model.stop_code = stop_code
            model.stopped_reason = reason
            model.stopping_at = getattr(model, "stopping_at", None) or now
            model.execution_stopped_at = now
            model.stopped_at = now
            model.desired_status = "STOPPED"
            model.last_status = "STOPPED"
        task.done.set()
        logger.info(
            "task %s STOPPED: %s%s (%s)",
            task.task_id,
            stop_code,
            "" if exit_code is None else f", exit code {exit_code}",
            reason,
        )

    @staticmethod
    def _signal(task: LocalTask, signum: int) -> None:
        process = task.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)  # the container's whole process group
            if signum == signal.SIGTERM:
                # like `docker stop` of a paused container: let it handle the signal
                os.killpg(process.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def _kill_all(self) -> None:
        """SIGKILL every task process still alive, and reap it (interpreter exit, shutdown)."""
        for task in self.tasks:
            process = task.process
            if process is not None and process.poll() is None:
                self._signal(task, signal.SIGKILL)
                try:
                    process.wait(timeout=SHUTDOWN_GRACE)
                except subprocess.TimeoutExpired:
                    logger.error("task %s: process %d did not die", task.task_id, process.pid)


def _default_security_group(network: Mapping[str, Any] | None) -> None:
    """moto defect: an awsvpcConfiguration without securityGroups makes RunTask fail with a
    KeyError (HTTP 500); ECS uses the VPC's default security group then. Fill that in."""
    config = (network or {}).get("awsvpcConfiguration")
    if not isinstance(config, dict) or "securityGroups" in config or not config.get("subnets"):
        return
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[ACCOUNT_ID][REGION]
    try:
        vpc_id = ec2.get_subnet(config["subnets"][0]).vpc_id
        group = ec2.get_security_group_from_name("default", vpc_id)
    except Exception:  # an unknown subnet: let moto answer as it does
        return
    config["securityGroups"] = [group.id] if group is not None else []


def _log_group(container: Mapping[str, Any]) -> str | None:
    config = container.get("logConfiguration") or {}
    if config.get("logDriver") != "awslogs":
        return None
    group = (config.get("options") or {}).get("awslogs-group")
    return str(group) if group else None


def _log_stream(container: Mapping[str, Any], task_id: str) -> str:
    """The awslogs stream of a task's container: ``prefix/container-name/task-id``."""
    options = (container.get("logConfiguration") or {}).get("options") or {}
    prefix = options.get("awslogs-stream-prefix")
    name = container.get("name") or "container"
    return f"{prefix}/{name}/{task_id}" if prefix else f"{name}/{task_id}"


def _pairs(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """ECS ``[{"name": ..., "value": ...}]`` -> a dict (later entries win, as in ECS)."""
    return {str(item["name"]): str(item.get("value", "")) for item in items or [] if "name" in item}


def _run_task_honouring_client_token(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run_task(response: Any) -> Any:
        runner: LocalFargate | None = getattr(response.ecs_backend, _MARKER, None)
        token = response._get_param("clientToken")
        if runner is None or not token:
            return original(response)
        from moto.core.responses import ActionResult

        with runner._token_lock:
            tasks = runner._client_tokens.get(str(token))
            if tasks is not None:
                logger.info("RunTask with a known clientToken: the same task(s), none started")
                return ActionResult({"tasks": tasks, "failures": []})
            result = original(response)
            runner._client_tokens[str(token)] = list(result.result["tasks"])
            return result

    return run_task


def _describe_tasks_reporting_missing(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def describe_tasks(response: Any) -> Any:
        result = original(response)
        if getattr(response.ecs_backend, _MARKER, None) is None:
            return result
        body = result.result
        found = {task.task_arn.rsplit("/", 1)[-1] for task in body["tasks"]}
        for requested in response._get_param("tasks", []) or []:
            if str(requested).rsplit("/", 1)[-1] not in found:
                body["failures"].append({"arn": requested, "reason": "MISSING"})
        return result

    return describe_tasks

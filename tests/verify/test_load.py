"""Load against the local emulator on loopback: bounded in count and time, counted exactly.

- ``lambda``: 8 concurrent clients x 2,000 POST /predict; every answer is a 200 with one
  prediction per row (a 429 from a gateway throttle would be counted apart as deliberate).
- each asynchronous architecture: 200 concurrent POST /jobs; every accepted job reaches a
  terminal state (SUCCEEDED: the inputs are valid) and the job table holds exactly one record
  per accepted request, no more, no fewer.

The ECS and Batch work of the jobs runs as real local processes of the scoring entrypoint; the
emulator queues them (mlserve.local.fargate runs at most ``max_running`` at once, the local Batch
``batch_max_parallel``), so all 200 jobs run, however few cores the machine has.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mlserve.local import Emulator
from mlserve.local.fargate import DEFAULT_MAX_RUNNING
from runtime import contract
from runtime.jobs import JobStore
from tests.e2e.conftest import Emulators
from tests.verify.report import record

PREDICT_CLIENTS = 8
PREDICT_REQUESTS_PER_CLIENT = 2_000
CONCURRENT_JOBS = 200
JOBS_TIMEOUT = 600.0  # seconds for all 200 jobs of one architecture to finish
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
THROTTLED = 429


def _session(emulator: Emulator) -> requests.Session:
    session = requests.Session()
    if emulator.api_key:
        session.headers["x-api-key"] = emulator.api_key
    return session


def _rows(emulator: Emulator, n: int) -> list[list[float]]:
    with _session(emulator) as session:
        features = session.get(emulator.url + "/health", timeout=60).json()["model"]
    return [[0.25 * (i + 1)] * int(features["num_features"]) for i in range(n)]


def _job_ids(emulator: Emulator) -> list[str]:
    """Every job id in the table (a list: a duplicate would show)."""
    ddb = emulator.client("dynamodb")
    ids: list[str] = []
    for page in ddb.get_paginator("scan").paginate(TableName=emulator.table, ConsistentRead=True):
        ids.extend(item[contract.JOB_TABLE_HASH_KEY]["S"] for item in page["Items"])
    return ids


def _statuses(emulator: Emulator) -> dict[str, str]:
    """job id -> status of every record (one Scan)."""
    ddb = emulator.client("dynamodb")
    found: dict[str, str] = {}
    for page in ddb.get_paginator("scan").paginate(
        TableName=emulator.table,
        ConsistentRead=True,
        ProjectionExpression="job_id, #s",
        ExpressionAttributeNames={"#s": "status"},
    ):
        for item in page["Items"]:
            found[item["job_id"]["S"]] = item["status"]["S"]
    return found


# --- lambda -------------------------------------------------------------------------------------


@pytest.mark.verify
def test_predict_under_8_concurrent_clients(emulators: Emulators) -> None:
    emulator = emulators.get(contract.ARCH_LAMBDA)
    rows = _rows(emulator, 3)
    statuses: Counter[int] = Counter()
    wrong: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(PREDICT_CLIENTS)

    def client() -> None:
        mine: Counter[int] = Counter()
        bad: list[str] = []
        with _session(emulator) as session:
            barrier.wait()
            for _ in range(PREDICT_REQUESTS_PER_CLIENT):
                response = session.post(
                    emulator.url + "/predict", json={"instances": rows}, timeout=60
                )
                mine[response.status_code] += 1
                if response.status_code == 200:
                    if len(response.json()["predictions"]) != len(rows):
                        bad.append(response.text[:200])
                elif response.status_code != THROTTLED:
                    bad.append(f"{response.status_code} {response.text[:200]}")
        with lock:
            statuses.update(mine)
            wrong.extend(bad)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(PREDICT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    total = PREDICT_CLIENTS * PREDICT_REQUESTS_PER_CLIENT
    assert sum(statuses.values()) == total, statuses
    assert wrong == [], wrong[:5]
    errors = total - statuses[200] - statuses[THROTTLED]
    assert errors == 0, statuses
    print(
        f"lambda: {total} POST /predict in {elapsed:.1f} s "
        f"({total / elapsed:.0f}/s), throttled {statuses[THROTTLED]}"
    )
    record("load", contract.ARCH_LAMBDA, load_requests=total, load_errors=0, lost_records=0)


# --- the asynchronous architectures -------------------------------------------------------------


@pytest.fixture(
    params=[
        contract.ARCH_LAMBDA_ECS,
        contract.ARCH_STEPFUNCTIONS_ECS,
        contract.ARCH_STEPFUNCTIONS_BATCH,
    ]
)
def async_emulator(request: pytest.FixtureRequest, emulators: Emulators) -> Iterator[Emulator]:
    architecture = str(request.param)
    if architecture == contract.ARCH_STEPFUNCTIONS_BATCH:
        # as many Batch jobs at once as Fargate tasks (the local default is the core count)
        yield emulators.get(architecture, batch_max_parallel=DEFAULT_MAX_RUNNING)
    else:
        yield emulators.get(architecture)


@pytest.mark.verify
def test_200_concurrent_jobs_each_finish_with_exactly_one_record(
    async_emulator: Emulator,
) -> None:
    emulator = async_emulator
    architecture = emulator.architectures[0]
    rows = _rows(emulator, 2)
    before = set(_job_ids(emulator))
    barrier = threading.Barrier(CONCURRENT_JOBS)

    def submit(_: int) -> requests.Response:
        with _session(emulator) as session:
            barrier.wait()
            # the emulator runs one invocation of a function at a time (one warm execution
            # environment), so the last of 200 waits for the 199 before it
            return session.post(emulator.url + "/jobs", json={"instances": rows}, timeout=900)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENT_JOBS) as pool:
        answers = list(pool.map(submit, range(CONCURRENT_JOBS)))
    submitted = time.perf_counter() - started

    statuses = Counter(r.status_code for r in answers)
    errors = [f"{r.status_code} {r.text[:200]}" for r in answers if r.status_code not in (202,)]
    throttled = statuses[THROTTLED]
    assert [e for e in errors if not e.startswith(str(THROTTLED))] == [], errors[:5]
    accepted = [r.json()["job_id"] for r in answers if r.status_code == 202]
    assert len(set(accepted)) == len(accepted), "two requests got the same job"

    store = JobStore(emulator.client("dynamodb"), emulator.table)
    deadline = time.monotonic() + JOBS_TIMEOUT
    pending = set(accepted)
    while pending:  # one Scan a round: the API's GETs would compete with the jobs themselves
        statuses_now = _statuses(emulator)
        pending = {job_id for job_id in pending if statuses_now.get(job_id) not in TERMINAL}
        if pending:
            assert time.monotonic() < deadline, (
                f"{architecture}: {len(pending)} jobs not terminal after {JOBS_TIMEOUT} s"
            )
            time.sleep(2.0)
    finished = time.perf_counter() - started
    outcomes: Counter[str] = Counter()
    with _session(emulator) as session:  # and the API says so too
        for job_id in accepted:
            response = session.get(f"{emulator.url}/jobs/{job_id}", timeout=60)
            assert response.status_code == 200, response.text
            outcomes[response.json()["status"]] += 1

    records = [store.require(job_id) for job_id in accepted]
    failed = [job for job in records if job.status != contract.STATUS_SUCCEEDED]
    assert failed == [], [(j.job_id, j.status, j.error) for j in failed[:5]]
    assert outcomes == {contract.STATUS_SUCCEEDED: len(accepted)}, outcomes
    new = [j for j in _job_ids(emulator) if j not in before]
    lost = len(set(accepted) - set(new))
    assert lost == 0
    assert sorted(new) == sorted(accepted), "the table holds records nobody asked for"
    print(
        f"{architecture}: {len(answers)} concurrent POST /jobs answered in {submitted:.1f} s, "
        f"all {len(accepted)} jobs terminal after {finished:.1f} s ({dict(outcomes)}), "
        f"throttled {throttled}"
    )
    record(
        "load",
        architecture,
        load_requests=len(answers),
        load_errors=0,
        lost_records=lost,
    )


def test_the_emulator_queues_task_processes_beyond_its_cap(emulators: Emulators) -> None:
    """What makes 200 concurrent jobs feasible on a small machine: tasks beyond the cap wait
    PENDING and all of them still run (no job is dropped)."""
    emulator = emulators.get(contract.ARCH_LAMBDA_ECS)
    fargate = emulator.fargate
    cap, fargate.max_running = fargate.max_running, 2
    rows = _rows(emulator, 1)
    most = 0
    try:
        with _session(emulator) as session:
            answers = [
                session.post(emulator.url + "/jobs", json={"instances": rows}, timeout=60)
                for _ in range(4)
            ]
            assert [r.status_code for r in answers] == [202] * 4, [r.text for r in answers]
            ids = {r.json()["job_id"] for r in answers}
            tasks = [t for t in emulator.tasks if t.job_id in ids]
            assert len(tasks) == 4
            deadline = time.monotonic() + 180
            while not all(t.done.is_set() for t in tasks):
                most = max(most, sum(t.status == "RUNNING" for t in tasks))
                assert time.monotonic() < deadline, [t.status for t in tasks]
                time.sleep(0.01)
    finally:
        fargate.max_running = cap
    assert 1 <= most <= 2
    assert [t.exit_code for t in tasks] == [0] * 4
    store = JobStore(emulator.client("dynamodb"), emulator.table)
    assert {store.require(job_id).status for job_id in ids} == {contract.STATUS_SUCCEEDED}

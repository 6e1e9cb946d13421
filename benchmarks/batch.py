"""Batch scoring: throughput, peak memory and scale-out of ``python -m runtime.scoring``.

Everything runs against an emulated S3/DynamoDB: a moto server on 127.0.0.1 in this process
(mlserve.local.aws.MotoServer). Per measurement the model and the input object are uploaded,
a job record is created the way the Step Functions workflow leaves it (RUNNING, format, shards,
output_uri), and the scoring entrypoint runs as child processes, as AWS Batch (and the local
emulator) runs it: ``AWS_BATCH_JOB_ARRAY_INDEX`` per shard, the endpoint and credentials in the
environment. A figure is the wall time from starting the processes until the last one exited
(Python start, model download, reading S3, scoring, writing and uploading the parts, the
manifest and the record), so it is end to end; peak RSS is the kernel's ``VmHWM`` of each
process, polled.

The reference is raw ``Booster.inplace_predict`` on the same matrix already in memory, in this
process, with the same thread count (``OMP_NUM_THREADS`` of the child = ``nthread`` of the raw
booster), measured between the runs so machine noise hits both alike.

Input files are generated once (deterministic rows, float32 rounded to 4 decimals so CSV stays
compact) and cached under .cache/bench-data.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console

from benchmarks.common import Row, check, median
from benchmarks.models import ROOT, BenchModel, example_model, synthetic_matrix, synthetic_model
from mlserve.local import container
from runtime import contract
from runtime.scoring import batch as scoring_batch

DATA = ROOT / ".cache" / "bench-data"
BUCKET = "mlserve-bench"
TABLE = "mlserve-bench-jobs"
CHUNK_ROWS = 500_000  # rows per generated chunk (and Parquet row group size 128k)
ROW_GROUP_ROWS = 131_072
THREADS = os.cpu_count() or 1

# targets (issue 6)
PARQUET_TARGET = 0.50
CSV_TARGET = 0.25
MEMORY_TARGET = 1.2
SCALE_OUT_TARGET = 1.7
SCALE_OUT_ROWS = 1_000_000  # per scale-out run (alternating pairs: 1 shard, then 2 shards)
CEILING_ROWS = 200_000  # per process, for the machine's own scale-out (~2 s of scoring)


# --- input files ----------------------------------------------------------------------------


def feature_names(model: BenchModel) -> list[str]:
    meta = json.loads((model.directory / contract.MODEL_METADATA_NAME).read_text())
    return [str(n) for n in meta["feature_names"]]


def _chunk(model: BenchModel, start: int, rows: int) -> np.ndarray:
    # Seeded per chunk: the same rows whatever the file length (a 2M file is a prefix of 8M).
    seed = 1000 + start // CHUNK_ROWS
    return np.round(synthetic_matrix(rows, model.num_features, seed), 4).astype(np.float32)


def input_file(model: BenchModel, rows: int, fmt: str) -> Path:
    """The cached input of ``rows`` rows for ``model`` (written chunk by chunk)."""
    name = model.directory.name
    path = DATA / f"{name}-{rows}.{fmt}"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    names = feature_names(model)
    tmp = path.with_suffix(path.suffix + ".tmp")
    schema = pa.schema([(n, pa.float32()) for n in names])
    writer: Any = (
        pq.ParquetWriter(str(tmp), schema)
        if fmt == "parquet"
        else pacsv.CSVWriter(str(tmp), schema)
    )
    with writer:
        for start in range(0, rows, CHUNK_ROWS):
            x = _chunk(model, start, min(CHUNK_ROWS, rows - start))
            table = pa.Table.from_arrays(
                [pa.array(x[:, i]) for i in range(x.shape[1])], schema=schema
            )
            if fmt == "parquet":
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            else:
                writer.write_table(table)
    tmp.rename(path)
    return path


def input_matrix(model: BenchModel, rows: int) -> np.ndarray:
    """The rows of :func:`input_file` as the float32 matrix the raw booster scores."""
    return np.concatenate(
        [
            _chunk(model, start, min(CHUNK_ROWS, rows - start))
            for start in range(0, rows, CHUNK_ROWS)
        ]
    )


# --- the emulated account -------------------------------------------------------------------


@dataclass
class Account:
    endpoint: str
    env: dict[str, str]  # what every child process gets
    s3: Any
    store: Any
    workdir: Path
    inputs: dict[str, tuple[dict[str, str], dict[str, str]]] = field(default_factory=dict)

    def deploy(self, model: BenchModel) -> dict[str, str]:
        version = "v" + model.directory.name
        key = contract.model_key("bench", version)
        self.s3.upload_file(str(model.model_path), BUCKET, key)
        from mlserve.train import sha256_file

        return {
            contract.ENV_MODEL_URI: f"s3://{BUCKET}/{key}",
            contract.ENV_MODEL_SHA256: sha256_file(model.model_path),
        }

    def upload(self, path: Path) -> str:
        key = f"inputs/{path.name}"
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=key)
        if not listed.get("KeyCount"):
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4)
            self.s3.upload_file(str(path), BUCKET, key, Config=config)
        return f"s3://{BUCKET}/{key}"

    def submit(self, input_uri: str, fmt: str, shards: int) -> Any:
        from runtime import jobs

        job_id = jobs.new_job_id()
        job = self.store.new_job(
            job_id,
            architecture=contract.ARCH_STEPFUNCTIONS_BATCH,
            model_version="bench",
            input_uri=input_uri,
            output_uri=f"s3://{BUCKET}/results/{job_id}/",
            format=fmt,
            shards=shards,
        )
        self.store.create(job)
        self.store.transition(job_id, contract.STATUS_RUNNING)
        return job


@contextlib.contextmanager
def account() -> Iterator[Account]:
    import boto3

    from mlserve.local.aws import MotoServer, aws_environment
    from runtime.jobs import JobStore

    with MotoServer(set_environment=False) as server, tempfile.TemporaryDirectory() as tmp:
        s3 = server.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = server.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": contract.JOB_TABLE_HASH_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": contract.JOB_TABLE_HASH_KEY, "AttributeType": "S"}
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        env = {n: os.environ[n] for n in ("PATH", "LANG", "LC_ALL", "HOME") if n in os.environ}
        env.update(
            {k: v for k, v in aws_environment(server.endpoint_url, server.port).items() if v}
        )
        env.update(
            {
                contract.ENV_JOB_TABLE: TABLE,
                contract.ENV_DATA_BUCKET: BUCKET,
                contract.ENV_ALLOW_MISSING: "false",
                "PYTHONUNBUFFERED": "1",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            }
        )
        del boto3
        yield Account(server.endpoint_url, env, s3, JobStore(dynamodb, TABLE), Path(tmp))


# --- one run of the entrypoint ----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rows: int
    seconds: float
    peak_rss_mb: list[float]  # per shard process
    scoring_seconds: float  # what the slowest shard logged (without interpreter start)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def run_entrypoint(
    acct: Account,
    model_env: dict[str, str],
    input_uri: str,
    fmt: str,
    *,
    shards: int = 1,
    threads: int = THREADS,
) -> Run:
    """Score ``input_uri`` with ``shards`` concurrent processes; fails loudly on a bad run."""
    job = acct.submit(input_uri, fmt, shards)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    started = time.perf_counter()
    for shard in range(shards):
        workdir = Path(tempfile.mkdtemp(dir=acct.workdir))
        env = {
            **acct.env,
            **model_env,
            contract.ENV_JOB_ID: job.job_id,
            contract.ENV_MODEL_CACHE_DIR: str(workdir / "model"),
            "TMPDIR": str(workdir),
            "OMP_NUM_THREADS": str(threads),
        }
        if shards > 1:
            env[contract.ENV_BATCH_ARRAY_INDEX] = str(shard)
        log = workdir / "log"
        logs.append(log)
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    # as the image runs it (mlserve.local.container: no scikit-learn)
                    container.command(contract.SCORING_MODULE, ["--mode", "batch"]),
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    peaks = [0.0] * shards
    while any(proc.poll() is None for proc in procs):
        for i, proc in enumerate(procs):
            peaks[i] = max(peaks[i], _peak_rss_mb(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    for proc, log in zip(procs, logs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"the scoring process failed:\n{log.read_text()[-3000:]}")
    record = acct.store.require(job.job_id)
    return Run(int(record.rows or 0), seconds, peaks, _logged_seconds(logs))


def _peak_rss_mb(pid: int) -> float:
    """The process's peak RSS so far (``VmHWM``: kept by the kernel since its exec; polled, as
    ``ru_maxrss`` of a child starts from this process's RSS at the fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _logged_seconds(logs: Sequence[Path]) -> float:
    """The longest "part written" ``seconds`` the shards logged (run_batch: from the job read
    to the part uploaded, so without interpreter start and imports)."""
    seconds = 0.0
    for log in logs:
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("message") == "part written":
                    seconds = max(seconds, float(record.get("seconds", 0)))
    return seconds


def raw_rows_per_second(model: BenchModel, matrix: np.ndarray, threads: int) -> float:
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(model.model_path))
    booster.set_param({"nthread": threads})
    booster.inplace_predict(matrix[:1000])
    started = time.perf_counter()
    booster.inplace_predict(matrix)
    return len(matrix) / (time.perf_counter() - started)


_RAW_CHILD = """
import sys, time
sys.modules["sklearn"] = None
import numpy as np, xgboost as xgb
booster = xgb.Booster(model_file=sys.argv[1])
booster.set_param({"nthread": 1})
rows = np.random.default_rng(0).normal(size=(int(sys.argv[2]), booster.num_features()))
rows = rows.astype(np.float32)
booster.inplace_predict(rows[:100])
started = time.perf_counter()
booster.inplace_predict(rows)
print(time.perf_counter() - started)
"""


def machine_scale_out(model: BenchModel, rows: int, pairs: int) -> list[float]:
    """What this machine itself gives two single-threaded XGBoost processes: per alternating
    pair, the throughput of two concurrent processes scoring ``rows`` each over one process
    alone (raw ``inplace_predict`` only, timed inside each process): the ceiling of the
    scale-out figure here."""
    argv = [sys.executable, "-c", _RAW_CHILD, str(model.model_path), str(rows)]

    def scoring_seconds(count: int) -> list[float]:
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(count)]
        return [float(p.communicate()[0]) for p in procs]

    ratios = []
    for _ in range(pairs):
        (alone,) = scoring_seconds(1)
        ratios.append(2 * alone / max(scoring_seconds(2)))
    return ratios


# --- the section ----------------------------------------------------------------------------


def _rate(rate: float) -> str:
    return f"{rate / 1e6:.2f}M rows/s" if rate >= 1e6 else f"{rate / 1e3:.0f}k rows/s"


def _throughput(
    acct: Account, model: BenchModel, n: int, progress: Any
) -> tuple[list[Row], dict[str, Run]]:
    """End to end vs raw, Parquet and CSV; the runs (by format) for the other figures."""
    task = progress.add_task(f"{model.label}: inputs ({n:,} rows)", total=None)
    files = {fmt: input_file(model, n, fmt) for fmt in ("parquet", "csv")}
    model_env = acct.deploy(model)
    uris = {fmt: acct.upload(path) for fmt, path in files.items()}
    matrix = input_matrix(model, n)
    progress.update(task, total=1, completed=1)
    out: list[Row] = []
    runs: dict[str, Run] = {}
    for fmt, target in (("parquet", PARQUET_TARGET), ("csv", CSV_TARGET)):
        task = progress.add_task(f"{model.label}: {n:,} rows of {fmt}, end to end vs raw", total=1)
        run = runs[fmt] = run_entrypoint(acct, model_env, uris[fmt], fmt)
        raw = raw_rows_per_second(model, matrix, THREADS)
        progress.update(task, completed=1)
        if run.rows != n:
            raise RuntimeError(f"the job recorded {run.rows} rows, not {n}")
        ratio = run.rows_per_second / raw
        steady = n / run.scoring_seconds / raw if run.scoring_seconds else float("nan")
        out.append(
            check(
                f"batch {fmt} throughput, {model.label}, {n:,} rows, {THREADS} threads: "
                "the entrypoint end to end (S3 in, score, S3 out, record) vs raw inplace_predict "
                f"on the matrix in memory [{steady:.0%} without interpreter start]",
                f"{_rate(run.rows_per_second)} vs {_rate(raw)} = {ratio:.0%}",
                f">= {target:.0%}",
                ratio >= target,
            )
        )
    acct.inputs[model.directory.name] = (model_env, uris)
    return out, runs


def _memory(acct: Account, model: BenchModel, n: int, small: Run, progress: Any) -> list[Row]:
    """Peak RSS of ``4 * n`` rows vs ``small``, the run of ``n`` rows of the same model."""
    task = progress.add_task(f"peak RSS: {4 * n:,} rows of parquet (vs {n:,})", total=None)
    model_env, _uris = acct.inputs[model.directory.name]
    big = run_entrypoint(
        acct, model_env, acct.upload(input_file(model, 4 * n, "parquet")), "parquet"
    )
    progress.update(task, total=1, completed=1)
    ratio = big.peak_rss_mb[0] / small.peak_rss_mb[0]
    return [
        check(
            f"batch peak RSS of the scoring process, {model.label}, parquet, "
            f"{4 * n:,} vs {n:,} rows (streamed in batches of "
            f"{scoring_batch.PARQUET_BATCH_ROWS:,} rows)",
            f"{big.peak_rss_mb[0]:.0f} MB vs {small.peak_rss_mb[0]:.0f} MB = {ratio:.2f}x",
            f"<= {MEMORY_TARGET}x",
            ratio <= MEMORY_TARGET,
        )
    ]


def _scale_out(
    acct: Account, model: BenchModel, n: int, pairs: int, all_cores: Run, progress: Any
) -> list[Row]:
    """1 shard vs an array job of 2 shards on ``n`` rows, ``pairs`` times alternately (this
    machine's speed drifts over tens of seconds: each ratio compares neighbours in time); the
    figure is the median ratio."""
    model_env, _uris = acct.inputs[model.directory.name]
    uri = acct.upload(input_file(model, n, "parquet"))
    task = progress.add_task(
        f"scale-out: 1 vs 2 shards of {n:,} rows, 1 thread each, {pairs} pairs", total=2 * pairs
    )
    ratios: list[float] = []
    ones: list[Run] = []
    twos: list[Run] = []
    for _ in range(pairs):
        ones.append(run_entrypoint(acct, model_env, uri, "parquet", shards=1, threads=1))
        progress.advance(task)
        twos.append(run_entrypoint(acct, model_env, uri, "parquet", shards=2, threads=1))
        progress.advance(task)
        ratios.append(twos[-1].rows_per_second / ones[-1].rows_per_second)
    ratio = median(ratios)
    two_rate = median([r.rows_per_second for r in twos])
    one_rate = median([r.rows_per_second for r in ones])
    versus_all = two_rate / all_cores.rows_per_second
    ceiling = machine_scale_out(model, CEILING_ROWS, pairs)
    return [
        check(
            f"batch scale-out, {model.label}, {n:,} rows of parquet (one object, split by row "
            "range, each shard downloading only its row groups): array job of 2 shards run "
            "concurrently vs 1 shard, each with 1 thread (the job definition's 1 vCPU); median "
            f"of {pairs} alternating pairs",
            f"{_rate(two_rate)} vs {_rate(one_rate)} = {ratio:.2f}x "
            f"(pairs: {', '.join(f'{r:.2f}x' for r in ratios)})",
            f">= {SCALE_OUT_TARGET}x",
            ratio >= SCALE_OUT_TARGET,
        ),
        Row(
            "  this machine's own scale-out: raw inplace_predict (1 thread) in 2 concurrent "
            f"processes vs 1, {CEILING_ROWS:,} rows each, alternating pairs",
            f"{median(ceiling):.2f}x (pairs: {', '.join(f'{r:.2f}x' for r in ceiling)})",
        ),
        Row(
            f"batch scale-out on this {THREADS}-core machine: 2 shards x 1 thread vs 1 shard "
            f"using all {THREADS} cores ({all_cores.rows:,} rows)",
            f"{_rate(two_rate)} vs {_rate(all_cores.rows_per_second)} = {versus_all:.2f}x",
        ),
    ]


def rows(console: Console, quick: bool = False) -> list[Row]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    n = 200_000 if quick else 2_000_000
    example, synthetic = example_model(), synthetic_model()
    out: list[Row] = []
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    )
    with progress, account() as acct:
        runs_of: dict[str, dict[str, Run]] = {}
        for model in (example, synthetic):
            figures, runs = _throughput(acct, model, n, progress)
            runs_of[model.directory.name] = runs
            out.extend(figures)
            out.append(
                Row(
                    f"batch peak RSS, {model.label}, {n:,} rows (parquet / csv)",
                    f"{runs['parquet'].peak_rss_mb[0]:.0f} MB / "
                    f"{runs['csv'].peak_rss_mb[0]:.0f} MB",
                )
            )
        out.extend(_memory(acct, example, n, runs_of[example.directory.name]["parquet"], progress))
        all_cores = runs_of[synthetic.directory.name]["parquet"]
        scale_rows = n // 10 if quick else SCALE_OUT_ROWS
        out.extend(_scale_out(acct, synthetic, scale_rows, 1 if quick else 3, all_cores, progress))
    return out


if __name__ == "__main__":
    for row in rows(Console(), quick="--quick" in sys.argv):
        print(row.cells())


__all__: Sequence[str] = ("rows",)

"""The scoring container's entrypoint: ``python -m runtime.scoring`` (images/scoring).

One image, several modes (DESIGN.md §6), chosen by ``--mode`` (default: job mode):

- ``job``: score the job ``JOB_ID`` (env, or ``--job-id``) of the job table and record the
  result; the ECS task of lambda-ecs and stepfunctions-ecs runs this.

- ``batch``: score this process's shard (``AWS_BATCH_JOB_ARRAY_INDEX``) of the batch job
  ``JOB_ID``: input_uri -> output_uri/part-NNNNN.<format> in chunks, plus _manifest.json once
  every shard is done (runtime/scoring/batch.py); the AWS Batch job of stepfunctions-batch.
 Exit codes: 0 only when the work is recorded SUCCEEDED, 1 when it
failed (and is recorded FAILED when the record could be written), 2 for a usage error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from runtime import contract
from runtime.context import RuntimeContext

EXIT_USAGE: Final = 2

Mode = Callable[[argparse.Namespace, RuntimeContext], int]


def _job_mode(args: argparse.Namespace, ctx: RuntimeContext) -> int:
    from runtime.scoring.job import run_job

    job_id = args.job_id or ctx.get(contract.ENV_JOB_ID)
    if not job_id:
        raise _UsageError(f"job mode needs a job id: set {contract.ENV_JOB_ID} or --job-id")
    return run_job(job_id, ctx)


def _batch_mode(args: argparse.Namespace, ctx: RuntimeContext) -> int:
    from runtime.scoring.batch import run_batch

    job_id = args.job_id or ctx.get(contract.ENV_JOB_ID)
    if not job_id:
        raise _UsageError(f"batch mode needs a job id: set {contract.ENV_JOB_ID} or --job-id")
    return run_batch(job_id, ctx)


MODES: dict[str, Mode] = {"job": _job_mode, "batch": _batch_mode}
DEFAULT_MODE: Final = "job"


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {contract.SCORING_MODULE}",
        description="Score with the deployed XGBoost model and record the result.",
    )
    parser.add_argument(
        "--mode", choices=sorted(MODES), default=DEFAULT_MODE, help="default: %(default)s"
    )
    parser.add_argument(
        "--job-id", help=f"job/batch mode: the job to score (default: ${contract.ENV_JOB_ID})"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    clients: Mapping[str, Any] | None = None,
) -> int:
    """Run one mode; the process exit code. ``env``/``clients`` default to the process's."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    ctx = RuntimeContext(env, clients)
    try:
        return MODES[args.mode](args, ctx)
    except _UsageError as exc:
        parser.print_usage()
        print(f"{parser.prog}: error: {exc}")
        return EXIT_USAGE

"""Which identity of the stack makes each AWS call site of runtime/ (mlserve/callsites.py).

``CALLERS`` maps every call site (found by reading the code) to the identities whose code path
reaches it: the Lambda functions by role, ``ecs-task`` (the ECS scoring task of lambda-ecs and
stepfunctions-ecs) and ``batch-job`` (the AWS Batch scoring job). tests/verify/
test_least_privilege.py then proves, on the emulator, that:

- every recorded call from runtime/ is at a listed site, made by a listed identity (so this
  table cannot hide a caller), and allowed by that identity's policy;
- every (site, identity) pair is reached at least once, per architecture of the identity: the
  spilled, cancelled, retried and failure paths included (``exercise_paths_beyond_the_e2e_suite``
  takes those the e2e suite does not). A pair that cannot be reached is named in
  ``NOT_REACHED`` with the reason; ``make verify`` reports reached / total per architecture.

A fast test checks that this table lists exactly the inventory's sites and that each identity's
policy grants the site's IAM actions: a new call site fails ``make test`` until it is listed
here with its callers (and granted in components/policies.py).
"""

from __future__ import annotations

from typing import Final

# the job APIs (runtime/handlers/jobs.py), one per asynchronous architecture
JOB_APIS: Final = ("job-api", "sfn-job-api", "batch-job-api")

CALLERS: Final[dict[str, tuple[str, ...]]] = {
    # --- runtime/compute.py: ECS tasks and Batch jobs ---
    # lambda-ecs: the job API runs the task; stepfunctions-ecs (polling lambda): RunECS
    "runtime/compute.py::run_task::run_task": ("job-api", "run-ecs"),
    # lambda-ecs: the job API waits for it; stepfunctions-ecs: CheckJobStatus
    "runtime/compute.py::describe_task::describe_tasks": ("job-api", "check-job-status"),
    # cancel (DELETE /jobs/{id}) and RunECS finding its job cancelled meanwhile
    "runtime/compute.py::stop_task::stop_task": ("job-api", "sfn-job-api", "run-ecs"),
    "runtime/compute.py::submit_job::submit_job": ("submit-batch-job",),
    "runtime/compute.py::describe_job::describe_jobs": ("check-batch-status",),
    # cancel, reconcile of a failed workflow; SubmitBatchJob finding its job cancelled meanwhile
    "runtime/compute.py::terminate_job::terminate_job": ("batch-job-api", "submit-batch-job"),
    # --- the model metadata (the job APIs' feature schema) ---
    "runtime/context.py::read_model_info::get_object": JOB_APIS,
    # --- the job API ---
    # a request too big for the job item, spilled to inputs/{id}.json
    "runtime/handlers/jobs.py::_spill_input::put_object": JOB_APIS,
    # an upload job's input, checked before POST /jobs/{id}/start starts it
    "runtime/handlers/jobs.py::_check_upload::head_object": JOB_APIS,
    # predictions a scoring task wrote to results/ (POST /predict answering from there)
    "runtime/handlers/jobs.py::_predictions::get_object": ("job-api", "sfn-job-api"),
    # --- the job-config trigger (stepfunctions-batch) ---
    "runtime/handlers/trigger.py::_read::get_object": ("job-trigger",),
    "runtime/handlers/trigger.py::_reject::copy_object": ("job-trigger",),
    "runtime/handlers/trigger.py::_reject::delete_object": ("job-trigger",),
    # --- job records ---
    "runtime/jobs.py::JobStore.create::put_item": (*JOB_APIS, "job-trigger"),
    "runtime/jobs.py::JobStore.get::get_item": (
        *JOB_APIS,
        "job-trigger",
        "run-ecs",
        "check-job-status",
        "submit-batch-job",
        "check-batch-status",
        "ecs-task",
    ),
    # GET /jobs: the caller's own jobs, on the by-caller index
    "runtime/jobs.py::JobStore.list_by_caller::query": JOB_APIS,
    "runtime/jobs.py::JobStore._update::update_item": (
        *JOB_APIS,
        "job-trigger",
        "run-ecs",
        "submit-batch-job",
        "check-batch-status",
        "ecs-task",
        "batch-job",
    ),
    # --- the Step Functions launchers (runtime/launchers.py) ---
    "runtime/launchers.py::StepFunctionsEcsLauncher.start::start_execution": (
        "sfn-job-api",
        "batch-job-api",
        "job-trigger",
    ),
    "runtime/launchers.py::StepFunctionsEcsLauncher.cancel::stop_execution": (
        "sfn-job-api",
        "batch-job-api",
    ),
    "runtime/launchers.py::StepFunctionsEcsLauncher.reconcile::describe_execution": (
        "sfn-job-api",
        "batch-job-api",
    ),
    # stepfunctions-batch: read back a spilled request, stage inline rows as JSON lines
    "runtime/launchers.py::StepFunctionsBatchLauncher._complete::get_object": ("batch-job-api",),
    "runtime/launchers.py::StepFunctionsBatchLauncher._stage::put_object": ("batch-job-api",),
    # --- data capture: the capture function writes the delivered records (issue 17) ---
    "runtime/handlers/capture.py::write_records::put_object": ("capture",),
    # --- the model (predictor; the scoring task and job load it too) ---
    "runtime/modelfile.py::_download::get_object": ("predictor", "ecs-task", "batch-job"),
    # --- the Batch scoring job (runtime/scoring/batch.py) ---
    "runtime/scoring/batch.py::list_input::head_object": ("batch-job",),
    "runtime/scoring/batch.py::list_input::list_objects_v2": ("batch-job",),
    "runtime/scoring/batch.py::Reader._body::get_object": ("batch-job",),
    "runtime/scoring/batch.py::score_shard::upload_file": ("batch-job",),
    "runtime/scoring/batch.py::write_manifest_if_complete::list_objects_v2": ("batch-job",),
    "runtime/scoring/batch.py::write_manifest_if_complete::head_object": ("batch-job",),
    "runtime/scoring/batch.py::write_manifest_if_complete::put_object": ("batch-job",),
    # the shard completing the manifest reads a small output back to record it inline
    "runtime/scoring/batch.py::inline_predictions::get_object": ("batch-job",),
    # --- the ECS scoring task (runtime/scoring/job.py) ---
    "runtime/scoring/job.py::_read_bytes::get_object": ("ecs-task",),
    "runtime/scoring/job.py::_store_predictions::put_object": ("ecs-task",),
}

# (site, identity) pairs no recorded suite can reach, each with the reason. Empty: every pair
# is reached.
NOT_REACHED: Final[dict[tuple[str, str], str]] = {}

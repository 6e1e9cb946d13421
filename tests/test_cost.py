"""`python -m mlserve cost`: the seed's worked examples, the free-tier edges, the Step Functions
counts taken from the real definitions, the CLI output and the chart.

Every expected figure below is worked out by hand from the published prices (the comments show
the arithmetic), never read back from the calculator.
"""

from __future__ import annotations

import json
import re
import shutil
import tokenize
from pathlib import Path

import pytest

from components.settings import PROJECT_FILE
from mlserve import cost
from mlserve.cli import main
from runtime import contract

PRICES = cost.PriceList.load()
X86 = cost.StackConfig(lambda_architecture="x86_64")
ARM = cost.StackConfig(lambda_architecture="arm64")


def lambda_bill(
    invocations: float, duration_ms: float, memory_mb: int, config: cost.StackConfig = X86
) -> cost.Bill:
    meter = cost.Meter(PRICES, config)
    meter.lambda_calls(invocations, duration_ms, memory_mb, "function")
    return cost.bill("lambda", PRICES, meter.usages)


def line(b: cost.Bill, item: str) -> cost.LineItem:
    return next(li for li in b.lines if li.price.key == item)


# --- the seed's worked examples ------------------------------------------------------------------


def test_seed_fargate_example() -> None:
    # 5 tasks x 1 vCPU x 2 GB x 600 s x 30 days = 150 runs of 600 s = 25 task-hours:
    # 0.04048 * 25 + 0.004445 * 2 * 25 = 1.012 + 0.22225 = 1.23425 -> $1.23
    meter = cost.Meter(PRICES, cost.StackConfig(lambda_architecture="x86_64"))
    meter.fargate(5 * 30, 600, spot=False, what="seed example")
    b = cost.bill("lambda-ecs", PRICES, meter.usages)
    assert line(b, "fargate_vcpu_x86_64").quantity == pytest.approx(25.0)
    assert line(b, "fargate_memory_x86_64").quantity == pytest.approx(50.0)
    assert b.total == pytest.approx(1.23425, abs=1e-12)
    assert cost.money(b.total) == "$1.23"


def test_seed_lambda_example() -> None:
    # AWS's classic example: 3M invocations a month, 512 MB, 1 s each (x86_64).
    # compute: 3,000,000 * 1 s * 0.5 GB = 1,500,000 GB-s - 400,000 free = 1,100,000 GB-s
    #          1,100,000 * 0.0000166667 = 18.33337 -> $18.33
    # requests: 3,000,000 - 1,000,000 free = 2,000,000 * $0.20 / 1M = $0.40
    # total 18.73337 -> $18.73
    b = lambda_bill(3_000_000, 1000, 512)
    compute = line(b, "lambda_compute_x86_64")
    assert compute.quantity == pytest.approx(1_500_000)
    assert compute.free == pytest.approx(400_000)
    assert compute.cost == pytest.approx(18.33337, abs=1e-9)
    assert cost.money(compute.cost) == "$18.33"
    requests = line(b, "lambda_requests")
    assert requests.free == 1_000_000
    assert requests.cost == pytest.approx(0.40, abs=1e-12)
    assert b.total == pytest.approx(18.73337, abs=1e-9)
    assert cost.money(b.total) == "$18.73"


def test_lambda_architecture_bill_adds_api_gateway() -> None:
    # the same workload on the `lambda` architecture: + 3M API Gateway REST requests * $3.50/1M
    # = $10.50 -> 18.73337 + 10.50 = 29.23337
    config = cost.StackConfig(lambda_architecture="x86_64", lambda_memory=512)
    workload = cost.Workload(requests=3_000_000, duration_ms=1000)
    b = cost.monthly_bill("lambda", workload, config, PRICES)
    assert line(b, "api_gateway_rest_requests").cost == pytest.approx(10.50)
    assert b.total == pytest.approx(29.23337, abs=1e-9)


# --- free-tier edges -------------------------------------------------------------------------


def test_exactly_one_million_requests_cost_nothing() -> None:
    assert line(lambda_bill(1_000_000, 1, 128), "lambda_requests").cost == 0


def test_one_request_past_the_free_tier_costs_one_request() -> None:
    # 1 request * $0.20 / 1M = $0.0000002
    billed = line(lambda_bill(1_000_001, 1, 128), "lambda_requests")
    assert billed.cost == pytest.approx(0.0000002, abs=1e-15)


def test_exactly_400000_gb_seconds_cost_nothing() -> None:
    # 400,000 invocations * 1 s * 1 GB = 400,000 GB-s: all free
    assert line(lambda_bill(400_000, 1000, 1024), "lambda_compute_x86_64").cost == 0
    # one more GB-s is charged at the first tier: 1 * 0.0000166667 (x86), 0.0000133334 (arm64)
    assert line(lambda_bill(400_001, 1000, 1024), "lambda_compute_x86_64").cost == pytest.approx(
        0.0000166667, abs=1e-15
    )
    arm = lambda_bill(400_001, 1000, 1024, ARM)
    assert line(arm, "lambda_compute_arm64").cost == pytest.approx(0.0000133334, abs=1e-15)


def test_free_tier_is_subtracted_once_per_bill_across_functions() -> None:
    # two functions of one architecture, 600k requests each: 1.2M - 1M free = 200k * $0.20/1M
    usages = [
        cost.Usage("lambda_requests", 600_000, "job API"),
        cost.Usage("lambda_requests", 600_000, "CheckJobStatus"),
    ]
    b = cost.bill("stepfunctions-ecs", PRICES, usages)
    assert len(b.lines) == 1
    assert b.total == pytest.approx(0.04, abs=1e-12)


def test_compute_free_tier_is_shared_by_x86_and_arm64() -> None:
    # 300k GB-s x86 + 300k GB-s arm64: 400k free in aggregate, the dearer x86 first:
    # x86 300k free -> $0; arm64 100k free, 200k * 0.0000133334 = 2.66668
    usages = [
        cost.Usage("lambda_compute_x86_64", 300_000, "a"),
        cost.Usage("lambda_compute_arm64", 300_000, "b"),
    ]
    b = cost.bill("mixed", PRICES, usages)
    assert line(b, "lambda_compute_x86_64").cost == 0
    assert line(b, "lambda_compute_arm64").free == pytest.approx(100_000)
    assert b.total == pytest.approx(2.66668, abs=1e-9)


def test_no_free_tier_charges_from_the_first_request() -> None:
    usages = [cost.Usage("lambda_requests", 1_000_000, "predictor")]
    assert cost.bill("lambda", PRICES, usages, free_tier=False).total == pytest.approx(0.20)


def test_step_functions_free_tier_is_4000_transitions() -> None:
    # 4,000 free; 5,000 -> 1,000 * $0.025 / 1k = $0.025
    usages = [cost.Usage("stepfunctions_standard_transitions", 4000, "w")]
    assert cost.bill("x", PRICES, usages).total == 0
    usages = [cost.Usage("stepfunctions_standard_transitions", 5000, "w")]
    assert cost.bill("x", PRICES, usages).total == pytest.approx(0.025)


@pytest.mark.parametrize("architecture", cost.ARCHITECTURES)
def test_zero_volume_costs_nothing(architecture: str) -> None:
    # no fixed cost is modelled (storage, logs, ECR and provisioned concurrency are not priced)
    b = cost.monthly_bill(architecture, cost.Workload(), cost.StackConfig(), PRICES)
    assert b.total == 0


# --- tiers, Fargate rules, SageMaker -----------------------------------------------------------


def test_api_gateway_tiers() -> None:
    # 400M requests: 333M * 3.50/M + 67M * 2.80/M = 1165.50 + 187.60 = 1353.10
    usages = [cost.Usage("api_gateway_rest_requests", 400_000_000, "api")]
    assert cost.bill("x", PRICES, usages).total == pytest.approx(1353.10)


def test_fargate_bills_at_least_a_minute() -> None:
    # a 30 s task (1 vCPU, 2 GB, x86) is billed 60 s: (0.04048 + 2 * 0.004445) / 60
    meter = cost.Meter(PRICES, X86)
    meter.fargate(1, 30, spot=False, what="short task")
    assert cost.bill("x", PRICES, meter.usages).total == pytest.approx(0.04937 / 60)


def test_batch_on_fargate_spot_uses_spot_prices() -> None:
    config = cost.StackConfig(batch_compute_type="FARGATE_SPOT")
    workload = cost.Workload(jobs=10, task_seconds=120)
    b = cost.monthly_bill(contract.ARCH_STEPFUNCTIONS_BATCH, workload, config, PRICES)
    keys = {li.price.key for li in b.lines}
    assert "fargate_spot_vcpu_arm64" in keys
    assert "fargate_vcpu_arm64" not in keys
    # 10 shards * 120 s = 1/3 h at 1 vCPU: 0.009714 / 3 = 0.003238
    assert line(b, "fargate_spot_vcpu_arm64").cost == pytest.approx(0.009714 / 3)


def test_sagemaker_uses_the_smallest_memory_size_that_fits() -> None:
    # lambdaMemory 1536 -> the 2048 MB size at $0.00004/s; 1M requests * 0.1 s = 100,000 s = $4;
    # data 1M * 1 KB = 1,000,000 / 1,048,576 GB * $0.016 = 0.0152587890625;
    # behind API Gateway (the default): 1M * $3.50/1M = $3.50
    config = cost.StackConfig(lambda_memory=1536)
    b = cost.monthly_bill(
        cost.ARCH_SAGEMAKER, cost.Workload(requests=1_000_000, duration_ms=100), config, PRICES
    )
    assert line(b, "sagemaker_serverless_2048").cost == pytest.approx(4.0)
    assert b.total == pytest.approx(3.50 + 4.0 + 0.0152587890625)
    direct = cost.monthly_bill(
        cost.ARCH_SAGEMAKER,
        cost.Workload(requests=1_000_000, duration_ms=100, sagemaker_api_gateway=False),
        config,
        PRICES,
    )
    assert direct.total == pytest.approx(4.0 + 0.0152587890625)


# --- Step Functions: counted from components/workflows.py --------------------------------------


@pytest.mark.parametrize("polls", [1, 2, 7])
def test_ecs_lambda_polling_transitions(polls: int) -> None:
    # RecordRunning, RunECS, polls x (WaitForTask, CheckJobStatus, IsTaskDone), MarkSucceeded
    path = cost.workflow_path(contract.ARCH_STEPFUNCTIONS_ECS, "lambda", 10, polls)
    assert path.transitions == 3 + 3 * polls
    assert path.states[:2] == ("RecordRunning", "RunECS")
    assert path.states[-1] == "MarkSucceeded"
    assert path.lambda_invocations == {"RunECS": 1, "CheckJobStatus": polls}
    assert path.dynamodb_updates == 2  # RecordRunning, MarkSucceeded


def test_ecs_native_transitions_do_not_depend_on_polls() -> None:
    # RecordRunning, RunTask (.sync), ExitedCleanly, MarkSucceeded
    for polls in (1, 50):
        path = cost.workflow_path(contract.ARCH_STEPFUNCTIONS_ECS, "native", 10, polls)
        assert path.states == ("RecordRunning", "RunTask", "ExitedCleanly", "MarkSucceeded")
        assert path.lambda_invocations == {}


def test_batch_lambda_polling_transitions() -> None:
    path = cost.workflow_path(contract.ARCH_STEPFUNCTIONS_BATCH, "lambda", 30, 4)
    assert path.transitions == 3 + 3 * 4
    assert path.lambda_invocations == {"SubmitBatchJob": 1, "CheckBatchStatus": 4}


@pytest.mark.parametrize(("shards", "submit"), [(1, "SubmitJob"), (8, "SubmitArrayJob")])
def test_batch_native_transitions(shards: int, submit: str) -> None:
    path = cost.workflow_path(contract.ARCH_STEPFUNCTIONS_BATCH, "native", 30, 1, shards)
    assert path.states == (
        "RecordRunning",
        "ChooseQueue",
        "UseLowQueue",
        "IsArrayJob",
        submit,
        "MarkSucceeded",
    )


def test_polls_are_derived_from_the_task_time_and_interval() -> None:
    # a 45 s task watched every 10 s: 5 checks -> 3 + 3 * 5 = 18 transitions per job;
    # 1000 jobs = 18,000 - 4,000 free = 14,000 * $0.025 / 1k = $0.35
    config = cost.StackConfig(polling="lambda", poll_interval_seconds=10)
    workload = cost.Workload(jobs=1000, task_seconds=45)
    b = cost.monthly_bill(contract.ARCH_STEPFUNCTIONS_ECS, workload, config, PRICES)
    transitions = line(b, "stepfunctions_standard_transitions")
    assert transitions.quantity == 18_000
    assert transitions.cost == pytest.approx(0.35)


def test_stepfunctions_ecs_native_bill_line_by_line() -> None:
    # 1000 jobs, 120 s tasks, x86_64, 1 vCPU / 2 GB, job API 1024 MB 50 ms, one status read:
    #   API Gateway: 1000 * (POST + GET) = 2000 * $3.50/1M = 0.007
    #   Lambda: 2000 requests, 2000 * 0.05 s * 1 GB = 100 GB-s: inside the free tier -> 0
    #   DynamoDB writes: create 1 + RecordRunning + MarkSucceeded 2 + task 2 = 5000 * 0.625/1M
    #   DynamoDB reads: GET 1 + task 1 = 2000 * 0.125/1M = 0.00025
    #   transitions: RecordRunning, RunTask, ExitedCleanly, MarkSucceeded = 4000: free -> 0
    #   Fargate: 1000 * 120 s = 33.333 h * (0.04048 + 2 * 0.004445) = 1.6456667
    #   S3: GET model + input 2000 * 0.0004/1k = 0.0008; PUT output 1000 * 0.005/1k = 0.005
    config = cost.StackConfig(lambda_architecture="x86_64", polling="native")
    workload = cost.Workload(jobs=1000, task_seconds=120, api_ms=50)
    b = cost.monthly_bill(contract.ARCH_STEPFUNCTIONS_ECS, workload, config, PRICES)
    expected = {
        "api_gateway_rest_requests": 0.007,
        "lambda_requests": 0.0,
        "lambda_compute_x86_64": 0.0,
        "dynamodb_write_request_units": 0.003125,
        "dynamodb_read_request_units": 0.00025,
        "stepfunctions_standard_transitions": 0.0,
        "fargate_vcpu_x86_64": 0.04048 * 100 / 3,
        "fargate_memory_x86_64": 0.004445 * 2 * 100 / 3,
        "s3_get_requests": 0.0008,
        "s3_put_requests": 0.005,
    }
    assert {li.price.key: li.cost for li in b.lines} == pytest.approx(expected, abs=1e-12)
    assert line(b, "stepfunctions_standard_transitions").quantity == 4000
    assert b.total == pytest.approx(1.6618416667, abs=1e-9)


def test_lambda_ecs_wait_rounds_follow_the_backoff() -> None:
    # describe at 0, then after 0.25, 0.5, 1, 2, 2, ... s: 0, .25, .75, 1.75, 3.75, 5.75, ...,
    # 23.75, then the 1.25 s left -> 25: 16 rounds in a 25 s wait
    assert cost.wait_rounds(0) == 1
    assert cost.wait_rounds(25) == 16


# --- break-even points -------------------------------------------------------------------------


def test_break_even_duration_lambda_vs_sagemaker() -> None:
    # 5M requests, arm64 1024 MB. lambda: API 17.50 + requests 0.80 + (5000 d - 400000) *
    # 0.0000133334 = 12.96664 + 0.066667 d; SageMaker 1024 MB: 0.1 d + data 0.0762939453125.
    # Equal at d = (12.96664 - 0.0762939) / 0.033333 = 386.7 ms; billed in whole ms, the step
    # from SageMaker-cheaper to lambda-cheaper lies between 386 and 387 ms.
    workload = cost.Workload(requests=5_000_000, sagemaker_api_gateway=False)
    points = cost.break_even_points(
        (contract.ARCH_LAMBDA, cost.ARCH_SAGEMAKER), workload, ARM, PRICES
    )
    (duration,) = [p for p in points if p.axis == "duration_ms"]
    assert 386 <= duration.value <= 387
    assert duration.cheaper_below == cost.ARCH_SAGEMAKER
    assert duration.cheaper_above == contract.ARCH_LAMBDA
    assert not [p for p in points if p.axis == "volume"]


def test_break_even_volume_lambda_vs_sagemaker_behind_api_gateway() -> None:
    # both behind API Gateway (3.50/M each, cancels out), 10 ms, arm64 / SageMaker 1024 MB:
    #   lambda above 40M requests (5,000 GB-s a million requests; 400k GB-s free):
    #     0.0000002 (v - 1M) + 0.0000133334 * (0.01 v - 400,000) = 0.000000333334 v - 5.53336
    #   SageMaker: 0.00002 * 0.01 v + 0.016 v / 1,048,576 = 0.0000002152587890625 v
    #   -> v = 5.53336 / 0.0000001180752109375 = 46.863M; lambda cheaper below
    # along the duration at 5M requests: lambda 18.30 flat up to 80 ms (compute free);
    # SageMaker 17.50 + 0.1 d + 0.0762939453125 -> equal at d = 7.24 ms; billed in whole ms,
    # SageMaker is cheaper up to 7 ms (18.276 < 18.30) and dearer from the next ms (18.376)
    workload = cost.Workload(requests=5_000_000, duration_ms=10)
    points = cost.break_even_points(
        (contract.ARCH_LAMBDA, cost.ARCH_SAGEMAKER), workload, ARM, PRICES
    )
    (volume,) = [p for p in points if p.axis == "volume"]
    assert volume.value == pytest.approx(5.53336 / 0.0000001180752109375, rel=1e-6)
    assert (volume.cheaper_below, volume.cheaper_above) == ("lambda", cost.ARCH_SAGEMAKER)
    (duration,) = [p for p in points if p.axis == "duration_ms"]
    assert duration.value == pytest.approx(7.0, abs=1e-6)
    assert (duration.cheaper_below, duration.cheaper_above) == (cost.ARCH_SAGEMAKER, "lambda")


def test_crossings_find_where_the_free_tier_stops_helping() -> None:
    # lambda (x86_64, 1024 MB, 1 s) against SageMaker Serverless (1024 MB, no data), volume v:
    #   SageMaker: 0.00002 v
    #   lambda, v <= 400k: API 0.0000035 v (compute and requests free) -> cheaper
    #   400k < v <= 1M: 0.0000035 v + 0.0000166667 (v - 400k) -> still cheaper (equal at 40M)
    #   v > 1M: 0.0000035 v + 0.0000002 (v - 1M) + 0.0000166667 (v - 400k)
    #         = 0.0000203667 v - 6.86668 = 0.00002 v  ->  v = 6.86668 / 0.0000003667 = 18.7256M
    #   v > 333M, API Gateway's second tier ($2.80/M) makes lambda cheaper again:
    #     0.0000035 * 333M + 0.0000028 (v - 333M) + 0.0000002 (v - 1M) + 0.0000166667 (v - 400k)
    #     = 0.0000196667 v + 233.1 - 0.2 - 6.66668 = 0.00002 v -> v = 226.23332 / 0.0000003333
    config = cost.StackConfig(lambda_architecture="x86_64", lambda_memory=1024)
    workload = cost.Workload(
        requests=1_000_000, duration_ms=1000, payload_kb=0, sagemaker_api_gateway=False
    )
    points = cost.crossings(
        (contract.ARCH_LAMBDA, cost.ARCH_SAGEMAKER),
        lambda x: cost.at_volume(workload, x),
        cost.volumes(),
        config,
        PRICES,
        axis="volume",
    )
    first, second = points
    assert first.value == pytest.approx(6.86668 / 0.0000003667, rel=1e-6)
    assert first.cheaper_below == contract.ARCH_LAMBDA
    assert first.cheaper_above == cost.ARCH_SAGEMAKER
    assert second.value == pytest.approx(226.23332 / 0.0000003333, rel=1e-6)
    assert second.cheaper_below == cost.ARCH_SAGEMAKER
    assert second.cheaper_above == contract.ARCH_LAMBDA


# --- configuration -------------------------------------------------------------------------------


def test_stack_file_and_overrides(tmp_path: Path) -> None:
    project = tmp_path / "Pulumi.yaml"
    shutil.copy(PROJECT_FILE, project)
    (tmp_path / "Pulumi.demo.yaml").write_text(
        "config:\n  aws:region: us-east-1\n  mlserve:pollIntervalSeconds: 30\n"
        "  mlserve:lambdaMemory: 2048\n  mlserve:polling: native\n"
    )
    config = cost.load_stack_config("demo", {"lambda_memory": 512}, project_file=project)
    assert config.poll_interval_seconds == 30
    assert config.polling == "native"
    assert config.lambda_memory == 512  # the command line wins over the stack file
    assert config.task_cpu == 1024  # Pulumi.yaml's default


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(cost.CostError, match="task_memory: 1024 does not fit 1024 CPU"):
        cost.load_stack_config(None, {"task_memory": 1024})
    with pytest.raises(cost.CostError, match="polling"):
        cost.load_stack_config(None, {"polling": "sometimes"})
    with pytest.raises(cost.CostError, match="rows_per_job must be > 0"):
        cost.Workload(rows_per_job=0)


# --- the price file ----------------------------------------------------------------------------


def test_every_price_has_a_date_and_a_named_source() -> None:
    for item in PRICES.items.values():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", item.date), item.key
        assert item.source.startswith(("AWS ", "Amazon ")), item.key
        assert "us-east-1" in item.source, item.key


def test_no_price_is_written_in_the_code() -> None:
    with tokenize.open(cost.__file__) as fh:
        numbers = {
            float(t.string.replace("_", ""))
            for t in tokenize.generate_tokens(fh.readline)
            if t.type == tokenize.NUMBER
        }
    document = json.loads((Path(cost.__file__).parent / cost.PRICES_FILE).read_text())
    for key, spec in document["items"].items():
        for tier in spec["tiers"]:
            assert tier["price"] not in numbers, key


def test_prices_come_from_the_file() -> None:
    document = json.loads((Path(cost.__file__).parent / cost.PRICES_FILE).read_text())
    document["items"]["lambda_requests"]["tiers"][0]["price"] = 0.40
    doubled = cost.PriceList.from_document(document)
    usages = [cost.Usage("lambda_requests", 2_000_000, "f")]
    assert cost.bill("x", doubled, usages).total == pytest.approx(0.40)


# --- the command ---------------------------------------------------------------------------------


def test_cli_prints_every_architecture_and_writes_the_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "out" / "cost.png"
    argv = ["cost", "--architecture", "all", "--requests", "5000000", "--chart", str(chart)]
    pinned = ["--lambda-memory", "1024", "--lambda-architecture", "arm64", "--duration-ms", "10"]
    assert main(argv + pinned) == 0
    out = capsys.readouterr().out
    for architecture in cost.ARCHITECTURES:
        assert architecture in out
    # lambda: API 5M * 3.50/M = 17.50; requests (5M - 1M) * 0.20/M = 0.80;
    # compute 5M * 0.010 s * 1 GB = 50,000 GB-s, inside the free tier -> $18.30
    assert "$18.30" in out
    assert "break-even" in out
    assert str(chart) in out.replace("\n", "")
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_cli_needs_a_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--no-chart"]) == 1
    assert "--requests" in capsys.readouterr().err

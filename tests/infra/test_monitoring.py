"""Alarms, the alarm topic and the dashboard, declared by the program for what it deployed.

Every stack is the real program under mocks; names in alarms and widgets are compared with the
outputs of the resources they watch (the function, the state machine, the REST API), thresholds
with the configuration, and the runtime metrics the dashboard and alarms read with the metric
names runtime/ really emits (read from its source, not from a copy).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from components import monitoring
from components.monitoring import Monitored, Thresholds
from components.settings import SettingsError
from runtime import contract
from tests.infra.conftest import REGION, StackRun, run_stack

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
FUNCTION = "aws:lambda/function:Function"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
REST_API = "aws:apigateway/restApi:RestApi"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RUNTIME = Path(__file__).resolve().parents[2] / "runtime"

# architecture -> the function name prefixes (logical `<prefix>-function`) it deploys
FUNCTIONS = {
    "lambda": {"predictor"},
    "lambda-ecs": {"lambda-ecs"},
    "stepfunctions-ecs": {
        "stepfunctions-ecs-api",
        "stepfunctions-ecs-run-ecs",
        "stepfunctions-ecs-check-job-status",
    },
    "stepfunctions-batch": {
        "stepfunctions-batch-api",
        "stepfunctions-batch-submit-batch-job",
        "stepfunctions-batch-check-batch-status",
        "stepfunctions-batch-trigger",
    },
}
STATE_MACHINES = {"stepfunctions-ecs", "stepfunctions-batch"}


@pytest.fixture(scope="module")
def runs(base_config: dict[str, str]) -> dict[str, StackRun]:
    return {
        arch: run_stack({**base_config, "architecture": arch, "alarmEmail": "ops@example.com"})
        for arch in FUNCTIONS
    }


def alarms(run: StackRun) -> dict[str, dict[str, Any]]:
    return {r.name.removeprefix("monitoring-"): r.inputs for r in run.of_type(ALARM)}


def body(run: StackRun) -> dict[str, Any]:
    return json.loads(run.one(DASHBOARD).inputs["dashboardBody"])


def function_name(run: StackRun, prefix: str) -> str:
    return str(run.named(f"{prefix}-function").outputs["name"])


def expected_alarm_keys(arch: str) -> set[str]:
    keys = {"api-5xx-rate", "api-latency-p99"}
    for prefix in FUNCTIONS[arch]:
        keys |= {f"{prefix}-errors", f"{prefix}-throttles"}
    if arch != "lambda":
        keys.add("jobs-failed")
    if arch in STATE_MACHINES:
        keys |= {f"{arch}-executions-failed", f"{arch}-executions-timed-out"}
    if arch == "stepfunctions-batch":
        keys.add("batch-jobs-failed")
    return keys


# --- what runtime/ emits, read from its source ----------------------------------------------------


def emitted_metric_names() -> set[str]:
    """Every metric name runtime/ passes to an emitting call: ``metric(metrics, NAME, ...)``,
    ``metrics.count(NAME)``, and the definitions of a ``MetricRecord(metrics, (NAME, unit)...)``;
    NAME a string or a ``contract.METRIC_*`` constant."""

    def name_of(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "contract"
            and node.attr.startswith("METRIC_")
        ):
            return str(getattr(contract, node.attr))
        return None

    names: set[str] = set()
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == "metric" and len(node.args) >= 2:
                candidates = [node.args[1]]
            elif (
                called == "count"
                and isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                # runtime/metrics.py's count (job_metrics where a handler's Metrics is metrics)
                and func.value.id in ("metrics", "job_metrics")
                and node.args
            ):
                candidates = [node.args[0]]
            elif called == "MetricRecord":
                candidates = [a.elts[0] for a in node.args[1:] if isinstance(a, ast.Tuple)]
            else:
                continue
            names |= {n for n in map(name_of, candidates) if n is not None}
    return names


def test_the_source_reader_finds_what_the_predictor_and_the_job_store_emit() -> None:
    names = emitted_metric_names()
    # spelled out once here, so that the reader itself is checked
    assert {"PredictLatency", "PredictRows", "JobsFailed", "JobsSubmitted"} <= names


# --- per architecture -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_alarms_exist_for_what_the_architecture_deployed_only(
    runs: dict[str, StackRun], arch: str
) -> None:
    assert set(alarms(runs[arch])) == expected_alarm_keys(arch)


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_alarm_dimensions_name_the_deployed_resources(runs: dict[str, StackRun], arch: str) -> None:
    run = runs[arch]
    found = alarms(run)
    api_name = run.one(REST_API).outputs["name"]
    for key in ("api-5xx-rate", "api-latency-p99"):
        assert found[key]["namespace"] == "AWS/ApiGateway"
        assert found[key]["dimensions"] == {"ApiName": api_name, "Stage": contract.STAGE_NAME}
    assert (found["api-5xx-rate"]["metricName"], found["api-5xx-rate"]["statistic"]) == (
        "5XXError",
        "Average",
    )
    latency = found["api-latency-p99"]
    assert (latency["metricName"], latency["extendedStatistic"]) == ("Latency", "p99")
    for prefix in FUNCTIONS[arch]:
        for kind, metric in (("errors", "Errors"), ("throttles", "Throttles")):
            alarm = found[f"{prefix}-{kind}"]
            assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Lambda", metric)
            assert alarm["dimensions"] == {"FunctionName": function_name(run, prefix)}
            assert (alarm["statistic"], alarm["threshold"]) == ("Sum", 1)
    if arch in STATE_MACHINES:
        machine = run.named(f"{arch}-state-machine")
        for key, metric in (("failed", "ExecutionsFailed"), ("timed-out", "ExecutionsTimedOut")):
            alarm = found[f"{arch}-executions-{key}"]
            assert (alarm["namespace"], alarm["metricName"]) == ("AWS/States", metric)
            assert alarm["dimensions"] == {"StateMachineArn": machine.outputs["arn"]}


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_runtime_metric_alarms_read_metrics_the_runtime_emits(
    runs: dict[str, StackRun], arch: str
) -> None:
    emitted = emitted_metric_names()
    for key, alarm in alarms(runs[arch]).items():
        if alarm.get("namespace") == contract.METRICS_NAMESPACE:
            assert alarm["metricName"] in emitted, key
            assert alarm["dimensions"] == {"service": contract.SERVICE_NAME}, key


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_every_alarm_notifies_the_topic_and_the_email_is_subscribed(
    runs: dict[str, StackRun], arch: str
) -> None:
    run = runs[arch]
    topic = run.one(TOPIC)
    assert topic.parent == run.named("monitoring").urn
    for key, alarm in alarms(run).items():
        assert alarm["alarmActions"] == [topic.outputs["arn"]], key
        assert alarm["okActions"] == [topic.outputs["arn"]], key
        assert alarm["treatMissingData"] == "notBreaching", key
    subscription = run.one(SUBSCRIPTION)
    assert subscription.inputs["topic"] == topic.outputs["arn"]
    assert (subscription.inputs["protocol"], subscription.inputs["endpoint"]) == (
        "email",
        "ops@example.com",
    )


def test_the_topic_policy_lets_this_accounts_alarms_publish_and_nothing_more(
    runs: dict[str, StackRun],
) -> None:
    run = runs["lambda"]
    topic_arn = run.one(TOPIC).outputs["arn"]
    policy = run.one(TOPIC_POLICY)
    assert policy.inputs["arn"] == topic_arn
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AlarmsOfThisAccountPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_monitoring_needs_no_role(runs: dict[str, StackRun], arch: str) -> None:
    run = runs[arch]
    component = run.named("monitoring")
    kinds = {r.type for r in run.children(component)}
    assert kinds <= {ALARM, DASHBOARD, TOPIC, TOPIC_POLICY, SUBSCRIPTION}


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_dashboard_widgets_watch_the_deployed_resources_only(
    runs: dict[str, StackRun], arch: str
) -> None:
    run = runs[arch]
    document = body(run)
    api_name = run.one(REST_API).outputs["name"]
    function_names = {function_name(run, p) for p in FUNCTIONS[arch]}
    machines = {run.named(f"{a}-state-machine").outputs["arn"] for a in STATE_MACHINES & {arch}}
    seen_functions, seen_machines = set(), set()
    namespaces = set()
    for widget in document["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if not isinstance(row[0], str):
                continue
            namespace, _name, *rest = row
            namespaces.add(namespace)
            dims = dict(zip(rest[0::2], rest[1::2], strict=False))
            if namespace == "AWS/ApiGateway":
                assert dims == {"ApiName": api_name, "Stage": contract.STAGE_NAME}
            elif namespace == "AWS/Lambda":
                seen_functions.add(dims["FunctionName"])
            elif namespace == "AWS/States":
                seen_machines.add(dims["StateMachineArn"])
            else:
                assert namespace == contract.METRICS_NAMESPACE
                assert dims["service"] == contract.SERVICE_NAME
    assert seen_functions == function_names
    assert seen_machines == machines
    assert ("AWS/States" in namespaces) == (arch in STATE_MACHINES)
    (logs,) = [w for w in document["widgets"] if w["type"] == "log"]
    groups = {run.named(f"{p}-logs").outputs["name"] for p in FUNCTIONS[arch]}
    assert all(f"SOURCE '{g}'" in logs["properties"]["query"] for g in groups)
    assert logs["properties"]["query"].count("SOURCE ") == len(groups)
    titles = {w["properties"]["title"] for w in document["widgets"]}
    assert any("latency" in t.lower() for t in titles) == (arch == "lambda")
    assert ("Jobs by status" in titles) == (arch != "lambda")


@pytest.mark.parametrize("arch", list(FUNCTIONS))
def test_dashboard_reads_only_metrics_the_runtime_emits(
    runs: dict[str, StackRun], arch: str
) -> None:
    emitted = emitted_metric_names()
    referenced = monitoring.referenced_metrics(body(runs[arch]))
    ours = {name for namespace, name in referenced if namespace == contract.METRICS_NAMESPACE}
    assert ours, "the dashboard shows the runtime's own metrics"
    assert ours <= emitted, ours - emitted


def test_one_dashboard_per_stack_and_its_url_is_an_output(base_config: dict[str, str]) -> None:
    run = run_stack(base_config, stack="prod.eu")
    dashboard = run.one(DASHBOARD)
    assert dashboard.inputs["dashboardName"] == "mlserve-prod-eu"
    assert run.exports["dashboardUrl"] == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
        "#dashboards:name=mlserve-prod-eu"
    )
    assert run.exports["alarmTopicArn"] == run.one(TOPIC).outputs["arn"]


# --- thresholds and switches from config ----------------------------------------------------------


def test_thresholds_come_from_config(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "latencyP99ThresholdMs": 750, "api5xxRatePercent": 5})
    found = alarms(run)
    assert found["api-latency-p99"]["threshold"] == 750
    assert found["api-5xx-rate"]["threshold"] == 0.05


@pytest.mark.parametrize(
    ("architecture", "sync_wait", "expected"),
    [
        ("lambda", 25, 2000),
        ("stepfunctions-ecs", 25, 2000),  # answers 202 at once
        ("lambda-ecs", 25, 27000),  # waits up to syncWaitSeconds for the task by design
        ("lambda-ecs", 5, 7000),
        ("lambda,lambda-ecs", 25, 2000),  # POST /predict is the first architecture's
    ],
)
def test_the_default_latency_threshold_follows_who_serves_predict(
    base_config: dict[str, str], architecture: str, sync_wait: int, expected: int
) -> None:
    run = run_stack({**base_config, "architecture": architecture, "syncWaitSeconds": sync_wait})
    assert alarms(run)["api-latency-p99"]["threshold"] == expected


def test_without_alarms_there_is_no_topic_but_a_dashboard(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "alarms": "false"})
    assert run.of_type(ALARM) == [] and run.of_type(TOPIC) == []
    assert run.of_type(SUBSCRIPTION) == []
    assert "alarmTopicArn" not in run.exports
    assert run.one(DASHBOARD)
    assert "dashboardUrl" in run.exports


def test_without_an_email_nothing_is_subscribed(base_config: dict[str, str]) -> None:
    run = run_stack(base_config)
    assert run.of_type(SUBSCRIPTION) == [] and run.one(TOPIC)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"alarmEmail": "not-an-email"}, "mlserve:alarmEmail: 'not-an-email' is not an email"),
        (
            {"alarmEmail": "ops@example.com", "alarms": "false"},
            "mlserve:alarmEmail: is set but mlserve:alarms is false",
        ),
        ({"latencyP99ThresholdMs": 40000}, "mlserve:latencyP99ThresholdMs: 40000 is out of range"),
        ({"api5xxRatePercent": 0}, "mlserve:api5xxRatePercent: 0 is out of range"),
    ],
)
def test_bad_monitoring_settings_are_refused(
    base_config: dict[str, str], config: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        run_stack({**base_config, **config})


# --- the pure builders: versions (a canary) -------------------------------------------------------


def monitored(versions: tuple[str, ...]) -> Monitored:
    return Monitored(
        api_name="api-1",
        stage="v1",
        functions={"predictor": "predictor-fn"},
        log_groups=["predictor-logs"],
        realtime=True,
        versions=versions,
    )


def test_one_version_has_no_canary_alarm() -> None:
    keys = {spec.key for spec in monitoring.alarm_specs(monitored(("v1",)), Thresholds())}
    assert "canary-error-rate" not in keys


def test_a_canary_alarms_when_its_error_rate_exceeds_the_stable_versions() -> None:
    specs = {s.key: s.args for s in monitoring.alarm_specs(monitored(("v1", "v2")), Thresholds())}
    canary = specs["canary-error-rate"]
    assert canary["comparison_operator"] == "GreaterThanThreshold"
    assert canary["threshold"] == monitoring.CANARY_ERROR_RATE_MARGIN
    queries = {q["id"]: q for q in canary["metric_queries"]}
    (returned,) = [q for q in queries.values() if q["return_data"]]
    assert returned["expression"] == "ratec-rates"
    for tag, version in (("s", "v1"), ("c", "v2")):
        errors, successes = queries[f"e{tag}"]["metric"], queries[f"r{tag}"]["metric"]
        assert (errors["metric_name"], errors["stat"]) == ("PredictErrors", "Sum")
        assert (successes["metric_name"], successes["stat"]) == ("PredictLatency", "SampleCount")
        for metric in (errors, successes):
            assert metric["namespace"] == contract.METRICS_NAMESPACE
            assert metric["dimensions"] == {"service": "mlserve", "model_version": version}
            assert metric["metric_name"] in emitted_metric_names()
    # rate = errors / (errors + successful predictions), per version
    assert queries["ratec"]["expression"] == "FILL(ec,0)/(FILL(ec,0)+FILL(rc,0))"


def test_a_canary_of_jobs_alarms_when_its_failed_share_exceeds_the_stable_versions() -> None:
    jobs = Monitored(api_name="api-1", stage="v1", jobs=True, versions=("v1", "v2"))
    assert "canary-jobs-failed-rate" not in {
        s.key for s in monitoring.alarm_specs(jobs, Thresholds())
    }
    both = Monitored(
        api_name="api-1", stage="v1", jobs=True, versions=("v1", "v2"), job_versions=("v1", "v2")
    )
    specs = {s.key: s.args for s in monitoring.alarm_specs(both, Thresholds())}
    assert "canary-error-rate" not in specs  # no predictor: its alarm would read nothing
    alarm = specs["canary-jobs-failed-rate"]
    assert alarm["threshold"] == monitoring.CANARY_ERROR_RATE_MARGIN
    queries = {q["id"]: q for q in alarm["metric_queries"]}
    (returned,) = [q for q in queries.values() if q["return_data"]]
    assert returned["expression"] == "ratec-rates"
    for tag, version in (("s", "v1"), ("c", "v2")):
        failed, succeeded = queries[f"e{tag}"]["metric"], queries[f"r{tag}"]["metric"]
        assert (failed["metric_name"], failed["stat"]) == ("JobsFailed", "Sum")
        assert (succeeded["metric_name"], succeeded["stat"]) == ("JobsSucceeded", "Sum")
        for metric in (failed, succeeded):
            assert metric["dimensions"] == {"service": "mlserve", "model_version": version}
            assert metric["metric_name"] in emitted_metric_names()
    assert queries["rates"]["expression"] == "FILL(es,0)/(FILL(es,0)+FILL(rs,0))"


def test_the_dashboard_shows_a_server_error_rate_per_version_with_two_versions() -> None:
    one = monitoring.dashboard_body(monitored(("v1",)), REGION)
    two = monitoring.dashboard_body(monitored(("v1", "v2")), REGION)
    assert len(two["widgets"]) == len(one["widgets"]) + 1
    (widget,) = [w for w in two["widgets"] if "per model version (%)" in w["properties"]["title"]]
    labels = [
        row[0]["label"] for row in widget["properties"]["metrics"] if isinstance(row[0], dict)
    ]
    assert labels == ["v1 server error rate (%)", "v2 server error rate (%)"]
    versions = {
        row[row.index("model_version") + 1]
        for row in widget["properties"]["metrics"]
        if isinstance(row[0], str)
    }
    assert versions == {"v1", "v2"}


def test_latency_is_searched_per_version_whatever_the_dimensions() -> None:
    document = monitoring.dashboard_body(monitored(("v1",)), REGION)
    (widget,) = [w for w in document["widgets"] if "latency" in w["properties"]["title"].lower()]
    expressions = [row[0]["expression"] for row in widget["properties"]["metrics"]]
    # a metric schema matches one dimension set: the service alone (one version, today) and the
    # service with model_version (a line per version)
    assert expressions == [
        f'SEARCH(\'{{mlserve,{schema}}} MetricName="PredictLatency" service="mlserve"\', '
        f"'{stat}', 300)"
        for stat in ("p50", "p99")
        for schema in ("service", "service,model_version")
    ]


def test_the_canary_alarm_is_declared_with_its_metric_queries() -> None:
    """Two versions (a canary) through the component, as the provider receives it."""
    from components.cloudwatch import Monitoring, MonitoringArgs
    from tests.infra.conftest import run_program

    monitored_two = Monitored(api_name="api-1", stage="v1", realtime=True, versions=("v1", "v2"))
    run = run_program(
        lambda: Monitoring("monitoring", MonitoringArgs(monitored=monitored_two, region=REGION))
    )
    alarm = run.named("monitoring-canary-error-rate").inputs
    assert "metricName" not in alarm and alarm["threshold"] == monitoring.CANARY_ERROR_RATE_MARGIN
    queries = {q["id"]: q for q in alarm["metricQueries"]}
    assert queries["excess"] == {
        "id": "excess",
        "expression": "ratec-rates",
        "label": "v2 error rate minus v1's",
        "returnData": True,
    }
    assert queries["ec"]["metric"] == {
        "namespace": contract.METRICS_NAMESPACE,
        "metricName": contract.METRIC_PREDICT_ERRORS,
        "dimensions": {"service": contract.SERVICE_NAME, "model_version": "v2"},
        "stat": "Sum",
        "period": monitoring.PERIOD_SECONDS,
    }
    assert queries["rs"]["metric"]["dimensions"]["model_version"] == "v1"

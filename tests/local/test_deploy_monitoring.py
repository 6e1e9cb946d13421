"""The local target deploys the alarms, the alarm topic and the dashboard into moto.

Read back from moto (DescribeAlarms, GetDashboard, GetTopicAttributes, ListSubscriptionsByTopic)
and compared with what the program declares: the deployed functions, state machine and API by
the names moto gave them, thresholds from the configuration, the topic policy of
components/policies.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components import monitoring, policies
from mlserve.local.aws import MotoServer
from mlserve.local.deploy import Deployment, deploy
from mlserve.local.deploy.cloudwatch import metric_alarm
from mlserve.local.deploy.mapping import Context
from runtime import contract
from tests.infra.conftest import train_tiny_model

EMAIL = "ops@example.com"


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with MotoServer(set_environment=False) as running:
        yield running


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("local-monitoring-model"))


@pytest.fixture(scope="module")
def batch_stack(server: MotoServer, model: Path) -> Deployment:
    return deploy(
        "stepfunctions-batch",
        {"modelPath": str(model), "alarmEmail": EMAIL, "latencyP99ThresholdMs": "1500"},
        server.endpoint_url,
    )


def alarms(d: Deployment) -> dict[str, dict[str, Any]]:
    described = d.client("cloudwatch").describe_alarms(MaxRecords=100)["MetricAlarms"]
    names = {r.outputs["name"]: r.name.removeprefix("monitoring-") for r in d.of_type(
        "aws:cloudwatch/metricAlarm:MetricAlarm"
    )}  # fmt: skip
    return {names[a["AlarmName"]]: a for a in described if a["AlarmName"] in names}


def dims(alarm: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def test_alarms_are_in_moto_with_the_declared_metrics_and_thresholds(
    batch_stack: Deployment,
) -> None:
    d = batch_stack
    found = alarms(d)
    functions = {f["FunctionName"] for f in d.functions().values()}
    watched = {dims(a)["FunctionName"] for a in found.values() if a["Namespace"] == "AWS/Lambda"}
    assert watched == functions  # every deployed function, by the name moto gave it
    (machine,) = d.state_machines().values()
    failed = found["stepfunctions-batch-executions-failed"]
    assert dims(failed) == {"StateMachineArn": machine["stateMachineArn"]}
    assert found["batch-jobs-failed"]["MetricName"] == contract.METRIC_BATCH_JOBS_FAILED
    assert found["jobs-failed"]["MetricName"] == contract.METRIC_JOBS_FAILED
    latency = found["api-latency-p99"]
    assert (latency["ExtendedStatistic"], latency["Threshold"]) == ("p99", 1500.0)
    api = d.client("apigateway").get_rest_api(restApiId=d.rest_api_id)
    assert dims(latency) == {"ApiName": api["name"], "Stage": contract.STAGE_NAME}
    assert "predictor-errors" not in found  # no lambda architecture here
    topic = d.outputs["alarmTopicArn"]
    for key, alarm in found.items():
        assert (alarm["AlarmActions"], alarm["OKActions"]) == ([topic], [topic]), key


def test_the_topic_has_its_policy_and_the_email_subscription(batch_stack: Deployment) -> None:
    sns = batch_stack.client("sns")
    topic = batch_stack.outputs["alarmTopicArn"]
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert json.loads(attributes["Policy"]) == policies.alarm_topic_policy(topic)
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", EMAIL)


def test_the_dashboard_is_in_moto(batch_stack: Deployment) -> None:
    d = batch_stack
    name = f"mlserve-{d.stack}"
    assert d.outputs["dashboardUrl"].endswith(f"#dashboards:name={name}")
    body = json.loads(d.client("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"])
    referenced = monitoring.referenced_metrics(body)
    assert (contract.METRICS_NAMESPACE, contract.METRIC_BATCH_JOBS_FAILED) in referenced
    (machine,) = d.state_machines().values()
    rows = [row for w in body["widgets"] for row in w["properties"].get("metrics", [])]
    assert any(machine["stateMachineArn"] in row for row in rows)


def test_a_metric_math_alarm_is_created_with_its_queries(server: MotoServer) -> None:
    """The canary alarm's shape (two versions: issue 17's canary), through the mapper."""
    ctx = Context(server.endpoint_url, "us-east-1", "test", "mlserve")
    m = monitoring.Monitored(api_name="api", stage="v1", realtime=True, versions=("v1", "v2"))
    (spec,) = [s for s in monitoring.alarm_specs(m, monitoring.Thresholds()) if "canary" in s.key]
    inputs = {_camel(k): v for k, v in spec.args.items()}
    inputs["metricQueries"] = [
        {_camel(k): ({_camel(mk): mv for mk, mv in v.items()} if k == "metric" else v)
         for k, v in q.items()}
        for q in spec.args["metric_queries"]
    ]  # fmt: skip
    name, outputs = metric_alarm(ctx, "canary", inputs)
    (alarm,) = ctx.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert outputs["arn"] == alarm["AlarmArn"]
    returned = [q for q in alarm["Metrics"] if q["ReturnData"]]
    assert [q["Expression"] for q in returned] == ["ratec-rates"]
    stats = {q["Id"]: q["MetricStat"]["Stat"] for q in alarm["Metrics"] if "MetricStat" in q}
    assert stats == {"es": "Sum", "rs": "SampleCount", "ec": "Sum", "rc": "SampleCount"}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)

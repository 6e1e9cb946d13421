"""CloudWatch: metric alarms and dashboards (moto stores them; nothing evaluates an alarm).

PutMetricAlarm and PutDashboard with the provider's inputs, read back with DescribeAlarms and
GetDashboard so the outputs are what moto holds. Log groups are in :mod:`.logs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, compact, integer, physical


def _dimensions(dimensions: Mapping[str, Any] | None) -> list[dict[str, str]] | None:
    if not dimensions:
        return None
    return [{"Name": str(k), "Value": str(v)} for k, v in dimensions.items()]


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """One ``metricQueries`` entry as PutMetricAlarm's ``Metrics`` item."""
    item: dict[str, Any] = compact(
        {
            "Id": query["id"],
            "Expression": query.get("expression"),
            "Label": query.get("label"),
            "ReturnData": bool(query.get("returnData", False)),
        }
    )
    metric = query.get("metric")
    if metric:
        item["MetricStat"] = {
            "Metric": compact(
                {
                    "Namespace": metric.get("namespace"),
                    "MetricName": metric["metricName"],
                    "Dimensions": _dimensions(metric.get("dimensions")),
                }
            ),
            "Period": integer(metric["period"]),
            "Stat": metric["stat"],
        }
    return item


def metric_alarm(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    alarm = physical(inputs, "name", name, max_length=255)
    period = inputs.get("period")
    queries = inputs.get("metricQueries") or []
    ctx.client("cloudwatch").put_metric_alarm(
        **compact(
            {
                "AlarmName": alarm,
                "AlarmDescription": inputs.get("alarmDescription"),
                "ActionsEnabled": inputs.get("actionsEnabled", True),
                "AlarmActions": list(inputs.get("alarmActions") or []) or None,
                "OKActions": list(inputs.get("okActions") or []) or None,
                "Namespace": inputs.get("namespace"),
                "MetricName": inputs.get("metricName"),
                "Dimensions": _dimensions(inputs.get("dimensions")),
                "Statistic": inputs.get("statistic"),
                "ExtendedStatistic": inputs.get("extendedStatistic"),
                "Period": integer(period) if period is not None else None,
                "EvaluationPeriods": integer(inputs["evaluationPeriods"]),
                "DatapointsToAlarm": (
                    integer(inputs["datapointsToAlarm"])
                    if inputs.get("datapointsToAlarm") is not None
                    else None
                ),
                "Threshold": float(inputs["threshold"]),
                "ComparisonOperator": inputs["comparisonOperator"],
                "TreatMissingData": inputs.get("treatMissingData"),
                "Metrics": [_metric_query(q) for q in queries] or None,
            }
        )
    )
    (described,) = ctx.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    return alarm, {"name": alarm, "arn": described["AlarmArn"]}


def dashboard(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    dashboard_name = str(inputs["dashboardName"])
    cloudwatch = ctx.client("cloudwatch")
    cloudwatch.put_dashboard(
        DashboardName=dashboard_name, DashboardBody=str(inputs["dashboardBody"])
    )
    arn = cloudwatch.get_dashboard(DashboardName=dashboard_name)["DashboardArn"]
    return dashboard_name, {"dashboardName": dashboard_name, "dashboardArn": arn}


RESOURCES: dict[str, Create] = {
    "aws:cloudwatch/metricAlarm:MetricAlarm": metric_alarm,
    "aws:cloudwatch/dashboard:Dashboard": dashboard,
}
INVOKES: dict[str, Invoke] = {}

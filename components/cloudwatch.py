"""Monitoring: the stack's CloudWatch alarms, their SNS topic and its dashboard.

The alarms and the dashboard document come from the pure builders of
:mod:`components.monitoring`, given what the program deployed (:class:`Monitored`: the API's
name and stage, the functions, the state machines, their log groups). Every alarm's actions
(ALARM and OK) point at one SNS topic; with ``alarm_email`` an email subscription is added to it
(AWS sends a confirmation message first). The topic's policy lets CloudWatch alarms of the
account publish, and nothing else (components/policies.py ``alarm_topic_policy``). No role is
needed: CloudWatch evaluates alarms and renders dashboards itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from components import monitoring, policies
from components.monitoring import Monitored, Thresholds
from components.settings import EMAIL_PATTERN

DASHBOARD_NAME_MAX: Final = 255


def dashboard_name(stack: str) -> str:
    """``mlserve-<stack>`` in CloudWatch's dashboard alphabet [A-Za-z0-9_-], one per stack."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"mlserve-{stack}")[:DASHBOARD_NAME_MAX]


def dashboard_url(region: str, name: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards:name={name}"
    )


@dataclass(frozen=True)
class MonitoringArgs:
    monitored: Monitored = field(compare=False)
    thresholds: Thresholds = field(default_factory=Thresholds)
    alarms: bool = True
    alarm_email: str | None = None
    region: pulumi.Input[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.alarm_email is not None and not EMAIL_PATTERN.fullmatch(self.alarm_email):
            raise ValueError(f"MonitoringArgs: alarm_email {self.alarm_email!r} is not an email")
        if self.alarm_email is not None and not self.alarms:
            raise ValueError("MonitoringArgs: alarm_email needs alarms")


class Monitoring(pulumi.ComponentResource):
    """The alarm topic (+ email subscription), one alarm per spec, and the dashboard."""

    dashboard_name: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]
    topic_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlserve:index:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region: pulumi.Input[str] = (
            args.region
            if args.region is not None
            else aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        )
        m = args.monitored

        self.topic_arn = None
        if args.alarms:
            topic = aws.sns.Topic(f"{name}-alarms", opts=child)
            aws.sns.TopicPolicy(
                f"{name}-alarms-policy",
                arn=topic.arn,
                policy=topic.arn.apply(lambda arn: json.dumps(policies.alarm_topic_policy(arn))),
                opts=child,
            )
            if args.alarm_email is not None:
                aws.sns.TopicSubscription(
                    f"{name}-alarm-email",
                    topic=topic.arn,
                    protocol="email",
                    endpoint=args.alarm_email,
                    opts=child,
                )
            for spec in monitoring.alarm_specs(m, args.thresholds):
                aws.cloudwatch.MetricAlarm(
                    f"{name}-{spec.key}",
                    alarm_actions=[topic.arn],
                    ok_actions=[topic.arn],
                    **spec.args,
                    opts=child,
                )
            self.topic_arn = topic.arn

        def render(values: list[Any]) -> str:
            resolved_region, api_name, *rest = values
            n_functions = len(m.functions)
            n_machines = len(m.state_machines)
            function_names = rest[:n_functions]
            machine_arns = rest[n_functions : n_functions + n_machines]
            log_groups = rest[n_functions + n_machines :]
            resolved = Monitored(
                api_name=api_name,
                stage=m.stage,
                functions=dict(zip(m.functions, function_names, strict=True)),
                state_machines=dict(zip(m.state_machines, machine_arns, strict=True)),
                log_groups=tuple(log_groups),
                realtime=m.realtime,
                jobs=m.jobs,
                batch=m.batch,
                versions=m.versions,
            )
            return json.dumps(monitoring.dashboard_body(resolved, resolved_region))

        body = pulumi.Output.all(
            region,
            m.api_name,
            *m.functions.values(),
            *m.state_machines.values(),
            *m.log_groups,
        ).apply(render)
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=dashboard_name(pulumi.get_stack()),
            dashboard_body=body,
            opts=child,
        )
        self.dashboard_name = dashboard.dashboard_name
        self.dashboard_url = pulumi.Output.all(region, dashboard.dashboard_name).apply(
            lambda v: dashboard_url(v[0], v[1])
        )
        self.register_outputs(
            {
                "dashboard_name": self.dashboard_name,
                "dashboard_url": self.dashboard_url,
                "topic_arn": self.topic_arn,
            }
        )

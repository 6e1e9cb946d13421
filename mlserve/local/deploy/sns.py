"""SNS: topics, their policies and subscriptions (moto stores them; no email is sent)."""

from __future__ import annotations

from typing import Any

from mlserve.local.deploy.mapping import Context, Create, Invoke, physical


def topic(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    topic_name = physical(inputs, "name", name, max_length=256)
    arn = ctx.client("sns").create_topic(Name=topic_name)["TopicArn"]
    return arn, {"name": topic_name, "arn": arn}


def topic_policy(ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    arn = str(inputs["arn"])
    ctx.client("sns").set_topic_attributes(
        TopicArn=arn, AttributeName="Policy", AttributeValue=str(inputs["policy"])
    )
    return arn, {"arn": arn}


def topic_subscription(
    ctx: Context, name: str, inputs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    arn = ctx.client("sns").subscribe(
        TopicArn=str(inputs["topic"]),
        Protocol=str(inputs["protocol"]),
        Endpoint=str(inputs["endpoint"]),
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return arn, {"arn": arn}


RESOURCES: dict[str, Create] = {
    "aws:sns/topic:Topic": topic,
    "aws:sns/topicPolicy:TopicPolicy": topic_policy,
    "aws:sns/topicSubscription:TopicSubscription": topic_subscription,
}
INVOKES: dict[str, Invoke] = {}

"""The real Pulumi program (__main__.py) under Pulumi's unit-test mocks, with a fake provider.

``run_stack(config)`` runs the whole program once, without an engine, and returns a
:class:`StackRun`: every resource registration (components included) with its type, logical
name, URN, parent URN, inputs, mocked outputs and resource options, plus the resolved stack
outputs. The runner itself (monitor, records, re-runnable driver) is
:mod:`mlserve.local.deploy.runner`, shared with the local deployment engine; this file adds
only the fake provider: plausible, stable ids and ARNs for every resource and invoke.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pytest

from mlserve.local.deploy import runner
from mlserve.local.deploy.runner import REPO, STACK_TYPE, Registered, StackRun

__all__ = ["REPO", "STACK_TYPE", "Registered", "StackRun", "run_program", "run_stack"]

REGION = "us-east-1"
ACCOUNT = "123456789012"
ECR_REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
# The mocked default VPC and its default subnets (getVpc / getSubnets).
DEFAULT_VPC_ID = "vpc-0d3fa017a11c0ffee"
DEFAULT_SUBNET_IDS = ("subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002")
# The VPC getSubnet reports for any configured subnet.
CONFIGURED_VPC_ID = "vpc-0123456789abcdef0"


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated modules when they are loaded; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")


# --- mocked provider ------------------------------------------------------------------------------
def physical_name(logical: str) -> str:
    """An auto-name like Pulumi's: logical name + random-looking (here: stable) suffix."""
    return f"{logical}-{hashlib.sha256(logical.encode()).hexdigest()[:7]}"


def lambda_arn(function_name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"


def invoke_arn(function_arn: str) -> str:
    return (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )


def mock_outputs(typ: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Plausible (id, outputs) for a resource: its inputs plus what AWS would compute."""
    out: dict[str, Any] = dict(inputs)
    phys = str(inputs.get("name") or physical_name(name))
    if not inputs.get("name") and inputs.get("namePrefix"):  # the provider: prefix + unique id
        phys = f"{inputs['namePrefix']}{hashlib.sha256(name.encode()).hexdigest()[:26]}"
    rid = phys
    if typ == "aws:s3/bucket:Bucket":
        bucket = str(inputs.get("bucket") or phys)
        out |= {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        rid = bucket
    elif typ == "aws:s3/bucketObjectv2:BucketObjectv2":
        out["arn"] = f"arn:aws:s3:::{inputs['bucket']}/{inputs['key']}"
        rid = str(inputs["key"])
    elif typ == "aws:dynamodb/table:Table":
        out |= {"name": phys, "arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{phys}"}
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        out |= {"name": phys, "arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{phys}"}
    elif typ == "aws:iam/role:Role":
        out |= {"name": phys, "arn": f"arn:aws:iam::{ACCOUNT}:role/{phys}"}
    elif typ == "aws:lambda/function:Function":
        arn = lambda_arn(phys)
        version = "1" if inputs.get("publish") else "$LATEST"
        out |= {
            "name": phys,
            "arn": arn,
            "invokeArn": invoke_arn(arn),
            "version": version,
            "qualifiedArn": f"{arn}:{version}",
            "qualifiedInvokeArn": invoke_arn(f"{arn}:{version}"),
        }
    elif typ == "aws:lambda/alias:Alias":
        arn = f"{lambda_arn(str(inputs['functionName']))}:{inputs['name']}"
        out |= {"arn": arn, "invokeArn": invoke_arn(arn)}
    elif typ == "aws:lambda/layerVersion:LayerVersion":
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{inputs['layerName']}"
        out |= {"layerArn": arn, "arn": f"{arn}:1", "version": "1"}
    elif typ == "aws:apigateway/restApi:RestApi":
        rid = hashlib.sha256(name.encode()).hexdigest()[:10]
        out |= {
            "name": phys,
            "arn": f"arn:aws:apigateway:{REGION}::/restapis/{rid}",
            "executionArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{rid}",
            "rootResourceId": "root0",
        }
    elif typ == "aws:apigateway/stage:Stage":
        api_id, stage = inputs["restApi"], inputs["stageName"]
        out |= {
            "invokeUrl": f"https://{api_id}.execute-api.{REGION}.amazonaws.com/{stage}",
            "executionArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}",
        }
        rid = f"ags-{api_id}-{stage}"
    elif typ == "aws:apigateway/apiKey:ApiKey":
        out |= {"value": f"mock-key-{hashlib.sha256(name.encode()).hexdigest()[:20]}"}
    elif typ == "aws:ecr/repository:Repository":
        out |= {
            "name": phys,
            "arn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{phys}",
            "registryId": ACCOUNT,
            "repositoryUrl": f"{ECR_REGISTRY}/{phys}",
        }
    elif typ == "docker-build:index:Image":
        tag = str(inputs["tags"][0])
        digest = f"sha256:{hashlib.sha256(tag.encode()).hexdigest()}"
        out |= {"digest": digest, "ref": f"{tag}@{digest}", "contextHash": "0" * 64}
        rid = digest
    elif typ == "aws:ecs/cluster:Cluster":
        out |= {"name": phys, "arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{phys}"}
    elif typ == "aws:ecs/taskDefinition:TaskDefinition":
        family = str(inputs["family"])
        base = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}"
        out |= {"arn": f"{base}:1", "arnWithoutRevision": base, "revision": 1}
        rid = family
    elif typ == "aws:batch/computeEnvironment:ComputeEnvironment":
        arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:compute-environment/{phys}"
        out |= {
            "name": phys,
            "arn": arn,
            "ecsClusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{phys}",
        }
        rid = arn
    elif typ == "aws:batch/jobQueue:JobQueue":
        arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{phys}"
        out |= {"name": phys, "arn": arn}
        rid = arn
    elif typ == "aws:batch/jobDefinition:JobDefinition":
        prefix = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{phys}"
        out |= {"name": phys, "arn": f"{prefix}:1", "arnPrefix": prefix, "revision": 1}
        rid = f"{prefix}:1"
    elif typ == "aws:sfn/stateMachine:StateMachine":
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{phys}"
        out |= {"name": phys, "arn": arn, "status": "ACTIVE"}
        rid = arn
    elif typ == "aws:ec2/securityGroup:SecurityGroup":
        rid = f"sg-{hashlib.sha256(name.encode()).hexdigest()[:17]}"
        out |= {"arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/{rid}", "name": phys}
    elif typ == "aws:sns/topic:Topic":
        out |= {"name": phys, "arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{phys}"}
        rid = out["arn"]
    elif typ == "aws:sns/topicSubscription:TopicSubscription":
        rid = f"{inputs['topic']}:{hashlib.sha256(name.encode()).hexdigest()[:36]}"
        out |= {"arn": rid}
    elif typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        out |= {"name": phys, "arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{phys}"}
    elif typ == "aws:cloudwatch/dashboard:Dashboard":
        rid = str(inputs["dashboardName"])
        out |= {"dashboardArn": f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{rid}"}
    else:
        out.setdefault("arn", f"arn:aws:mock:{REGION}:{ACCOUNT}:{typ.rsplit(':', 1)[-1]}/{phys}")
    return f"{rid}", out


class FakeProvider(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        if not args.custom:  # a ComponentResource: no provider, no outputs of its own
            return "", {}
        return mock_outputs(args.typ, args.name, args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:  # type: ignore[override]
        # A bare dict: the mock monitor reads a tuple's second item as a list of check failures.
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        if args.token == "aws:ec2/getVpc:getVpc":
            return {
                "id": DEFAULT_VPC_ID,
                "default": True,
                "cidrBlock": "172.31.0.0/16",
                "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{DEFAULT_VPC_ID}",
            }
        if args.token == "aws:ec2/getSubnets:getSubnets":
            return {"id": REGION, "ids": list(DEFAULT_SUBNET_IDS)}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            subnet = args.args.get("id", "subnet-unknown")
            return {
                "id": subnet,
                "vpcId": CONFIGURED_VPC_ID,
                "arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/{subnet}",
            }
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "id": REGION,
                "registryId": args.args.get("registryId", ACCOUNT),
                "userName": "AWS",
                "password": "mock-ecr-password",
                "authorizationToken": "QVdTOm1vY2stZWNyLXBhc3N3b3Jk",
                "proxyEndpoint": f"https://{ECR_REGISTRY}",
                "expiresAt": "2030-01-01T00:00:00Z",
            }
        return {}


# --- running the program --------------------------------------------------------------------------
def run_program(
    body: Callable[[], object],
    config: Mapping[str, Any] | None = None,
    *,
    stack: str = "test",
    preview: bool = False,
    runs: list[StackRun] | None = None,
) -> StackRun:
    """Run ``body`` as a Pulumi program under the fake provider; see :func:`runner.run_program`."""
    return runner.run_program(
        body, config, mocks=FakeProvider(), stack=stack, preview=preview, runs=runs
    )


def run_stack(
    config: Mapping[str, Any],
    *,
    stack: str = "test",
    preview: bool = False,
    runs: list[StackRun] | None = None,
) -> StackRun:
    """Run the real program, __main__.py, once with ``config``."""
    return runner.run_main(config, mocks=FakeProvider(), stack=stack, preview=preview, runs=runs)


# --- fixtures -------------------------------------------------------------------------------------
def train_tiny_model(out_dir: Path, feature_names: Iterable[str] = ("a", "b", "c", "d")) -> Path:
    """A tiny binary:logistic model saved as UBJSON, with no metadata.json beside it."""
    import numpy as np
    import xgboost as xgb

    names = list(feature_names)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, len(names)))
    y = (x[:, 0] > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "nthread": 1, "max_depth": 2},
        xgb.DMatrix(x, label=y, feature_names=names),
        num_boost_round=3,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.ubj"
    booster.save_model(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def base_config(tiny_model: Path) -> dict[str, str]:
    """Config every run starts from: the tiny model instead of models/example."""
    return {"aws:region": REGION, "modelPath": str(tiny_model)}


@pytest.fixture(scope="session")
def default_run(base_config: dict[str, str]) -> StackRun:
    """The program with every default (architecture lambda, api-key auth, protectData true)."""
    return run_stack(base_config)

"""The local target: the real program deployed into a fresh embedded moto, read back from moto.

Every expected value comes from the program's declarations (Pulumi.yaml defaults, the stack
files, components' constants) or from what the runtime needs (runtime.contract's environment
variable names and handlers, the AWS calls each handler makes), never from the engine.
"""

from __future__ import annotations

import fnmatch
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import requests
import yaml

from components import batch as batch_component
from components import ecs as ecs_component
from components import packaging, realtime
from components.packaging import VENV_LAYER_MARKER
from components.settings import SettingsError, default_lambda_runtime, load_project_schema
from mlserve.local.aws import MotoServer
from mlserve.local.deploy import (
    Deployment,
    DeploymentError,
    LocalProvider,
    StackConfigError,
    deploy,
    parse_overrides,
    stack_config,
    substitutions,
)
from mlserve.local.deploy.mapping import Context
from mlserve.local.deploy.runner import REPO
from runtime import contract
from runtime.modelfile import sha256_file
from tests.infra.conftest import train_tiny_model

DEFAULTS = {key: spec["default"] for key, spec in load_project_schema().items()}
# Lambda architecture name -> ECS/Batch cpuArchitecture (the same CPU).
CPU_ARCHITECTURE = {"arm64": "ARM64", "x86_64": "X86_64"}


def stack_file(stack: str) -> dict[str, Any]:
    config = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.removeprefix("mlserve:"): value for key, value in config.items()}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("local-deploy-model"))


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with MotoServer(set_environment=False) as running:
        yield running


class LocalDeployments:
    """Deployments of the program into the module's moto, one at a time.

    moto's state is per process (every server in it shares it), so one deployment is kept at a
    time: asking for another resets moto and deploys anew. Tests of one deployment are adjacent.
    """

    def __init__(self, model: Path, server: MotoServer) -> None:
        self.model = model
        self.server = server
        self.current: dict[tuple[str | None, tuple[tuple[str, str], ...]], Deployment] = {}

    def reset(self) -> None:
        self.current.clear()
        url = f"{self.server.endpoint_url}/moto-api/reset"
        requests.post(url, timeout=30).raise_for_status()

    def deploy(self, stack: str | None, **overrides: str) -> Deployment:
        return deploy(stack, {"modelPath": str(self.model), **overrides}, self.server.endpoint_url)

    def __call__(self, stack: str | None, **overrides: str) -> Deployment:
        key = (stack, tuple(sorted(overrides.items())))
        if key not in self.current:
            self.reset()
            self.current[key] = self.deploy(stack, **overrides)
        return self.current[key]


@pytest.fixture(scope="module")
def deployed(model: Path, server: MotoServer) -> LocalDeployments:
    """``deployed(stack, **overrides)``: that deployment, into a freshly reset moto."""
    return LocalDeployments(model, server)


# --- helpers --------------------------------------------------------------------------------------
def allows(document: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement of ``document`` grants ``action`` on ``resource``."""
    for statement in document["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement.get("Resource", [])
        resources = resources if isinstance(resources, list) else [resources]
        if (
            statement["Effect"] == "Allow"
            and any(fnmatch.fnmatchcase(action, a) for a in actions)
            and any(fnmatch.fnmatchcase(resource, r) for r in resources)
        ):
            return True
    return False


def assert_grants(deployment: Deployment, role_arn: str, grants: list[tuple[str, str]]) -> None:
    """Every (action, resource) of ``grants`` is allowed by the role's inline policies, as moto
    returns them (GetRolePolicy)."""
    role = role_arn.rsplit("/", 1)[-1]
    policies = deployment.role_policies()[role]
    merged = {"Statement": [s for doc in policies.values() for s in doc["Statement"]]}
    missing = [(a, r) for a, r in grants if not allows(merged, a, r)]
    assert not missing, f"role {role} cannot {missing}"


def env(function: dict[str, Any]) -> dict[str, str]:
    return dict(function["Environment"]["Variables"])


def model_object_arn(deployment: Deployment) -> str:
    bucket, _, key = deployment.outputs["modelUri"].removeprefix("s3://").partition("/")
    return f"arn:aws:s3:::{bucket}/{key}"


def table_arn(deployment: Deployment) -> str:
    table = deployment.client("dynamodb").describe_table(TableName=deployment.outputs["jobTable"])
    return str(table["Table"]["TableArn"])


# --- shared stores --------------------------------------------------------------------------------
def test_the_model_store_and_job_table_are_deployed_as_declared(
    deployed: LocalDeployments, model: Path
) -> None:
    d = deployed("lambda")
    s3 = d.client("s3")
    bucket = d.outputs["modelBucket"]
    key = d.outputs["modelUri"].removeprefix(f"s3://{bucket}/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == model.read_bytes()
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    table = d.client("dynamodb").describe_table(TableName=d.outputs["jobTable"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": contract.JOB_TABLE_HASH_KEY, "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # protectData (default true): retained on delete, as the program declares.
    assert d.one("aws:s3/bucket:Bucket").retain_on_delete is DEFAULTS["protectData"]


# --- lambda ---------------------------------------------------------------------------------------
def test_lambda_predictor_is_deployed_with_the_declared_configuration(
    deployed: LocalDeployments, model: Path
) -> None:
    d = deployed("lambda")
    predictor = d.function_by_handler(contract.HANDLER_PREDICT)
    assert predictor["Timeout"] == DEFAULTS["lambdaTimeout"]
    assert predictor["MemorySize"] == DEFAULTS["lambdaMemory"]
    assert predictor["Architectures"] == [DEFAULTS["lambdaArchitecture"]]
    assert predictor["Runtime"] == default_lambda_runtime()  # mlserve:lambdaRuntime empty
    variables = env(predictor)
    assert variables[contract.ENV_MODEL_URI] == d.outputs["modelUri"]
    assert variables[contract.ENV_MODEL_SHA256] == sha256_file(model)
    assert variables[contract.ENV_MAX_ROWS] == str(DEFAULTS["maxRows"])
    # The layer is published in moto from the venv marker (nothing downloaded).
    [layer_arn] = [layer["Arn"] for layer in predictor["Layers"]]
    layer_name = layer_arn.split(":")[-2]
    [layer] = d.client("lambda").list_layer_versions(LayerName=layer_name)["LayerVersions"]
    assert layer["LayerVersionArn"] == layer_arn
    assert layer["CompatibleArchitectures"] == [DEFAULTS["lambdaArchitecture"]]
    assert d.one("aws:lambda/layerVersion:LayerVersion").outputs["arn"] == layer_arn
    object_key = d.one("aws:s3/bucketObjectv2:BucketObjectv2", "lambda-package-layer-object")
    assert object_key.inputs["source"].path.endswith("layer.zip")
    assert zipfile.ZipFile(object_key.inputs["source"].path).namelist() == [VENV_LAYER_MARKER]
    assert_grants(d, predictor["Role"], [("s3:GetObject", model_object_arn(d))])


def test_the_rest_api_is_imported_from_the_deployed_openapi_body(
    deployed: LocalDeployments,
) -> None:
    d = deployed("lambda")
    body = d.openapi_body()
    predictor = d.function_by_handler(contract.HANDLER_PREDICT)
    resources = d.api_resources()
    for path, item in body["paths"].items():
        methods = {m.upper() for m in item if m != "parameters"}
        assert methods <= resources[path], path
        for method in methods:
            integration = item[method.lower()]["x-amazon-apigateway-integration"]
            assert predictor["FunctionArn"] in integration["uri"]
    client = d.client("apigateway")
    stage = client.get_stage(restApiId=d.rest_api_id, stageName=contract.STAGE_NAME)
    settings = stage["methodSettings"]["*/*"]
    assert settings["throttlingRateLimit"] == DEFAULTS["throttleRate"]
    assert settings["throttlingBurstLimit"] == DEFAULTS["throttleBurst"]
    [plan] = client.get_usage_plans()["items"]
    assert plan["apiStages"] == [{"apiId": d.rest_api_id, "stage": contract.STAGE_NAME}]
    [key] = client.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    assert d.outputs["apiKey"] == client.get_api_key(apiKey=key["id"], includeValue=True)["value"]
    assert "apiKey" in d.secret_outputs


# --- lambda-ecs -----------------------------------------------------------------------------------
def test_lambda_ecs_task_definition_and_job_api_are_deployed_as_declared(
    deployed: LocalDeployments,
) -> None:
    d = deployed("lambda-ecs")
    declared = stack_file("lambda-ecs")
    [task] = d.task_definitions().values()
    assert task["cpu"] == str(declared["taskCpu"])
    assert task["memory"] == str(declared["taskMemory"])
    assert (
        task["runtimePlatform"]["cpuArchitecture"]
        == CPU_ARCHITECTURE[DEFAULTS["lambdaArchitecture"]]
    )
    [container] = task["containerDefinitions"]
    # The image substitution: no build, no push; the program's digest reference into the ECR
    # repository, created as declared, is what the definition names.
    [repository] = d.client("ecr").describe_repositories()["repositories"]
    assert container["image"] == d.outputs["imageUri"]
    assert container["image"].startswith(f"{repository['repositoryUri']}@sha256:")
    declared_repository = d.one("aws:ecr/repository:Repository").inputs
    assert repository["imageTagMutability"] == declared_repository["imageTagMutability"]
    assert_grants(d, task["executionRoleArn"], [("ecr:BatchGetImage", repository["repositoryArn"])])
    container_env = {e["name"]: e["value"] for e in container["environment"]}
    assert container_env[contract.ENV_JOB_TABLE] == d.outputs["jobTable"]
    assert container_env[contract.ENV_MODEL_URI] == d.outputs["modelUri"]
    job_api = d.function_by_handler(contract.HANDLER_JOBS)
    assert job_api["Timeout"] == ecs_component.job_api_timeout(declared["syncWaitSeconds"])
    assert job_api["MemorySize"] == DEFAULTS["lambdaMemory"]
    variables = env(job_api)
    assert variables[contract.ENV_ECS_TASK_DEFINITION] == task["taskDefinitionArn"]
    assert variables[contract.ENV_SYNC_WAIT_SECONDS] == str(declared["syncWaitSeconds"])
    assert variables[contract.ENV_JOB_TABLE] == d.outputs["jobTable"]
    assert_grants(
        d,
        job_api["Role"],
        [
            ("ecs:RunTask", task["taskDefinitionArn"]),
            ("iam:PassRole", task["taskRoleArn"]),
            ("iam:PassRole", task["executionRoleArn"]),
            ("dynamodb:PutItem", table_arn(d)),
            ("dynamodb:GetItem", table_arn(d)),
        ],
    )
    # The default VPC and its subnets are moto's own.
    vpc = d.client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])
    subnets = variables[contract.ENV_ECS_SUBNETS].split(",")
    described = d.client("ec2").describe_subnets(SubnetIds=subnets)["Subnets"]
    assert {s["VpcId"] for s in described} == {vpc["Vpcs"][0]["VpcId"]}


def test_configured_subnets_and_security_groups_are_used(deployed: LocalDeployments) -> None:
    deployed.reset()  # a VPC of the user's own, then the stack deployed into it
    ec2 = deployed.server.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="mine", Description="mine", VpcId=vpc)["GroupId"]
    d = deployed.deploy("lambda-ecs", subnetIds=subnet, securityGroupIds=group)
    variables = env(d.function_by_handler(contract.HANDLER_JOBS))
    assert variables[contract.ENV_ECS_SUBNETS] == subnet
    assert variables[contract.ENV_ECS_SECURITY_GROUPS] == group


# --- step functions -------------------------------------------------------------------------------
@pytest.mark.parametrize("polling", ["lambda", "native"])
def test_stepfunctions_ecs_state_machine_is_the_deployed_definition(
    deployed: LocalDeployments, polling: str
) -> None:
    d = deployed("stepfunctions-ecs", polling=polling)
    [machine] = d.state_machines().values()
    definition = json.loads(machine["definition"])
    assert machine["stateMachineArn"] == d.outputs["stateMachineArn"]
    resources = {s.get("Resource", "") for s in definition["States"].values()}
    functions = d.functions()
    [task] = d.task_definitions().values()
    if polling == "native":
        assert "arn:aws:states:::ecs:runTask.sync" in resources
        assert contract.HANDLER_RUN_ECS not in {f["Handler"] for f in functions.values()}
        assert json.dumps(definition).count(task["taskDefinitionArn"]) >= 1
    else:
        run_ecs = d.function_by_handler(contract.HANDLER_RUN_ECS)
        check = d.function_by_handler(contract.HANDLER_CHECK_JOB_STATUS)
        assert {run_ecs["FunctionArn"], check["FunctionArn"]} <= {
            s.get("Parameters", {}).get("FunctionName") for s in definition["States"].values()
        }
        assert env(run_ecs)[contract.ENV_ECS_TASK_DEFINITION] == task["taskDefinitionArn"]
        assert_grants(d, run_ecs["Role"], [("ecs:RunTask", task["taskDefinitionArn"])])
        waits = [s for s in definition["States"].values() if s["Type"] == "Wait"]
        assert [w["Seconds"] for w in waits] == [
            stack_file("stepfunctions-ecs")["pollIntervalSeconds"]
        ]
    job_api = d.function_by_handler(contract.HANDLER_JOBS)
    assert env(job_api)[contract.ENV_STATE_MACHINE_ARN] == machine["stateMachineArn"]
    assert_grants(d, job_api["Role"], [("states:StartExecution", machine["stateMachineArn"])])


@pytest.mark.parametrize("polling", ["lambda", "native"])
def test_stepfunctions_batch_is_deployed_as_declared(
    deployed: LocalDeployments, polling: str
) -> None:
    d = deployed("stepfunctions-batch", polling=polling)
    declared = stack_file("stepfunctions-batch")
    [definition] = d.job_definitions().values()
    assert definition["timeout"]["attemptDurationSeconds"] == (
        batch_component.DEFAULT_ATTEMPT_TIMEOUT_SECONDS
    )
    assert definition["retryStrategy"]["attempts"] == declared["jobAttempts"]
    properties = definition["containerProperties"]
    assert (
        properties["runtimePlatform"]["cpuArchitecture"]
        == CPU_ARCHITECTURE[DEFAULTS["lambdaArchitecture"]]
    )
    assert {r["type"]: r["value"] for r in properties["resourceRequirements"]}["MEMORY"] == str(
        declared["taskMemory"]
    )
    queues = d.job_queues()
    assert set(queues) == {d.outputs["batchJobQueueHigh"], d.outputs["batchJobQueueLow"]}
    assert (
        queues[d.outputs["batchJobQueueHigh"]]["priority"]
        > (queues[d.outputs["batchJobQueueLow"]]["priority"])
    )
    # The S3 trigger: ObjectCreated on jobs/*.json (the keys runtime/handlers/trigger.py takes).
    trigger = d.function_by_handler(contract.HANDLER_TRIGGER)
    [config] = d.notification_configuration(d.outputs["modelBucket"])[
        "LambdaFunctionConfigurations"
    ]
    assert config["LambdaFunctionArn"] == trigger["FunctionArn"]
    rules = {r["Name"].lower(): r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": contract.JOBS_PREFIX, "suffix": ".json"}
    assert trigger["Timeout"] == batch_component.TRIGGER_TIMEOUT_SECONDS
    [machine] = d.state_machines().values()
    assert env(trigger)[contract.ENV_STATE_MACHINE_ARN] == machine["stateMachineArn"]
    assert_grants(
        d,
        trigger["Role"],
        [
            ("states:StartExecution", machine["stateMachineArn"]),
            ("dynamodb:PutItem", table_arn(d)),
        ],
    )


def test_provisioned_concurrency_serves_a_published_version_through_the_alias(
    deployed: LocalDeployments,
) -> None:
    d = deployed(None, provisionedConcurrency="2")
    predictor = d.function_by_handler(contract.HANDLER_PREDICT)
    client = d.client("lambda")
    alias = client.get_alias(FunctionName=predictor["FunctionName"], Name=realtime.ALIAS_NAME)
    versions = client.list_versions_by_function(FunctionName=predictor["FunctionName"])
    published = [v["Version"] for v in versions["Versions"] if v["Version"] != "$LATEST"]
    assert published == [alias["FunctionVersion"]]
    # The API invokes the alias; the provisioned concurrency is recorded, not created (no moto API).
    assert alias["AliasArn"] in json.dumps(d.openapi_body()["paths"]["/predict"])
    config = d.one("aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig")
    assert config.inputs["provisionedConcurrentExecutions"] == 2
    assert substitutions.PROVISIONED_CONCURRENCY in d.substitutions


def test_a_combination_shares_one_store_table_and_api(deployed: LocalDeployments) -> None:
    d = deployed(None, architecture="lambda,stepfunctions-batch")
    assert d.outputs["architecture"] == ["lambda", "stepfunctions-batch"]
    assert len(d.of_type("aws:s3/bucket:Bucket")) == 1
    assert len(d.of_type("aws:dynamodb/table:Table")) == 1
    assert len(d.client("apigateway").get_rest_apis()["items"]) == 1
    predictor = d.function_by_handler(contract.HANDLER_PREDICT)
    routes = d.openapi_body()["paths"]
    assert predictor["FunctionArn"] in json.dumps(routes["/predict"])
    assert "/jobs" in routes
    assert d.notifications()  # the batch trigger, on the shared bucket


# --- configuration and failures -------------------------------------------------------------------
def test_bad_configuration_fails_with_the_settings_error(model: Path) -> None:
    with MotoServer(set_environment=False) as server, pytest.raises(SettingsError) as raised:
        deploy(None, {"modelPath": str(model), "lambdaMemory": "64"}, server.endpoint_url)
    assert "mlserve:lambdaMemory: 64 is out of range" in str(raised.value)


def test_a_stack_is_its_file_then_the_overrides(tmp_path: Path) -> None:
    config = stack_config("stepfunctions-batch", {"jobAttempts": "5", "aws:region": "eu-west-1"})
    declared = stack_file("stepfunctions-batch")
    assert config["mlserve:architecture"] == declared["architecture"]
    assert config["mlserve:pollIntervalSeconds"] == str(declared["pollIntervalSeconds"])
    assert config["mlserve:jobAttempts"] == "5"
    assert config["aws:region"] == "eu-west-1"
    assert config["mlserve:lambdaMemory"] == str(DEFAULTS["lambdaMemory"])  # Pulumi.yaml
    assert parse_overrides(["lambdaMemory=2048", "image="]) == {"lambdaMemory": "2048", "image": ""}
    with pytest.raises(StackConfigError, match="key=value"):
        parse_overrides(["lambdaMemory"])
    with pytest.raises(StackConfigError, match=r"no Pulumi\.nope\.yaml.*lambda-ecs"):
        stack_config("nope")
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  mlserve:image:\n    secure: AAAA\n")
    with pytest.raises(StackConfigError, match="cannot decrypt"):
        stack_config("dev", project_dir=tmp_path)


def test_the_layer_source_switch_is_only_the_local_targets() -> None:
    assert packaging.layer_builder({}) is packaging.build_layer
    venv = {packaging.ENV_LAYER_SOURCE: packaging.LAYER_SOURCE_VENV}
    assert packaging.layer_builder(venv) is packaging.build_venv_layer
    assert substitutions.ENVIRONMENT.items() >= venv.items()
    with pytest.raises(packaging.PackagingError, match="allowed: venv"):
        packaging.layer_builder({packaging.ENV_LAYER_SOURCE: "pip"})


def test_the_local_function_archive_needs_no_python_of_the_lambda_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user with only this Python deploys locally: the switch the local target sets ships the
    sources without byte code and never looks for the runtime's interpreter."""
    for name, value in substitutions.ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(packaging.ENV_LAMBDA_PYTHON, str(tmp_path / "no-python3.12"))
    archive = packaging.build_function_archive(REPO, tmp_path / "out", cache_dir=tmp_path / "cache")
    with zipfile.ZipFile(archive.zip_path) as opened:
        names = opened.namelist()
    assert "runtime/handlers/predict.py" in names
    assert not [name for name in names if name.endswith(".pyc")]
    # unset (pulumi up), the archive is compiled by the runtime's interpreter: here, none
    monkeypatch.delenv(packaging.ENV_FUNCTION_BYTECODE)
    with pytest.raises(packaging.PackagingError, match=r"no-python3\.12"):
        packaging.build_function_archive(REPO, tmp_path / "out", cache_dir=tmp_path / "cache")


def test_a_resource_type_without_a_mapper_fails_naming_the_type() -> None:
    with MotoServer(set_environment=False) as server:
        provider = LocalProvider(Context(server.endpoint_url, "us-east-1", "test", "mlserve"))
        # the registration as the SDK hands it over (a failed program run would leave the SDK's
        # process-wide state holding it, and the next deployment of this process would get it)
        args = pulumi.runtime.MockResourceArgs("aws:sqs/queue:Queue", "unmapped", {}, custom=True)

        with pytest.raises(
            DeploymentError, match=r"no mapper for resource type 'aws:sqs/queue:Queue'"
        ):
            provider.new_resource(args)

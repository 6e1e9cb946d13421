"""The real Pulumi program (__main__.py) under mocks: resources, wiring, security, stability."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.api import LambdaTarget, RestApi, RestApiArgs
from components.settings import SettingsError, default_lambda_runtime
from components.storage import ModelStore, ModelStoreArgs
from runtime import contract
from tests.infra.conftest import REGION, Registered, StackRun, run_program, run_stack

BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
TABLE = "aws:dynamodb/table:Table"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
FUNCTION = "aws:lambda/function:Function"
ALIAS = "aws:lambda/alias:Alias"
PROVISIONED = "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig"
PERMISSION = "aws:lambda/permission:Permission"
LAYER = "aws:lambda/layerVersion:LayerVersion"
REST_API = "aws:apigateway/restApi:RestApi"
DEPLOYMENT = "aws:apigateway/deployment:Deployment"
STAGE = "aws:apigateway/stage:Stage"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
API_KEY = "aws:apigateway/apiKey:ApiKey"
USAGE_PLAN = "aws:apigateway/usagePlan:UsagePlan"
USAGE_PLAN_KEY = "aws:apigateway/usagePlanKey:UsagePlanKey"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"

# component -> the (type, logical name) of every child it owns with the default config.
EXPECTED = {
    ("mlserve:index:ModelStore", "model-store"): {
        (BUCKET, "model-store-bucket"),
        (VERSIONING, "model-store-versioning"),
        (ENCRYPTION, "model-store-encryption"),
        (PUBLIC_ACCESS, "model-store-public-access"),
        (OWNERSHIP, "model-store-ownership"),
        (BUCKET_POLICY, "model-store-tls-only"),
        (OBJECT, "model-store-model"),
        (OBJECT, "model-store-metadata"),
    },
    ("mlserve:index:JobTable", "job-table"): {(TABLE, "job-table-table")},
    ("mlserve:index:LambdaPackage", "lambda-package"): {
        (LAYER, "lambda-package-layer"),
        (OBJECT, "lambda-package-layer-object"),
    },
    ("mlserve:index:RealtimePredictor", "predictor"): {
        (LOG_GROUP, "predictor-logs"),
        (ROLE, "predictor-role"),
        (ROLE_POLICY, "predictor-policy"),
        (FUNCTION, "predictor-function"),
    },
    ("mlserve:index:RestApi", "api"): {
        (REST_API, "api-api"),
        (DEPLOYMENT, "api-deployment"),
        (STAGE, "api-stage"),
        (METHOD_SETTINGS, "api-method-settings"),
        (API_KEY, "api-key"),
        (USAGE_PLAN, "api-usage-plan"),
        (USAGE_PLAN_KEY, "api-usage-plan-key"),
        (PERMISSION, "api-invoke-predictor"),
    },
    ("mlserve:index:Monitoring", "monitoring"): {
        (TOPIC, "monitoring-alarms"),
        (TOPIC_POLICY, "monitoring-alarms-policy"),
        (ALARM, "monitoring-api-5xx-rate"),
        (ALARM, "monitoring-api-latency-p99"),
        (ALARM, "monitoring-predictor-errors"),
        (ALARM, "monitoring-predictor-throttles"),
        (DASHBOARD, "monitoring-dashboard"),
    },
}


def body(run: StackRun) -> dict[str, Any]:
    return json.loads(run.one(REST_API).inputs["body"])


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in doc["paths"].values() for op in item.values()}


def statements(registered: Registered) -> list[dict[str, Any]]:
    return json.loads(registered.inputs["policy"])["Statement"]


# --- what is built --------------------------------------------------------------------------------
def test_every_resource_of_the_lambda_architecture_exists(default_run: StackRun) -> None:
    built = {(r.type, r.name) for r in default_run.resources if r.custom}
    expected = set().union(*EXPECTED.values())
    assert built == expected
    components = {(r.type, r.name) for r in default_run.resources if r.is_component}
    assert components == {*EXPECTED, ("pulumi:pulumi:Stack", "mlserve-test")}


def test_every_child_is_parented_to_its_component(default_run: StackRun) -> None:
    stack = default_run.stack
    for (typ, name), children in EXPECTED.items():
        component = default_run.one(typ, name)
        assert component.parent == stack.urn, name
        assert {(c.type, c.name) for c in default_run.children(component)} == children
        for child in default_run.children(component):
            assert child.name.startswith(f"{name}-"), child.name
            assert child.urn == f"urn:pulumi:test::mlserve::{typ}${child.type}::{child.name}"
    # nothing hangs off the stack directly except the components
    assert all(r.is_component for r in default_run.children(stack))


def test_components_register_their_outputs(default_run: StackRun) -> None:
    outputs = {
        name: default_run.component_outputs[default_run.one(typ, name).urn]
        for typ, name in EXPECTED
    }
    assert set(outputs["model-store"]) == {
        "bucket_name", "bucket_arn", "model_key", "model_uri", "model_object_arn",
        "model_sha256", "model_version",
    }  # fmt: skip
    assert outputs["model-store"]["model_uri"] == default_run.exports["modelUri"]
    assert outputs["job-table"] == {
        "name": default_run.exports["jobTable"],
        "arn": default_run.one(TABLE).outputs["arn"],
    }
    assert outputs["predictor"]["function_arn"] == default_run.one(FUNCTION).outputs["arn"]
    assert outputs["api"]["url"] == default_run.exports["apiUrl"]
    assert outputs["api"]["rest_api_id"] == default_run.one(REST_API).id
    assert "layer_arn" in outputs["lambda-package"]


def test_no_hard_coded_physical_names(default_run: StackRun) -> None:
    for r in default_run.resources:
        if r.type in {TABLE, LOG_GROUP, ROLE, FUNCTION, REST_API, API_KEY, USAGE_PLAN}:
            assert "name" not in r.inputs, r.name
        if r.type == BUCKET:
            assert "bucket" not in r.inputs


def test_stack_outputs(default_run: StackRun) -> None:
    exports = default_run.exports
    assert set(exports) == {
        "apiUrl",
        "apiKey",
        "modelBucket",
        "modelUri",
        "jobTable",
        "architecture",
        "engine",
        "predictorLogGroup",
        "dashboardUrl",
        "alarmTopicArn",
    }
    bucket = default_run.one(BUCKET).outputs["bucket"]
    assert exports["modelBucket"] == bucket
    assert exports["modelUri"].startswith(f"s3://{bucket}/models/example/")
    assert exports["jobTable"] == default_run.one(TABLE).outputs["name"]
    assert exports["apiUrl"] == default_run.one(STAGE).outputs["invokeUrl"]
    assert exports["apiUrl"].endswith(f"/{contract.STAGE_NAME}")
    assert exports["apiKey"] == default_run.one(API_KEY).outputs["value"]
    assert default_run.secret_exports == {"apiKey"}
    assert exports["architecture"] == ["lambda"]


# --- model store ----------------------------------------------------------------------------------
def test_bucket_blocks_public_access_and_is_versioned_encrypted_tls_only(
    default_run: StackRun,
) -> None:
    bucket = default_run.one(BUCKET)
    name, arn = bucket.outputs["bucket"], bucket.outputs["arn"]
    block = default_run.one(PUBLIC_ACCESS).inputs
    assert block == {
        "bucket": name,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    versioning = default_run.one(VERSIONING).inputs
    assert versioning["bucket"] == name
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    encryption = default_run.one(ENCRYPTION).inputs
    assert encryption["bucket"] == name
    assert encryption["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    ]
    ownership = default_run.one(OWNERSHIP).inputs
    assert ownership == {"bucket": name, "rule": {"objectOwnership": "BucketOwnerEnforced"}}
    policy = default_run.one(BUCKET_POLICY)
    assert policy.inputs["bucket"] == name
    assert statements(policy) == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    # after the public access block (and the rest: test_hardening.py orders them all)
    ownership = default_run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.urn in policy.dependencies
    assert default_run.one(PUBLIC_ACCESS).urn in ownership.dependencies


def test_model_object_is_the_model_file_with_its_sha256(
    default_run: StackRun, tiny_model: Path
) -> None:
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    model = default_run.named("model-store-model")
    key = contract.model_key("example", digest[:12])
    assert model.inputs["key"] == key
    assert model.inputs["bucket"] == default_run.one(BUCKET).outputs["bucket"]
    assert isinstance(model.inputs["source"], pulumi.FileAsset)
    assert Path(model.inputs["source"].path) == tiny_model
    assert model.inputs["metadata"] == {"sha256": digest}
    # written only once the bucket is locked down
    for typ in (PUBLIC_ACCESS, ENCRYPTION, VERSIONING, OWNERSHIP, BUCKET_POLICY):
        assert default_run.one(typ).urn in model.dependencies
    assert default_run.exports["modelUri"] == f"s3://{model.inputs['bucket']}/{key}"


def test_metadata_is_computed_from_the_model_when_no_metadata_file(
    default_run: StackRun, tiny_model: Path
) -> None:
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    meta = default_run.named("model-store-metadata")
    assert meta.inputs["key"] == contract.model_metadata_key("example", digest[:12])
    assert meta.inputs["contentType"] == "application/json"
    content = json.loads(meta.inputs["content"])
    assert content["feature_names"] == ["a", "b", "c", "d"]
    assert content["num_features"] == 4
    assert content["objective"] == "binary:logistic"
    assert content["sha256"] == digest
    assert (content["name"], content["version"]) == ("example", digest[:12])
    assert content["trained_at"]


def test_metadata_comes_from_the_metadata_file_beside_the_model(example_model: Any) -> None:
    written = json.loads(example_model.metadata_path.read_text())
    run = run_stack({"modelPath": str(example_model.model_path), "modelName": "cancer"})
    content = json.loads(run.named("model-store-metadata").inputs["content"])
    assert content["feature_names"] == written["feature_names"]
    assert content["trained_at"] == written["trained_at"]
    assert content["metrics"] == written["metrics"]
    assert content["sha256"] == example_model.sha256
    assert (content["name"], content["version"]) == ("cancer", example_model.sha256[:12])


def test_stale_metadata_file_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "model.ubj"
    model.write_bytes(tiny_model.read_bytes())
    (tmp_path / "metadata.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(pulumi.RunError, match=r"cannot serve this model: .* the metadata is stale"):
        run_stack({"modelPath": str(model)})


def test_kms_encryption_uses_a_bucket_key(tiny_model: Path) -> None:
    kms = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    def program() -> None:
        ModelStore(
            "store",
            ModelStoreArgs(tiny_model, "m", "v1", kms_key_arn=kms),
        )

    run = run_program(program)
    assert run.one(ENCRYPTION).inputs["rules"] == [
        {
            "applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms",
                "kmsMasterKeyId": kms,
            },
            "bucketKeyEnabled": True,
        }
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_path": Path("/nonexistent/model.ubj")}, "no model file"),
        ({"model_name": ""}, "invalid name"),
        ({"model_version": "a/b"}, "invalid version"),
        ({"model_sha256": "0" * 64}, "is not the sha256"),
        ({"kms_key_arn": "alias/mine"}, "not an ARN"),
    ],
)
def test_model_store_args_reject(tiny_model: Path, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "model_path": tiny_model,
        "model_name": "m",
        "model_version": "v1",
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        ModelStoreArgs(**arguments)


# --- job table ------------------------------------------------------------------------------------
def test_job_table(default_run: StackRun) -> None:
    table = default_run.one(TABLE).inputs
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["hashKey"] == contract.JOB_TABLE_HASH_KEY == "job_id"
    assert table["attributes"] == [
        {"name": "job_id", "type": "S"},
        {"name": "caller", "type": "S"},
        {"name": "created_at", "type": "S"},
    ]
    assert "rangeKey" not in table
    assert table["serverSideEncryption"] == {"enabled": True}
    assert table["pointInTimeRecovery"] == {"enabled": True}
    assert table["ttl"] == {"attributeName": contract.JOB_TABLE_TTL_ATTRIBUTE, "enabled": True}


# --- protectData ----------------------------------------------------------------------------------
def test_data_is_retained_on_delete_when_protected(default_run: StackRun) -> None:
    assert default_run.one(BUCKET).retain_on_delete is True
    assert default_run.one(TABLE).retain_on_delete is True
    assert default_run.one(BUCKET).inputs["forceDestroy"] is False
    others = [r for r in default_run.resources if r.type not in {BUCKET, TABLE}]
    assert not any(r.retain_on_delete for r in others)


def test_data_is_not_retained_when_unprotected(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "protectData": False})
    assert run.one(BUCKET).retain_on_delete is False
    assert run.one(TABLE).retain_on_delete is False
    assert run.one(BUCKET).inputs["forceDestroy"] is True


# --- predictor ------------------------------------------------------------------------------------
def test_predictor_role_is_allowed_exactly_the_two_grants(default_run: StackRun) -> None:
    role = default_run.one(ROLE)
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert "managedPolicyArns" not in role.inputs and "inlinePolicies" not in role.inputs
    assert not any("PolicyAttachment" in r.type for r in default_run.resources)
    (policy,) = default_run.of_type(ROLE_POLICY)
    assert policy.inputs["role"] == role.outputs["name"]
    model_key = default_run.named("model-store-model").inputs["key"]
    model_object_arn = f"{default_run.one(BUCKET).outputs['arn']}/{model_key}"
    log_group_arn = default_run.one(LOG_GROUP).outputs["arn"]
    assert statements(policy) == [
        {
            "Sid": "ReadModel",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [model_object_arn],
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn}:*"],
        },
    ]


def test_predictor_function(default_run: StackRun, tiny_model: Path) -> None:
    fn = default_run.one(FUNCTION)
    inputs = fn.inputs
    log_group = default_run.one(LOG_GROUP)
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    # mlserve:lambdaRuntime empty: the runtime of this Python when Lambda offers it
    assert inputs["runtime"] == default_lambda_runtime()
    assert inputs["handler"] == contract.HANDLER_PREDICT
    assert inputs["architectures"] == ["arm64"]
    assert inputs["memorySize"] == 1024
    assert inputs["timeout"] == 29
    assert inputs["role"] == default_run.one(ROLE).outputs["arn"]
    assert inputs["layers"] == [default_run.one(LAYER).outputs["arn"]]
    assert isinstance(inputs["code"], pulumi.FileArchive)
    assert inputs["code"].path.endswith(".zip")
    assert inputs["loggingConfig"] == {"logFormat": "JSON", "logGroup": log_group.outputs["name"]}
    assert inputs["environment"]["variables"] == {
        "MODEL_URI": default_run.exports["modelUri"],
        "MODEL_SHA256": digest,
        "MODEL_ENGINE": "xgboost",
        "MAX_ROWS": "10000",
        "ALLOW_MISSING": "false",
        "UNKNOWN_CATEGORY": "error",
        "POWERTOOLS_SERVICE_NAME": "mlserve",
        "POWERTOOLS_METRICS_NAMESPACE": "mlserve",
    }
    assert inputs["publish"] is False
    assert "snapStart" not in inputs
    assert default_run.one(ROLE_POLICY).urn in fn.dependencies
    assert log_group.inputs["retentionInDays"] == 14
    assert default_run.of_type(ALIAS) == []


def test_predictor_settings_reach_the_function(base_config: dict[str, str]) -> None:
    run = run_stack(
        {
            **base_config,
            "lambdaMemory": 2048,
            "lambdaTimeout": 12,
            "maxRows": 500,
            "allowMissing": True,
            "logRetentionDays": 30,
        }
    )
    inputs = run.one(FUNCTION).inputs
    assert (inputs["memorySize"], inputs["timeout"]) == (2048, 12)
    assert inputs["environment"]["variables"]["MAX_ROWS"] == "500"
    assert inputs["environment"]["variables"]["ALLOW_MISSING"] == "true"
    assert run.one(LOG_GROUP).inputs["retentionInDays"] == 30


def test_snap_start_publishes_and_the_api_targets_the_live_alias(
    base_config: dict[str, str],
) -> None:
    run = run_stack({**base_config, "snapStart": True})
    fn = run.one(FUNCTION)
    assert fn.inputs["publish"] is True
    assert fn.inputs["snapStart"] == {"applyOn": "PublishedVersions"}
    alias = run.one(ALIAS, "predictor-alias")
    assert alias.parent == run.one("mlserve:index:RealtimePredictor").urn
    assert alias.inputs["name"] == "live"
    assert alias.inputs["functionName"] == fn.outputs["name"]
    assert alias.inputs["functionVersion"] == fn.outputs["version"]
    for op in operations(body(run)).values():
        assert (
            f"/functions/{alias.outputs['arn']}/invocations"
            in (op["x-amazon-apigateway-integration"]["uri"])
        )
    assert run.one(PERMISSION).inputs["qualifier"] == "live"
    assert run.of_type(PROVISIONED) == []


def test_provisioned_concurrency_on_the_alias(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "provisionedConcurrency": 3})
    fn = run.one(FUNCTION)
    assert fn.inputs["publish"] is True and "snapStart" not in fn.inputs
    config = run.one(PROVISIONED, "predictor-provisioned-concurrency")
    assert config.parent == run.one("mlserve:index:RealtimePredictor").urn
    assert config.inputs["functionName"] == fn.outputs["name"]
    assert config.inputs["qualifier"] == "live"
    assert config.inputs["provisionedConcurrentExecutions"] == 3


# --- API ------------------------------------------------------------------------------------------
def test_api_integrates_exactly_the_served_operations(default_run: StackRun) -> None:
    doc = body(default_run)
    fn_arn = default_run.one(FUNCTION).outputs["arn"]
    ops = operations(doc)
    assert set(ops) == {"health", "predict"}
    for op in ops.values():
        assert op["x-amazon-apigateway-integration"] == {
            "type": "aws_proxy",
            "httpMethod": "POST",
            "uri": (
                f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{fn_arn}/invocations"
            ),
            "passthroughBehavior": "when_no_match",
        }
        assert op["security"] == [{"api_key": []}]
    assert doc["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "name": "x-api-key",
        "in": "header",
    }
    assert default_run.one(REST_API).inputs["endpointConfiguration"] == {"types": "REGIONAL"}
    assert "aws:index/getRegion:getRegion" in default_run.calls


def test_lambda_may_be_invoked_by_this_api_only(default_run: StackRun) -> None:
    (permission,) = default_run.of_type(PERMISSION)
    api = default_run.one(REST_API)
    assert permission.inputs == {
        "action": "lambda:InvokeFunction",
        "function": default_run.one(FUNCTION).outputs["name"],
        "principal": "apigateway.amazonaws.com",
        "sourceArn": f"{api.outputs['executionArn']}/*/*",
    }


def test_stage_deployment_and_throttling(default_run: StackRun) -> None:
    rest_api = default_run.one(REST_API).id
    stage = default_run.one(STAGE)
    deployment = default_run.one(DEPLOYMENT)
    assert rest_api
    assert stage.inputs["restApi"] == rest_api
    assert stage.inputs["stageName"] == contract.STAGE_NAME
    assert stage.inputs["deployment"] == deployment.id
    assert deployment.inputs["restApi"] == rest_api
    assert deployment.delete_before_replace is False
    assert default_run.one(METHOD_SETTINGS).inputs == {
        "restApi": rest_api,
        "stageName": contract.STAGE_NAME,
        "methodPath": "*/*",
        "settings": {
            "metricsEnabled": True,
            "throttlingRateLimit": 50,
            "throttlingBurstLimit": 100,
        },
    }
    plan = default_run.one(USAGE_PLAN).inputs
    assert plan["apiStages"] == [{"apiId": rest_api, "stage": contract.STAGE_NAME}]
    assert plan["throttleSettings"] == {"rateLimit": 50, "burstLimit": 100}
    key = default_run.one(USAGE_PLAN_KEY).inputs
    assert key["keyType"] == "API_KEY"
    assert key["keyId"] == default_run.one(API_KEY).id
    assert key["usagePlanId"] == default_run.one(USAGE_PLAN).id
    assert default_run.one(API_KEY).inputs["enabled"] is True


def test_throttle_values_reach_method_settings_and_usage_plan(
    base_config: dict[str, str],
) -> None:
    run = run_stack({**base_config, "throttleRate": 7, "throttleBurst": 9})
    settings = run.one(METHOD_SETTINGS).inputs["settings"]
    assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (7, 9)
    assert run.one(USAGE_PLAN).inputs["throttleSettings"] == {"rateLimit": 7, "burstLimit": 9}


def test_deployment_trigger_is_the_hash_of_the_api_document(default_run: StackRun) -> None:
    raw = default_run.one(REST_API).inputs["body"]
    trigger = default_run.one(DEPLOYMENT).inputs["triggers"]["redeployment"]
    assert trigger == hashlib.sha256(raw.encode()).hexdigest()


def test_deployment_trigger_changes_only_when_the_document_changes(
    base_config: dict[str, str], default_run: StackRun
) -> None:
    def trigger(run: StackRun) -> str:
        return run.one(DEPLOYMENT).inputs["triggers"]["redeployment"]

    same = run_stack(base_config)
    assert trigger(same) == trigger(default_run)
    assert same.one(DEPLOYMENT).urn == default_run.one(DEPLOYMENT).urn
    for change in ({"apiAuth": "iam"}, {"snapStart": True}):
        changed = run_stack({**base_config, **change})
        assert body(changed) != body(default_run)
        assert trigger(changed) != trigger(default_run), change


def test_iam_auth(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "apiAuth": "iam"})
    for op in operations(body(run)).values():
        assert op["x-amazon-apigateway-auth"] == {"type": "AWS_IAM"}
        assert "security" not in op
    assert "securitySchemes" not in body(run)["components"]
    for typ in (API_KEY, USAGE_PLAN, USAGE_PLAN_KEY):
        assert run.of_type(typ) == []
    assert "apiKey" not in run.exports
    assert run.one(METHOD_SETTINGS).inputs["settings"]["throttlingRateLimit"] == 50


def test_no_auth(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "apiAuth": "none"})
    for op in operations(body(run)).values():
        assert "x-amazon-apigateway-auth" not in op and "security" not in op
    assert run.of_type(API_KEY) == []
    assert set(run.exports) == {
        "apiUrl",
        "modelBucket",
        "modelUri",
        "jobTable",
        "architecture",
        "engine",
        "predictorLogGroup",
        "dashboardUrl",
        "alarmTopicArn",
    }


def test_access_logs_are_opt_in_with_retention() -> None:
    target = LambdaTarget(
        key="fn",
        function_name="fn",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
    )

    def program(access_logs: bool) -> None:
        RestApi(
            "web",
            RestApiArgs(routes={"predict": target}, access_logs=access_logs, log_retention_days=7),
        )

    without = run_program(lambda: program(False))
    assert without.of_type(LOG_GROUP) == []
    assert "accessLogSettings" not in without.one(STAGE).inputs
    with_logs = run_program(lambda: program(True))
    group = with_logs.one(LOG_GROUP, "web-access-logs")
    assert group.parent == with_logs.one("mlserve:index:RestApi").urn
    assert group.inputs["retentionInDays"] == 7
    settings = with_logs.one(STAGE).inputs["accessLogSettings"]
    assert settings["destinationArn"] == group.outputs["arn"]
    assert "$context.requestId" in settings["format"]
    assert list(operations(body(with_logs))) == ["predict"]


# --- config errors --------------------------------------------------------------------------------
def test_unknown_architecture_fails_before_anything_is_built(base_config: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as err:
        run_stack({**base_config, "architecture": "foo"})
    assert (
        "mlserve:architecture: unknown architecture 'foo'; "
        "allowed: lambda, lambda-ecs, stepfunctions-ecs"
    ) in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "apiAuth",
            "basic",
            "mlserve:apiAuth: unknown API auth 'basic'; allowed: api-key, iam, none",
        ),
        ("lambdaTimeout", "60", "mlserve:lambdaTimeout: 60 is out of range; allowed: 1-29"),
        (
            "lambdaPackaging",
            "image",
            "mlserve:lambdaPackaging: unknown packaging 'image'; allowed: layer",
        ),
        (
            "logRetentionDays",
            "15",
            "mlserve:logRetentionDays: 15 is not a CloudWatch Logs retention value",
        ),
        ("lambdaMemroy", "512", "mlserve:lambdaMemroy: unknown configuration key"),
        ("modelPath", "/nonexistent/model.ubj", "python -m mlserve train-example"),
    ],
)
def test_bad_config_fails_the_program(
    base_config: dict[str, str], key: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as err:
        run_stack({**base_config, key: value})
    assert expected in str(err.value)


def test_a_config_error_stops_the_program_before_any_resource(
    base_config: dict[str, str],
) -> None:
    runs: list[StackRun] = []
    with pytest.raises(SettingsError):
        run_stack({**base_config, "architecture": "lambda,nope"}, runs=runs)
    (failed,) = runs
    assert [r.type for r in failed.resources] == ["pulumi:pulumi:Stack"]


# --- stability ------------------------------------------------------------------------------------
@pytest.mark.parametrize("snap_start", [False, True])
@pytest.mark.parametrize("api_auth", ["none", "iam", "api-key"])
def test_bucket_and_table_urns_do_not_depend_on_the_rest_of_the_config(
    base_config: dict[str, str], default_run: StackRun, api_auth: str, snap_start: bool
) -> None:
    run = run_stack({**base_config, "apiAuth": api_auth, "snapStart": snap_start})
    assert run.one(BUCKET).urn == default_run.one(BUCKET).urn
    assert run.one(TABLE).urn == default_run.one(TABLE).urn
    assert run.one(BUCKET).urn == (
        "urn:pulumi:test::mlserve::mlserve:index:ModelStore$"
        "aws:s3/bucket:Bucket::model-store-bucket"
    )
    assert run.one(TABLE).urn == (
        "urn:pulumi:test::mlserve::mlserve:index:JobTable$aws:dynamodb/table:Table::job-table-table"
    )


def test_program_is_deterministic(base_config: dict[str, str], default_run: StackRun) -> None:
    again = run_stack(base_config)

    def plain(value: Any) -> Any:
        if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
            return f"{type(value).__name__}({value.path})"
        raise TypeError(value)

    def snapshot(run: StackRun) -> list[tuple[str, str]]:
        return sorted(
            (r.urn, json.dumps(r.inputs, sort_keys=True, default=plain)) for r in run.resources
        )

    assert snapshot(again) == snapshot(default_run)


def test_preview_registers_the_same_resources(
    base_config: dict[str, str], default_run: StackRun
) -> None:
    preview = run_stack(base_config, preview=True)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in default_run.resources)


def test_a_repeated_architecture_is_built_once(base_config: dict[str, str]) -> None:
    run = run_stack({**base_config, "architecture": "lambda, lambda"})
    assert len(run.of_type("mlserve:index:RealtimePredictor")) == 1
    assert run.exports["architecture"] == ["lambda"]

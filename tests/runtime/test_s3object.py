"""runtime/s3object.py: the predictor's GetObject without boto3, against botocore's signer, a
moto server (real HTTP) and a server that fails on purpose (errors and retries as boto3's)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer

from mlserve.train import TrainResult
from runtime import contract
from runtime.context import INTERACTIVE, RuntimeContext
from runtime.model import ModelUnavailable, load_model
from runtime.s3object import ObjectReader, S3Error, object_url, sign_get

MAX_ATTEMPTS = INTERACTIVE.total_attempts  # the predictor's budget, the reader's default

BUCKET = "mlserve-models-test"
REPO = Path(__file__).resolve().parents[2]
KEY = "models/example/v1/model.ubj"


def env(endpoint: str | None, **extra: str) -> dict[str, str]:
    values = {
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
    }
    if endpoint:
        values["AWS_ENDPOINT_URL"] = endpoint
    return values | extra


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    "url",
    [
        "https://bucket-1.s3.eu-west-1.amazonaws.com/models/a%20b/v1/model.ubj",
        "http://127.0.0.1:5000/bucket/models/x/v~1/model.onnx",
    ],
)
def test_the_signature_is_botocores(
    url: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2026, 12, 4, 16, 30, 5, tzinfo=UTC)
    ours = sign_get(
        url,
        access_key="AKID",
        secret_key="secret",
        session_token=token,
        region="eu-west-1",
        now=now,
    )
    request = AWSRequest(
        method="GET", url=url, headers={"x-amz-content-sha256": ours["x-amz-content-sha256"]}
    )
    signer = S3SigV4Auth(Credentials("AKID", "secret", token), "s3", "eu-west-1")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: now.replace(tzinfo=None))
    signer.add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]


def test_the_object_is_addressed_as_boto3_addresses_it() -> None:
    assert object_url("b-1", "m/k.ubj", "eu-west-1", None) == (
        "https://b-1.s3.eu-west-1.amazonaws.com/m/k.ubj"
    )
    assert object_url("b.dotted", "k", "eu-west-1", None) == (
        "https://s3.eu-west-1.amazonaws.com/b.dotted/k"
    )
    assert object_url("b", "a b/c", "r", "http://127.0.0.1:9/") == "http://127.0.0.1:9/b/a%20b/c"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="AKID", aws_secret_access_key="secret",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def test_reads_the_model_from_s3_and_loads_it(
    moto_endpoint: str, example_model: TrainResult, tmp_path: Path
) -> None:
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="AKID", aws_secret_access_key="secret",
    ).upload_file(str(example_model.model_path), BUCKET, KEY)  # fmt: skip
    reader = ObjectReader(env(moto_endpoint))
    body = reader.get_object(Bucket=BUCKET, Key=KEY)["Body"]
    data = b"".join(iter(lambda: body.read(1 << 16), b""))
    assert hashlib.sha256(data).hexdigest() == example_model.sha256
    model = load_model(f"s3://{BUCKET}/{KEY}", example_model.sha256, reader, tmp_path)
    assert model.info.num_features == 30


def test_a_missing_object_is_boto3s_error(moto_endpoint: str, tmp_path: Path) -> None:
    reader = ObjectReader(env(moto_endpoint))
    with pytest.raises(S3Error) as caught:
        reader.get_object(Bucket=BUCKET, Key="models/example/nope/model.ubj")
    assert caught.value.code == "NoSuchKey" and caught.value.status == 404
    assert str(caught.value).startswith(
        "An error occurred (NoSuchKey) when calling the GetObject operation: "
    )
    uri = f"s3://{BUCKET}/models/example/nope/model.ubj"
    with pytest.raises(ModelUnavailable, match=f"cannot read the model object {uri}: An error"):
        load_model(uri, "0" * 64, reader, tmp_path)


class Failing(http.server.BaseHTTPRequestHandler):
    """Answers each GET with the next (status, code) of ``plan``; then 200 with ``body``."""

    plan: ClassVar[list[tuple[int, str]]] = []
    seen: ClassVar[list[dict[str, str]]] = []
    body = b"model bytes"

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        if type(self).plan:
            status, code = type(self).plan.pop(0)
            payload = f"<Error><Code>{code}</Code><Message>{code} here</Message></Error>".encode()
        else:
            status, payload = 200, type(self).body
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Failing.plan, Failing.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_throttling_and_5xx_are_retried_with_backoff(failing: str) -> None:
    answers = [(429, "TooManyRequests"), (500, "InternalError")]  # 503: the test below
    Failing.plan = answers[: MAX_ATTEMPTS - 1]  # every retry the budget allows, then the object
    sleeps: list[float] = []
    reader = ObjectReader(env(failing, AWS_SESSION_TOKEN="tok"), sleep=sleeps.append)
    assert reader.get_object(Bucket="b", Key="k")["Body"].read() == b"model bytes"
    assert len(Failing.seen) == MAX_ATTEMPTS and len(sleeps) == MAX_ATTEMPTS - 1
    assert all(0 <= s <= 2**i for i, s in enumerate(sleeps))
    assert all(h["x-amz-security-token"] == "tok" for h in Failing.seen)
    assert all(
        h["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/") for h in Failing.seen
    )


def test_retries_end_after_boto3s_attempts_with_its_message(failing: str) -> None:
    Failing.plan = [(503, "SlowDown")] * MAX_ATTEMPTS
    reader = ObjectReader(env(failing), sleep=lambda _: None)
    with pytest.raises(S3Error) as caught:
        reader.get_object(Bucket="b", Key="k")
    assert str(caught.value) == (
        "An error occurred (SlowDown) when calling the GetObject operation (reached max "
        f"retries: {MAX_ATTEMPTS - 1}): SlowDown here"
    )
    assert len(Failing.seen) == MAX_ATTEMPTS


def test_access_denied_is_not_retried(failing: str) -> None:
    Failing.plan = [(403, "AccessDenied")]
    reader = ObjectReader(env(failing), sleep=lambda _: pytest.fail("no retry on 403"))
    with pytest.raises(S3Error, match=r"\(AccessDenied\) when calling the GetObject operation"):
        reader.get_object(Bucket="b", Key="k")
    assert len(Failing.seen) == 1


def test_a_refused_connection_is_retried_then_reported() -> None:
    reader = ObjectReader(env("http://127.0.0.1:9"), sleep=lambda _: None)
    with pytest.raises(S3Error, match="Could not connect to the endpoint URL") as caught:
        reader.get_object(Bucket="b", Key="k")
    assert caught.value.code == "ConnectionError"


def test_a_lambda_function_reads_its_model_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env("http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    in_lambda = RuntimeContext({"AWS_LAMBDA_FUNCTION_NAME": "predictor"})
    assert isinstance(in_lambda.object_reader(), ObjectReader)
    injected = object()
    given = RuntimeContext({"AWS_LAMBDA_FUNCTION_NAME": "predictor"}, clients={"s3": injected})
    assert given.object_reader() is injected  # tests and callers inject a client
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # credentials from elsewhere: boto3 finds them
    assert not isinstance(in_lambda.object_reader(), ObjectReader)
    assert not isinstance(RuntimeContext({}).object_reader(), ObjectReader)  # not a function
    assert contract.ENV_MODEL_URI  # the context reads the model's location as before


COLD_START = """
import json, sys
from runtime.handlers import predict  # in Lambda: the model's download starts here, then init
from tests.runtime.events import FakeLambdaContext, rest_event

answer = predict.handler(rest_event("POST", "/predict", sys.argv[1]), FakeLambdaContext())
print(json.dumps({"status": answer["statusCode"], "body": json.loads(answer["body"]),
                  "boto3": sorted(m for m in ("boto3", "botocore.session", "botocore.auth")
                                  if m in sys.modules)}))
"""


def test_a_lambda_cold_start_serves_without_importing_boto3(
    moto_endpoint: str, example_model: TrainResult, tmp_path: Path
) -> None:
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="AKID", aws_secret_access_key="secret",
    ).upload_file(str(example_model.model_path), BUCKET, KEY)  # fmt: skip
    variables = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODEL_"))},
        **env(moto_endpoint),
        "AWS_LAMBDA_FUNCTION_NAME": "predictor",  # Lambda sets it: init loads the model
        contract.ENV_MODEL_URI: f"s3://{BUCKET}/{KEY}",
        contract.ENV_MODEL_SHA256: example_model.sha256,
        contract.ENV_MODEL_CACHE_DIR: str(tmp_path / "cache"),
    }
    rows = json.dumps({"instances": [[1.0] * 30]})
    done = subprocess.run(
        [sys.executable, "-c", COLD_START, rows],
        env=variables, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 200 and len(outcome["body"]["predictions"]) == 1
    # neither boto3 nor botocore's session and signer (Powertools imports only botocore/__init__,
    # to register its user agent)
    assert outcome["boto3"] == []

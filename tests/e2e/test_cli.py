"""python -m mlserve, as a user runs it (subprocesses)."""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import requests
import xgboost as xgb

from mlserve.local import Emulator
from mlserve.train import TrainResult, sha256_file

from .helpers import Example, reference


def mlserve(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # The emulator fixture's AWS variables must not leak into a child that starts its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["COLUMNS"] = "120"
    return subprocess.run(
        [sys.executable, "-m", "mlserve", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_prints_predictions_and_accuracy(trained: TrainResult, tmp_path: Path) -> None:
    result = mlserve(
        "demo", "--model-dir", str(trained.model_path.parent), "--rows", "5", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "identical predictions" in out
    assert out.count("malignant") + out.count("benign") >= 5 * 2
    accuracy = re.search(r"accuracy on the held-out split.*?: (\d+\.\d)%", out)
    assert accuracy is not None, out
    assert float(accuracy.group(1)) > 90
    assert not (tmp_path / "models").exists()


def test_demo_serves_a_users_model_json_without_metadata(
    booster: xgb.Booster, tmp_path: Path
) -> None:
    """--model-dir takes a directory with model.json and nothing else (issue 16)."""
    model_dir = tmp_path / "mine"
    model_dir.mkdir()
    booster.save_model(model_dir / "model.json")

    result = mlserve("demo", "--model-dir", str(model_dir), "--rows", "3", cwd=tmp_path)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "identical predictions" in result.stdout


def test_demo_of_a_stack_scores_a_users_model_of_other_features(tmp_path: Path) -> None:
    """--stack + --model model.json of a model not trained on the example data (issue 13): the
    job API of the stack answers generated rows with what Booster.predict gives for them."""
    from mlserve.commands.demo import generated_rows

    rng = np.random.default_rng(7)
    features = rng.normal(size=(300, 6))
    labels = (features[:, 0] - features[:, 2] > 0).astype(int)
    params = {"objective": "binary:logistic", "max_depth": 2}
    own = xgb.train(params, xgb.DMatrix(features, label=labels), 8)
    own.save_model(tmp_path / "model.json")

    result = mlserve(
        "demo", "--stack", "lambda-ecs", "--model", str(tmp_path / "model.json"), "--rows", "4",
        cwd=tmp_path, timeout=180,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr + result.stdout
    assert "not trained on the example data set" in result.stdout
    served = [float(v) for v in re.findall(r"│\s+\d+ │ ([0-9.e-]+)\s+│", result.stdout)]
    model = {"feature_names": [f"f{i}" for i in range(6)]}
    rows = np.array([[row[n] for n in model["feature_names"]] for row in generated_rows(model, 4)])
    np.testing.assert_allclose(served, own.predict(xgb.DMatrix(rows)), rtol=1e-5, atol=1e-6)


def test_a_model_that_cannot_be_served_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{"learner": {}}')

    result = mlserve("demo", "--model-dir", str(tmp_path), cwd=tmp_path)

    assert result.returncode == 1, result.stderr + result.stdout
    assert "cannot load the model" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_of_stepfunctions_batch_scores_a_generated_csv_in_shards(
    trained: TrainResult, tmp_path: Path
) -> None:
    result = mlserve(
        "demo",
        "--architecture",
        "stepfunctions-batch",
        "--polling",
        "native",
        "--model-dir",
        str(trained.model_path.parent),
        "--batch-rows",
        "5000",
        "--shards",
        "3",
        cwd=tmp_path,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "5,000 rows" in out
    assert "3/3 succeeded" in out
    assert "job SUCCEEDED after" in out
    assert "every one of the 5,000 ids exactly once: yes" in out
    assert out.count("part-0000") == 3
    accuracy = re.search(r"accuracy against the true labels: (\d+\.\d)%", out)
    assert accuracy is not None, out
    assert float(accuracy.group(1)) > 90


def test_demo_refuses_an_architecture_that_is_not_emulated(tmp_path: Path) -> None:
    result = mlserve("demo", "--architecture", "kubernetes", cwd=tmp_path)

    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "lambda" in result.stderr


def test_demo_without_a_model_says_how_to_get_one(tmp_path: Path) -> None:
    result = mlserve("demo", "--model-dir", str(tmp_path / "nothing"), cwd=tmp_path)

    assert result.returncode == 1
    assert "train-example" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_prints_the_predictions_of_a_csv_file(
    emulator: Emulator, booster: xgb.Booster, example: Example, tmp_path: Path
) -> None:
    rows = example.rows(4)
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(example.names)
        writer.writerows([[repr(float(v)) for v in row] for row in rows])
    key = emulator.api_key or ""

    as_json = mlserve(
        "predict",
        "--url",
        emulator.url,
        "--api-key",
        key,
        str(path),
        "--format",
        "json",
        cwd=tmp_path,
    )
    as_table = mlserve("predict", "--url", emulator.url, "--api-key", key, str(path), cwd=tmp_path)

    assert as_json.returncode == 0, as_json.stderr
    got = json.loads(as_json.stdout)["predictions"]
    np.testing.assert_allclose(got, reference(booster, rows), rtol=0, atol=1e-6)
    assert as_table.returncode == 0, as_table.stderr
    assert f"{got[0]:.6g}" in as_table.stdout
    assert emulator.model.version in as_table.stdout


def test_predict_sends_a_json_list_of_rows(
    emulator: Emulator, booster: xgb.Booster, example: Example, tmp_path: Path
) -> None:
    rows = example.rows(3)
    path = tmp_path / "rows.json"
    path.write_text(
        json.dumps([dict(zip(example.names, row.tolist(), strict=True)) for row in rows])
    )

    result = mlserve(
        "predict",
        "--url",
        emulator.url,
        "--api-key",
        emulator.api_key or "",
        str(path),
        "--format",
        "json",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["predictions"]
    np.testing.assert_allclose(got, reference(booster, rows), rtol=0, atol=1e-6)


def test_predict_reports_an_api_error_and_exits_1(emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("1,2,3\n")

    wrong_key = mlserve(
        "predict", "--url", emulator.url, "--api-key", "nope", str(path), cwd=tmp_path
    )
    bad_rows = mlserve(
        "predict",
        "--url",
        emulator.url,
        "--api-key",
        emulator.api_key or "",
        str(path),
        cwd=tmp_path,
    )

    assert wrong_key.returncode == 1
    assert "403 forbidden" in wrong_key.stderr
    assert bad_rows.returncode == 1
    assert "400 wrong_feature_count" in bad_rows.stderr
    assert "30" in bad_rows.stderr


def test_train_example_writes_the_model_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "example"

    first = mlserve("train-example", "--out", str(out), cwd=tmp_path)
    again = mlserve("train-example", "--out", str(out), "--if-missing", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    digest = sha256_file(out / "model.ubj")
    assert digest in first.stdout
    assert "accuracy" in first.stdout
    assert json.loads((out / "metadata.json").read_text())["sha256"] == digest
    assert again.returncode == 0
    assert "already present" in again.stdout
    assert sha256_file(out / "model.ubj") == digest


def test_local_serves_until_ctrl_c(trained: TrainResult, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    command = [sys.executable, "-m", "mlserve", "local", "--port", "0"]
    command += ["--model-dir", str(trained.model_path.parent)]
    child = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in child.stdout or []:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        banner = ""
        while "Ctrl-C to stop." not in banner:
            banner += lines.get(timeout=180)  # deploying the program: slower under load
        url = re.search(r"API URL\s+(\S+)", banner)
        key = re.search(r"API key\s+(\S+)", banner)
        assert url is not None and key is not None, banner
        assert f"x-api-key: {key.group(1)}" in banner  # the ready-to-paste curl line

        health = requests.get(
            url.group(1) + "/health", headers={"x-api-key": key.group(1)}, timeout=30
        )
        assert health.status_code == 200
        assert health.json()["model"]["sha256"] == trained.sha256

        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    assert "Traceback" not in stderr
    reader.join(timeout=10)  # stdout is closed: everything printed is in the queue
    rest = "".join(iter_queue(lines))
    assert "stopped." in rest


def iter_queue(items: queue.Queue[str]) -> list[str]:
    out = []
    while not items.empty():
        out.append(items.get_nowait())
    return out


def test_demo_with_the_onnx_engine_serves_the_converted_model(
    trained: TrainResult, tmp_path: Path
) -> None:
    result = mlserve(
        "demo",
        "--engine",
        "onnx",
        "--model-dir",
        str(trained.model_path.parent),
        "--rows",
        "5",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert "engine onnx" in result.stdout
    assert "identical predictions" in result.stdout
    accuracy = re.search(r"accuracy on the held-out split.*?: (\d+\.\d)%", result.stdout)
    assert accuracy is not None and float(accuracy.group(1)) > 90, result.stdout


def test_demo_with_the_onnx_engine_refuses_an_unsupported_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    dtrain = xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int))
    dtrain.set_group([30, 30])
    booster = xgb.train({"objective": "rank:pairwise", "nthread": 1}, dtrain, 2)
    model_dir = tmp_path / "ranker"
    model_dir.mkdir()
    booster.save_model(model_dir / "model.ubj")

    result = mlserve("demo", "--engine", "onnx", "--model-dir", str(model_dir), cwd=tmp_path)

    assert result.returncode == 1, result.stderr + result.stdout
    assert "objective 'rank:pairwise' is not supported by the onnx engine" in result.stderr
    assert "Traceback" not in result.stderr

"""The compatibility matrix (README, "Bring your own model"): every kind of model XGBoost trains,
and models saved by older XGBoost versions, deployed on the emulator with each engine.

Each is either served, with the predictions of ``Booster.predict`` within 1e-5 (x max(1, |p|),
the onnx engine's verified bound) for JSON rows, JSON objects by name and CSV, or refused at
start with a message naming why. Whatever the input, no answer is a 5xx.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from components.compatibility import ModelRefused
from components.engine import EngineConversionError
from mlserve.local import Emulator
from runtime import contract
from tests import model_zoo

from .helpers import Api, assert_error

ENGINES = (contract.ENGINE_XGBOOST, contract.ENGINE_ONNX)
CASES = (*model_zoo.ZOO, "categorical", *model_zoo.fixtures())
# What the onnx engine serves (the README's table says why the others are refused); the
# xgboost engine serves every case.
ONNX_SERVED = frozenset(
    {
        "binary-logistic",
        "binary-logistic-unnamed",
        "random-forest",
        "multi-softprob",
        "multi-softmax",
        "reg-squarederror",
        "reg-base-score",
        "reg-absoluteerror",
        "reg-pseudohuber",
        "reg-squaredlogerror",
        "count-poisson",
        "reg-tweedie",
        "reg-gamma",
        "xgboost-1.7.6-binary-logistic",
        "xgboost-1.7.6-multi-softprob",
        "xgboost-1.7.6-regression-unnamed",
        "xgboost-2.0.3-binary-logistic",
        "xgboost-2.0.3-multi-softprob",
        "xgboost-2.0.3-regression-unnamed",
    }
)
# Values no model may answer with a 5xx: float32's extremes, tiny, negative zero.
EXTREMES = (3.0e38, -3.0e38, 1e-30, -0.0, 1e10, -1e10)


def deploy(case: str, model_dir: Path) -> tuple[xgb.Booster, list[str], Any]:
    """Write ``case`` into ``model_dir``; (booster, feature names, rows to send)."""
    if case in model_zoo.ZOO:
        booster = model_zoo.save(case, model_dir)
        x, _ = model_zoo._data(seed=99)
        rows: Any = x[:8].astype(object)
        rows[1, 2] = None  # a missing value
        names = list(booster.feature_names or [f"f{i}" for i in range(booster.num_features())])
        return booster, names, rows.tolist()
    if case == "categorical":
        booster = model_zoo.save(case, model_dir)
        table, _ = model_zoo.categorical_table(rows=8, seed=5)
        x = table.column("x").to_pylist()
        color = table.column("color").to_pylist()
        return booster, ["x", "color"], [[a, b] for a, b in zip(x, color, strict=True)]
    booster = model_zoo.copy_fixture(case, model_dir)
    expected = json.loads((model_dir / "expected.json").read_text())
    names = list(booster.feature_names or [f"f{i}" for i in range(booster.num_features())])
    rows = expected["rows"]
    categories = (
        json.loads((model_dir / "metadata.json").read_text())["categories"]
        if (model_dir / "metadata.json").is_file()
        else {}
    )
    for column, name in enumerate(names):
        if name in categories:  # send the category, not its code
            for row in rows:
                row[column] = categories[name][int(row[column])]
    return booster, names, rows


def reference(booster: xgb.Booster, case: str, model_dir: Path, rows: list[list[Any]]) -> Any:
    """Booster.predict of these rows (categories recoded by XGBoost itself, or by the codes the
    old version was trained with)."""
    if case == "categorical":
        import pyarrow as pa

        x, color = zip(*rows, strict=True)
        table = pa.table({"x": list(x), "color": pa.array(list(color)).dictionary_encode()})
        return booster.predict(xgb.DMatrix(table, enable_categorical=True))
    if (model_dir / "expected.json").is_file():
        expected = json.loads((model_dir / "expected.json").read_text())
        matrix = np.array(
            [[np.nan if v is None else v for v in row] for row in expected["rows"]], np.float32
        )
        current = model_zoo.predict_codes(booster, matrix)
        # the old version's own predictions too: loading in 3.x changed nothing
        np.testing.assert_allclose(current, np.array(expected["predictions"]), atol=1e-6)
        return current
    matrix = np.array([[np.nan if v is None else v for v in row] for row in rows], np.float32)
    return booster.predict(xgb.DMatrix(matrix, feature_names=booster.feature_names))


def reasons(booster: xgb.Booster) -> list[str]:
    """What a refusal may name, from XGBoost's own description of the model: its booster
    (other than gbtree), its objective, its categorical features, its targets."""
    learner = json.loads(booster.save_config())["learner"]
    kind = learner["gradient_booster"]["name"]
    targets = int(learner["learner_model_param"].get("num_target", "1"))
    found = [f"objective {learner['objective']['name']!r}"]
    if kind != "gbtree":
        found.append(f"booster {kind!r}")
    if "c" in (booster.feature_types or []):
        found.append("categorical features")
    if targets > 1:
        found.append(f"multi-target model ({targets} targets)")
    return found


def serving(emulator: Emulator) -> Api:
    return Api(emulator.url, emulator.api_key)


def assert_served(response: Any, expected: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    served = np.array(response.json()["predictions"], dtype=np.float64)
    assert served.shape == expected.shape
    bound = 1e-5 * np.maximum(1.0, np.abs(expected))
    assert np.all(np.abs(served - expected) <= bound), (served, expected)


def csv_body(names: list[str], rows: list[list[Any]]) -> str:
    cell = lambda v: "" if v is None else str(v)  # noqa: E731
    return "\n".join([",".join(names), *(",".join(map(cell, row)) for row in rows)]) + "\n"


def no_5xx(api: Api, names: list[str], rows: list[list[Any]]) -> None:
    """Hostile inputs: 200 or a JSON 4xx, never a 5xx."""
    width = len(names)
    bodies: list[Any] = [
        {"instances": [[v] * width for v in EXTREMES]},
        {"instances": [[None] * width]},
        {"instances": [["not a number"] * width]},
        {"instances": [dict.fromkeys(names, 1e38)]},
        {"instances": [rows[0][:-1]]},
        {"instances": []},
    ]
    for body in bodies:
        response = api.predict_json(body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code != 200:
            assert response.json()["error"]["code"], response.text
    response = api.predict_csv(",".join(["1e38"] * width) + "\n")
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES)
def test_every_model_is_served_like_booster_predict_or_refused_at_start(
    case: str, engine: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    booster, names, rows = deploy(case, model_dir)
    try:
        emulator = Emulator().start(model_dir=model_dir, engine=engine, allow_missing=True)
    except (EngineConversionError, ModelRefused) as exc:
        assert engine == contract.ENGINE_ONNX, f"the xgboost engine refused {case}: {exc}"
        assert case not in ONNX_SERVED, f"the onnx engine refused {case}: {exc}"
        assert "is not supported by the onnx engine" in str(exc)
        assert any(reason in str(exc) for reason in reasons(booster)), str(exc)
        return
    with emulator, serving(emulator) as api:
        assert engine == contract.ENGINE_XGBOOST or case in ONNX_SERVED, case
        expected = reference(booster, case, model_dir, rows)
        health = api.get("/health").json()["model"]
        assert health["feature_names"] == names
        assert_served(api.predict_json({"instances": rows}), expected)
        objects = [{n: v for n, v in zip(names, row, strict=True) if v is not None} for row in rows]
        assert_served(api.predict_json({"instances": objects}), expected)
        assert_served(api.predict_csv(csv_body(names, rows)), expected)
        no_5xx(api, names, rows)


def test_an_unknown_category_is_a_400_naming_the_feature_and_the_value(tmp_path: Path) -> None:
    booster = model_zoo.save("categorical", tmp_path)
    stored = dict(booster.get_categories(export_to_arrow=True).to_arrow())["color"]
    with Emulator().start(model_dir=tmp_path) as emulator, serving(emulator) as api:
        health = api.get("/health").json()["model"]
        assert health["categories"] == {"color": stored.to_pylist()}
        response = api.predict_json({"instances": [{"x": 0.1, "color": "purple"}]})
        assert_error(response, 400, "unknown_category", "'color'", "'purple'")
        response = api.predict_csv("x,color\n0.1,purple\n")
        assert_error(response, 400, "unknown_category", "CSV line 2", "'purple'")
        response = api.predict_json({"instances": [[0.1, 2]]})
        assert_error(response, 400, "invalid_value", "'color'", "not a category name")


def test_an_unknown_category_scores_as_missing_when_configured(tmp_path: Path) -> None:
    booster = model_zoo.save("categorical", tmp_path)
    expected = model_zoo.predict_codes(booster, np.array([[0.1, np.nan], [-2.0, np.nan]]))
    started = Emulator().start(model_dir=tmp_path, unknown_category="missing")
    with started as emulator, serving(emulator) as api:
        rows = [{"x": 0.1, "color": "purple"}, {"x": -2.0, "color": "orange"}]
        assert_served(api.predict_json({"instances": rows}), expected)


def test_the_scoring_task_recodes_categories_like_the_predictor(tmp_path: Path) -> None:
    """lambda-ecs: POST /predict runs the ECS task (job mode), which scores the rows the job API
    recoded and stored."""
    booster, names, rows = deploy("categorical", tmp_path)
    expected = reference(booster, "categorical", tmp_path, rows)
    with (
        Emulator().start(contract.ARCH_LAMBDA_ECS, model_dir=tmp_path) as emulator,
        serving(emulator) as api,
    ):
        objects = [dict(zip(names, row, strict=True)) for row in rows]
        assert_served(api.predict_json({"instances": objects}), expected)
        response = api.post("/jobs", json={"instances": [{"x": 1.0, "color": "purple"}]})
        assert_error(response, 400, "unknown_category", "'purple'")


def test_a_batch_job_scores_category_names_with_categories_from_metadata(tmp_path: Path) -> None:
    """stepfunctions-batch, a model of XGBoost 1.7.6 trained on codes: the categories recorded
    in metadata.json reach the Batch job (MODEL_CATEGORIES), which recodes a CSV of names."""
    case = "xgboost-1.7.6-categorical-codes"
    booster, names, rows = deploy(case, tmp_path)
    expected = reference(booster, case, tmp_path, rows)
    with (
        Emulator().start(contract.ARCH_STEPFUNCTIONS_BATCH, model_dir=tmp_path) as emulator,
        serving(emulator) as api,
    ):
        s3 = emulator.client("s3")
        s3.put_object(Bucket=emulator.bucket, Key="inputs/cat.csv", Body=csv_body(names, rows))
        accepted = api.post(
            "/jobs",
            json={
                "input_uri": f"s3://{emulator.bucket}/inputs/cat.csv",
                "output_uri": f"s3://{emulator.bucket}/results/cat/",
            },
        )
        assert accepted.status_code == 202, accepted.text
        job_url = f"/jobs/{accepted.json()['job_id']}"
        deadline = time.monotonic() + 120
        while (job := api.get(job_url).json())["status"] in ("PENDING", "RUNNING"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        assert job["status"] == contract.STATUS_SUCCEEDED, job
        part = s3.get_object(Bucket=emulator.bucket, Key="results/cat/part-00000.csv")
        lines = part["Body"].read().decode().splitlines()
    served = np.array([float(line.split(",")[-1]) for line in lines[1:]])
    np.testing.assert_allclose(served, expected, atol=1e-6)

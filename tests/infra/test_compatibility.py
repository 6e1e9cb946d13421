"""What the program serves and refuses at deploy (components/compatibility.py), and the
metadata.json it records: through the real program (__main__.py under Pulumi mocks) and the
emulator's start, which compute it with the same function."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pulumi
import pytest

from components.compatibility import ModelRefused, model_metadata
from mlserve.local.stores import ModelArtifact, ModelNotFound
from runtime import contract
from runtime.modelfile import sha256_file
from tests import model_zoo
from tests.infra.conftest import run_stack

FUNCTION = "aws:lambda/function:Function"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
OLD_CATEGORICAL = "xgboost-1.7.6-categorical-codes"


def metadata_of(path: Path) -> dict[str, object]:
    digest = sha256_file(path)
    return model_metadata(path, "m", digest[:12], digest)


def test_a_model_json_without_metadata_is_described_by_the_model_itself(tmp_path: Path) -> None:
    booster = model_zoo.save("multi-output", tmp_path)
    metadata = metadata_of(tmp_path / "model.json")
    assert metadata["feature_names"] == booster.feature_names
    assert metadata["num_target"] == 2 and metadata["booster"] == "gbtree"
    assert metadata["categories"] == {} and metadata["categories_source"] is None


def test_the_models_own_description_wins_over_a_metadata_file(tmp_path: Path) -> None:
    model_zoo.save("binary-logistic-unnamed", tmp_path)
    (tmp_path / "metadata.json").write_text(
        json.dumps({"feature_names": ["a", "b", "c", "d"], "objective": "x", "auc": 0.9})
    )
    metadata = metadata_of(tmp_path / "model.json")
    assert metadata["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert metadata["objective"] == "binary:logistic"
    assert metadata["auc"] == 0.9  # what only the file knows is kept


def test_categories_come_from_the_model_when_it_stores_them(tmp_path: Path) -> None:
    booster = model_zoo.save("categorical", tmp_path)
    stored = dict(booster.get_categories(export_to_arrow=True).to_arrow())["color"].to_pylist()
    metadata = metadata_of(tmp_path / "model.json")
    assert metadata["categories"] == {"color": stored}
    assert metadata["categories_source"] == "model"
    assert metadata["feature_types"] == ["float", "c"]


@pytest.mark.parametrize(
    ("recorded", "reason"),
    [
        ({"color": ["blue", "red"]}, "differ from those the model stores"),
        ({"x": ["a"]}, "'x', which is not categorical"),
    ],
)
def test_categories_a_metadata_file_contradicts_are_refused(
    tmp_path: Path, recorded: dict[str, list[str]], reason: str
) -> None:
    model_zoo.save("categorical", tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"categories": recorded}))
    with pytest.raises(ModelRefused, match=reason):
        metadata_of(tmp_path / "model.json")


def test_an_old_model_takes_its_categories_from_the_metadata_file(tmp_path: Path) -> None:
    model_zoo.copy_fixture(OLD_CATEGORICAL, tmp_path)
    metadata = metadata_of(tmp_path / "model.json")
    assert metadata["categories"] == {"color": ["red", "green", "blue"]}
    assert metadata["categories_source"] == "metadata"


def test_a_file_xgboost_cannot_load_is_refused_naming_xgboost(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"learner": {"not": "a model"}}')
    with pytest.raises(ModelRefused, match=r"XGBoost 3\.\d+\.\d+ cannot load the model"):
        metadata_of(path)


def test_the_program_refuses_such_a_model_before_any_resource(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"learner": {}}')
    with pytest.raises(pulumi.RunError, match="mlserve:modelPath: cannot serve this model"):
        run_stack({"modelPath": str(path)})


def test_the_program_passes_categories_recorded_only_in_metadata_to_every_loader(
    tmp_path: Path,
) -> None:
    model_zoo.copy_fixture(OLD_CATEGORICAL, tmp_path)
    run = run_stack(
        {
            "modelPath": str(tmp_path / "model.json"),
            "architecture": "lambda,lambda-ecs,stepfunctions-batch",
            "unknownCategory": "missing",
        }
    )
    expected = '{"color":["red","green","blue"]}'
    predictor = run.named("predictor-function").inputs["environment"]["variables"]
    assert predictor[contract.ENV_MODEL_CATEGORIES] == expected
    assert predictor[contract.ENV_UNKNOWN_CATEGORY] == "missing"
    (task,) = json.loads(run.one(TASK_DEFINITION).inputs["containerDefinitions"])
    task_env = {e["name"]: e["value"] for e in task["environment"]}
    assert task_env[contract.ENV_MODEL_CATEGORIES] == expected
    job_env = {
        e["name"]: e["value"]
        for e in json.loads(run.one(JOB_DEFINITION).inputs["containerProperties"])["environment"]
    }
    assert job_env[contract.ENV_MODEL_CATEGORIES] == expected
    for function in run.of_type(FUNCTION):  # the job APIs read metadata.json instead
        variables = function.inputs["environment"]["variables"]
        if contract.ENV_MODEL_METADATA_URI in variables:
            assert contract.ENV_MODEL_CATEGORIES not in variables
            assert variables[contract.ENV_UNKNOWN_CATEGORY] == "missing"
    content = json.loads(run.named("model-store-metadata").inputs["content"])
    assert content["categories"] == {"color": ["red", "green", "blue"]}


def test_unknown_category_accepts_only_error_or_missing(tiny_model: Path) -> None:
    from components.settings import SettingsError

    with pytest.raises(SettingsError, match="mlserve:unknownCategory: unknown value 'ignore'"):
        run_stack({"modelPath": str(tiny_model), "unknownCategory": "ignore"})


def test_the_emulator_finds_model_json_and_computes_the_same_metadata(tmp_path: Path) -> None:
    model_zoo.save("quantile", tmp_path)
    artifact = ModelArtifact.from_dir(tmp_path)
    assert artifact.model_path.name == "model.json" and artifact.metadata_path is None
    assert artifact.metadata == model_metadata(
        artifact.model_path, artifact.name, artifact.version, artifact.sha256
    )
    shutil.copy(tmp_path / "model.json", tmp_path / "model.ubj")
    with pytest.raises(ModelNotFound, match=r"holds both model\.ubj and model\.json"):
        ModelArtifact.from_dir(tmp_path)
    with pytest.raises(ModelNotFound, match=r"looked for model\.ubj or model\.json"):
        ModelArtifact.from_dir(tmp_path / "absent")


def test_a_metadata_file_that_is_not_json_is_refused_naming_it(tmp_path: Path) -> None:
    model_zoo.save("binary-logistic", tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ModelRefused, match=r"metadata\.json is not valid JSON"):
        ModelArtifact.from_dir(tmp_path)


def test_categories_read_otherwise_than_xgboost_exports_them_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoding the runtime's reader gets wrong (simulated: it reverses the list) must stop
    the deployment, not recode silently wrong."""
    import runtime.model

    real = runtime.model.model_categories
    monkeypatch.setattr(
        runtime.model,
        "model_categories",
        lambda doc, names: {k: v[::-1] for k, v in real(doc, names).items()},
    )
    model_zoo.save("categorical", tmp_path)
    with pytest.raises(ModelRefused, match="this encoding is not supported"):
        metadata_of(tmp_path / "model.json")

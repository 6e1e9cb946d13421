"""runtime/model.py against moto S3: verify, cache, refuse foreign formats, retry."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from mlserve.train import TrainResult, sha256_file
from runtime.contract import model_key
from runtime.model import ModelCache, ModelUnavailable, detect_format, load_model

BUCKET = "mlserve-models-test"


def upload(s3: Any, path: Path, version: str = "v1") -> str:
    key = model_key("example", version)
    s3.upload_file(str(path), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def test_loads_verifies_and_describes_the_model(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = upload(s3, example_model.model_path)
    model = load_model(uri, example_model.sha256, s3, tmp_path)
    info = model.info
    assert (info.name, info.version, info.sha256) == ("example", "v1", example_model.sha256)
    assert info.num_features == 30
    assert info.feature_names[0] == "mean_radius"
    assert info.objective == "binary:logistic"
    rows = np.random.default_rng(0).normal(10, 5, size=(7, 30)).astype(np.float32)
    booster = xgb.Booster(model_file=str(example_model.model_path))
    reference = booster.predict(xgb.DMatrix(rows, feature_names=booster.feature_names))
    np.testing.assert_allclose(model.predict(rows), reference, atol=1e-6)


def test_cached_copy_is_reused_without_s3(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = upload(s3, example_model.model_path)
    load_model(uri, example_model.sha256, s3, tmp_path)

    class NoS3:
        def get_object(self, **_: Any) -> Any:
            raise AssertionError("S3 must not be read when the cache holds the model")

    assert load_model(uri, example_model.sha256, NoS3(), tmp_path).info.num_features == 30


def test_tampered_cache_file_is_downloaded_again(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = upload(s3, example_model.model_path)
    load_model(uri, example_model.sha256, s3, tmp_path)
    (cached,) = tmp_path.glob(f"{example_model.sha256}.*")
    cached.write_bytes(b"{}")
    assert load_model(uri, example_model.sha256, s3, tmp_path).info.num_features == 30
    assert sha256_file(cached) == example_model.sha256


def test_altered_object_is_refused_with_both_digests(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = upload(s3, example_model.model_path)
    s3.put_object(Bucket=BUCKET, Key=model_key("example", "v1"), Body=b'{"learner": {}}')
    with pytest.raises(ModelUnavailable, match="sha256 mismatch") as info:
        load_model(uri, example_model.sha256, s3, tmp_path)
    assert example_model.sha256 in str(info.value)
    assert not list(tmp_path.iterdir()), "a refused download must leave nothing in the cache"


def test_missing_object_names_the_uri(s3: Any, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/{model_key('example', 'nope')}"
    with pytest.raises(ModelUnavailable, match="cannot read the model object s3://"):
        load_model(uri, "0" * 64, s3, tmp_path)


def test_pickle_is_refused_even_with_a_matching_digest(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    blob = tmp_path / "model.pkl"
    blob.write_bytes(pickle.dumps({"not": "a model"}))
    uri = upload(s3, blob)
    with pytest.raises(ModelUnavailable, match="pickle"):
        load_model(uri, sha256_file(blob), s3, tmp_path / "cache")


def test_json_format_loads_too(s3: Any, example_model: TrainResult, tmp_path: Path) -> None:
    as_json = tmp_path / "model.json"
    xgb.Booster(model_file=str(example_model.model_path)).save_model(as_json)
    uri = upload(s3, as_json)
    model = load_model(uri, sha256_file(as_json), s3, tmp_path / "cache")
    assert model.info.num_features == 30


@pytest.mark.parametrize(
    ("head", "expected"),
    [(b'{"learner"', "json"), (b"{ ", "json"), (b"{L\x00\x00", "ubj"), (b"{i\x07", "ubj")],
)
def test_detect_format(head: bytes, expected: str) -> None:
    assert detect_format(head) == expected


@pytest.mark.parametrize("head", [b"\x80\x04\x95", b"binf\x00", b"", b"{?"])
def test_detect_format_refuses_others(head: bytes) -> None:
    with pytest.raises(ModelUnavailable):
        detect_format(head)


def test_multiclass_predicts_a_list_per_row(s3: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    y = rng.integers(0, 3, size=60)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(x, label=y), 5)
    path = tmp_path / "multi.ubj"
    booster.save_model(path)
    uri = upload(s3, path)
    model = load_model(uri, sha256_file(path), s3, tmp_path / "cache")
    assert model.info.num_class == 3
    out = model.predict(x[:2].astype(np.float32))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1, atol=1e-6)


def test_cache_retries_after_a_failed_load(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    key = model_key("example", "v1")
    cache = ModelCache(f"s3://{BUCKET}/{key}", example_model.sha256, lambda: s3, tmp_path)
    with pytest.raises(ModelUnavailable):
        cache.get()  # not uploaded yet
    s3.upload_file(str(example_model.model_path), BUCKET, key)
    assert cache.get() is cache.get()


def test_cache_without_configuration_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="MODEL_URI"):
        ModelCache(None, None, lambda: None, tmp_path).get()

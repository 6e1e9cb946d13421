"""runtime/model.py against moto S3: verify, cache, refuse foreign formats, retry."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from mlserve.train import TrainResult, sha256_file
from runtime.contract import model_key, onnx_model_key
from runtime.model import ModelCache, ModelUnavailable, detect_format, load_model
from runtime.modelfile import Prefetch

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


# --- the onnx engine (issue 8) ----------------------------------------------------------------
ONNX_TOLERANCE = 1e-5  # the agreement the deploy-time verification guarantees


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, example_model: TrainResult) -> Any:
    from components.engine import convert_to_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return convert_to_onnx(example_model.model_path, out, name="example", version="v1")


def upload_onnx(s3: Any, path: Path, version: str = "v1") -> str:
    key = onnx_model_key("example", version)
    s3.upload_file(str(path), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def test_onnx_engine_loads_and_agrees_with_xgboost(
    s3: Any, example_model: TrainResult, converted: Any, tmp_path: Path
) -> None:
    onnx_model = load_model(
        upload_onnx(s3, converted.out_path), converted.sha256, s3, tmp_path, "onnx"
    )
    xgb_model = load_model(upload(s3, example_model.model_path), example_model.sha256, s3, tmp_path)

    assert onnx_model.info.engine == "onnx" and xgb_model.info.engine == "xgboost"
    assert onnx_model.info.as_dict()["engine"] == "onnx"
    assert xgb_model.info.as_dict()["engine"] == "xgboost"
    expected = {**xgb_model.info.as_dict(), "sha256": converted.sha256, "engine": "onnx"}
    assert onnx_model.info.as_dict() == expected
    assert onnx_model.feature_index == xgb_model.feature_index
    rng = np.random.default_rng(4)
    rows = rng.normal(10, 5, size=(300, 30)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    for batch in (rows[:1], rows):
        got, want = onnx_model.predict(batch), xgb_model.predict(batch)
        assert got.shape == want.shape == (len(batch),)
        assert float(np.max(np.abs(got - want))) <= ONNX_TOLERANCE
    # a float64 or non-contiguous matrix is served too (converted once, as XGBoost would)
    np.testing.assert_allclose(
        onnx_model.predict(rows[:, :].astype(np.float64)[::2]),
        xgb_model.predict(rows[::2]),
        atol=ONNX_TOLERANCE,
    )


def test_onnx_engine_never_imports_xgboost(converted: Any, tmp_path: Path) -> None:
    """The onnx layer has no xgboost: loading and predicting must not even try to import it."""
    script = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("xgboost", "scipy"):
            raise ImportError(f"{{name}} is not in the onnx layer")
sys.meta_path.insert(0, Block())
import shutil
from pathlib import Path
import numpy as np
from runtime.model import ModelCache
cache = Path({str(tmp_path)!r})
shutil.copy({str(converted.out_path)!r}, cache / "{converted.sha256}.onnx")
class NoS3:
    def get_object(self, **kw): raise AssertionError("cached")
model = ModelCache("s3://b/models/example/v1/model.onnx", "{converted.sha256}", NoS3, cache,
                   engine="onnx").get()
print(model.info.engine, model.predict(np.zeros((2, 30), np.float32)).shape)
"""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["onnx", "(2,)"]


def test_onnx_engine_multiclass_shape_matches_xgboost(s3: Any, tmp_path: Path) -> None:
    from components.engine import convert_to_onnx

    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4))
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3},
        xgb.DMatrix(x, label=rng.integers(0, 3, size=90)),
        5,
    )
    path = tmp_path / "multi.ubj"
    booster.save_model(path)
    conversion = convert_to_onnx(path, tmp_path / "multi.onnx")
    model = load_model(
        upload_onnx(s3, conversion.out_path), conversion.sha256, s3, tmp_path / "c", "onnx"
    )
    assert model.info.num_class == 3 and model.info.objective == "multi:softprob"
    rows = x[:5].astype(np.float32)
    got = model.predict(rows)
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, booster.inplace_predict(rows), atol=ONNX_TOLERANCE)


def test_engine_and_object_must_match(
    s3: Any, example_model: TrainResult, converted: Any, tmp_path: Path
) -> None:
    ubj = upload(s3, example_model.model_path)
    onnx_uri = upload_onnx(s3, converted.out_path)
    with pytest.raises(ModelUnavailable, match="MODEL_ENGINE is onnx but MODEL_URI points at"):
        load_model(ubj, example_model.sha256, s3, tmp_path, "onnx")
    with pytest.raises(ModelUnavailable, match="MODEL_ENGINE is xgboost but MODEL_URI points at"):
        load_model(onnx_uri, converted.sha256, s3, tmp_path, "xgboost")
    with pytest.raises(ModelUnavailable, match="MODEL_ENGINE='tflite' is not an engine"):
        load_model(onnx_uri, converted.sha256, s3, tmp_path, "tflite")
    # unset: the object's name decides
    assert load_model(onnx_uri, converted.sha256, s3, tmp_path).info.engine == "onnx"


def test_an_xgboost_model_renamed_model_onnx_is_refused(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = upload_onnx(s3, example_model.model_path)
    with pytest.raises(ModelUnavailable, match="is an UBJ model, which the onnx engine"):
        load_model(uri, example_model.sha256, s3, tmp_path, "onnx")


def test_pickle_named_model_onnx_is_refused(s3: Any, tmp_path: Path) -> None:
    blob = tmp_path / "model.pkl"
    blob.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ModelUnavailable, match="pickle"):
        load_model(upload_onnx(s3, blob), sha256_file(blob), s3, tmp_path / "cache", "onnx")


def test_an_onnx_model_without_mlserve_metadata_is_refused(
    s3: Any, converted: Any, tmp_path: Path
) -> None:
    import onnx

    foreign = onnx.load(str(converted.out_path))
    del foreign.metadata_props[:]
    path = tmp_path / "foreign.onnx"
    onnx.save(foreign, str(path))
    with pytest.raises(ModelUnavailable, match="not an ONNX model converted by mlserve"):
        load_model(upload_onnx(s3, path), sha256_file(path), s3, tmp_path / "cache", "onnx")


def test_altered_onnx_object_is_refused(s3: Any, converted: Any, tmp_path: Path) -> None:
    uri = upload_onnx(s3, converted.out_path)
    data = bytearray(converted.out_path.read_bytes())
    data[-1] ^= 1
    s3.put_object(Bucket=BUCKET, Key=onnx_model_key("example", "v1"), Body=bytes(data))
    with pytest.raises(ModelUnavailable, match="sha256 mismatch"):
        load_model(uri, converted.sha256, s3, tmp_path, "onnx")


def test_detect_format_knows_onnx(converted: Any) -> None:
    assert detect_format(converted.out_path.read_bytes()[:16]) == "onnx"


def test_a_prefetched_download_is_loaded_without_reading_s3_again(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = upload(s3, example_model.model_path)
    prefetch = Prefetch(s3, uri, example_model.sha256, tmp_path)

    class NoS3:
        def get_object(self, **_: Any) -> Any:
            raise AssertionError("the prefetched file is the one loaded")

    cache = ModelCache(uri, example_model.sha256, NoS3, tmp_path, prefetch=prefetch)
    assert cache.get().info.num_features == 30


def test_a_failed_prefetch_is_fetched_again_and_reported_by_the_load(
    s3: Any, example_model: TrainResult, tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/{model_key('example', 'later')}"
    prefetch = Prefetch(s3, uri, example_model.sha256, tmp_path)  # not uploaded yet: fails
    with pytest.raises(ModelUnavailable, match="cannot read the model object"):
        load_model(uri, example_model.sha256, s3, tmp_path, prefetch=prefetch)
    s3.upload_file(str(example_model.model_path), BUCKET, model_key("example", "later"))
    failed = Prefetch(s3, f"s3://{BUCKET}/{model_key('example', 'gone')}", "0" * 64, tmp_path)
    cache = ModelCache(uri, example_model.sha256, lambda: s3, tmp_path, prefetch=failed)
    assert cache.get().info.num_features == 30  # a prefetch of another object is not used

"""Load the model from S3 and predict, with the xgboost or the onnx engine (one interface).

- ``xgboost`` (the reference): XGBoost's own JSON and UBJSON formats, ``Booster.inplace_predict``
  (``gblinear`` models, which it does not support, predict through a ``DMatrix``: the very
  ``Booster.predict``). Categorical features are recoded with the categories the model stores
  (runtime/categories.py) before they reach XGBoost.
- ``onnx`` (issue 8): the ``model.onnx`` converted and verified against XGBoost at deploy time
  (components/engine.py), run by onnxruntime on one thread. This path never imports xgboost (the
  onnx Lambda layer has none): feature names, objective and classes come from the ONNX model's
  ``metadata_props``.
- Never pickle or XGBoost's legacy binary format: the first bytes of the object are checked
  (JSON ``{``, UBJSON ``{`` + a length marker, or an ONNX protobuf) before any library parses it,
  and they must be the chosen engine's format.
- The object is downloaded once per container into a cache directory (``/tmp/mlserve`` on
  Lambda), its sha256 checked against the digest recorded at deploy time; a cached file whose
  digest matches is reused without touching S3.
- A failed load raises :class:`ModelUnavailable` (HTTP 503) and is retried on the next request.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime import contract
from runtime.categories import CATEGORICAL, Categories, categories_by_feature, model_categories
from runtime.contract import parse_model_key
from runtime.modelfile import (  # the model file's names stay importable from here too
    DEFAULT_CACHE_DIR,
    ModelUnavailable,
    Prefetch,
    detect_format,
    fetch,
    parse_s3_uri,
)

if TYPE_CHECKING:
    import xgboost

# engine -> the library it loads models with
ENGINE_MODULES = {contract.ENGINE_XGBOOST: "xgboost", contract.ENGINE_ONNX: "onnxruntime"}
# file format -> engine that loads it
_FORMAT_ENGINE = {
    "json": contract.ENGINE_XGBOOST,
    "ubj": contract.ENGINE_XGBOOST,
    "onnx": contract.ENGINE_ONNX,
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    num_features: int
    feature_names: tuple[str, ...]
    objective: str
    num_class: int
    engine: str = contract.ENGINE_XGBOOST
    booster: str = "gbtree"  # gbtree, dart or gblinear
    feature_types: tuple[str, ...] = ()  # XGBoost's feature types ("c": categorical); () unknown
    # categorical feature name -> its categories (recorded in the model, or in metadata.json)
    categories: Mapping[str, Categories] = field(default_factory=dict)
    num_target: int = 1  # outputs of a multi-output or multi-quantile model

    @property
    def outputs(self) -> int:
        """Predictions per row: the class probabilities of multi:softprob, the targets (or
        quantiles) of a multi-output model, else 1."""
        if self.objective == "multi:softprob":
            return self.num_class
        return 1 if self.objective == "multi:softmax" else self.num_target

    def as_dict(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "num_features": self.num_features,
            "feature_names": list(self.feature_names),
            "objective": self.objective,
            "engine": self.engine,
        }
        if self.categories:
            info["categories"] = {n: list(c.values) for n, c in self.categories.items()}
        return info


class LoadedModel:
    """A model plus what the API says about it; :meth:`predict` is the engine's."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self._index = {name: i for i, name in enumerate(info.feature_names)}

    @property
    def feature_index(self) -> dict[str, int]:
        return self._index

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """One prediction per row of a 2-D float32 matrix: shape (n,), or (n, classes) for
        multi-class probabilities."""
        return self._predict(rows)

    def _predict(self, rows: np.ndarray) -> np.ndarray:  # the engine's
        raise NotImplementedError


class XGBoostModel(LoadedModel):
    """The reference engine: ``Booster.inplace_predict``, or ``Booster.predict`` on a DMatrix for
    ``gblinear`` (XGBoost's inplace prediction supports only tree boosters). Both use every
    tree (a dart model's dropout applies only to training) and the model's base_score."""

    def __init__(self, booster: xgboost.Booster, info: ModelInfo) -> None:
        super().__init__(info)
        self.booster = booster
        if info.booster == "gblinear":
            self._predict = self._predict_dmatrix  # type: ignore[method-assign]

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(rows))

    def _predict_dmatrix(self, rows: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        matrix = xgb.DMatrix(rows, missing=np.nan, nthread=1)
        return np.asarray(self.booster.predict(matrix, validate_features=False))


class OnnxModel(LoadedModel):
    """The onnx engine: one onnxruntime session, one thread, input/output names resolved once."""

    def __init__(self, session: Any, info: ModelInfo) -> None:
        super().__init__(info)
        self.session = session
        self._input = session.get_inputs()[0].name
        self._outputs = [contract.ONNX_OUTPUT_NAME]
        self._run = session.run

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        if rows.dtype != np.float32 or not rows.flags.c_contiguous:
            rows = np.ascontiguousarray(rows, dtype=np.float32)
        result: np.ndarray = self._run(self._outputs, {self._input: rows})[0]
        return result


def describe_booster(booster: xgboost.Booster) -> dict[str, Any]:
    """What the API and metadata.json say about a loaded model: feature names (``f0``... when
    the model has none) and types, objective, booster, classes, outputs per row, and the
    categories it stores (runtime/categories.py). Raises ValueError for stored categories it
    cannot read."""
    learner = json.loads(booster.save_config()).get("learner", {})
    params = learner.get("learner_model_param", {})
    num_features = int(booster.num_features())
    names = list(booster.feature_names or [f"f{i}" for i in range(num_features)])
    types = list(booster.feature_types or ["float"] * num_features)
    described: dict[str, Any] = {
        "feature_names": names,
        "feature_types": types,
        "num_features": num_features,
        "objective": str(learner.get("objective", {}).get("name", "unknown")),
        "booster": str(learner.get("gradient_booster", {}).get("name", "gbtree")),
        "num_class": int(params.get("num_class", "0") or 0),
        "num_target": int(params.get("num_target", "1") or 1),
        "categories": {},
    }
    if CATEGORICAL in types:
        document = json.loads(bytes(booster.save_raw("json")))
        described["categories"] = model_categories(document, names)
    return described


def model_info(
    described: Mapping[str, Any], name: str, version: str, sha256: str, engine: str
) -> ModelInfo:
    """The :class:`ModelInfo` of a model described by :func:`describe_booster` or metadata.json
    (ValueError when its categories are not valid)."""
    names = tuple(str(n) for n in described["feature_names"])
    types = tuple(str(t) for t in described.get("feature_types") or ())
    return ModelInfo(
        name=name,
        version=version,
        sha256=sha256,
        num_features=len(names),
        feature_names=names,
        objective=str(described.get("objective", "unknown")),
        num_class=int(described.get("num_class", 0) or 0),
        engine=engine,
        booster=str(described.get("booster", "gbtree")),
        feature_types=types,
        categories=categories_by_feature(names, types, described.get("categories")),
        num_target=int(described.get("num_target", 1) or 1),
    )


def _file_format(path: Path) -> str:
    with path.open("rb") as fh:
        return detect_format(fh.read(16))


def _check_engine(engine: str | None, key: str) -> str:
    """The engine to load ``key`` with: MODEL_ENGINE when set, else the object's name decides."""
    by_key = contract.engine_of_key(key)
    if engine is None or not engine.strip():
        return by_key
    engine = engine.strip().lower()
    if engine not in contract.ENGINES:
        raise ModelUnavailable(
            f"{contract.ENV_MODEL_ENGINE}={engine!r} is not an engine; allowed: "
            f"{', '.join(contract.ENGINES)}"
        )
    if engine != by_key:
        expected = (
            contract.ONNX_OBJECT_NAME
            if engine == contract.ENGINE_ONNX
            else contract.MODEL_OBJECT_NAME
        )
        raise ModelUnavailable(
            f"{contract.ENV_MODEL_ENGINE} is {engine} but {contract.ENV_MODEL_URI} points at "
            f"{key.rsplit('/', 1)[-1]}, not {expected}: redeploy (pulumi up)"
        )
    return engine


def load_model(
    uri: str,
    expected_sha256: str,
    s3: Any,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    engine: str | None = None,
    *,
    categories: Mapping[str, Any] | None = None,
    prefetch: Prefetch | None = None,
) -> LoadedModel:
    """Download (or reuse the cached copy of) the model at ``uri``, verify it, load it.

    ``engine`` (MODEL_ENGINE) must match the object: ``onnx`` loads ``model.onnx``, ``xgboost``
    ``model.ubj``; None picks the engine from the object's name. ``categories``
    (MODEL_CATEGORIES) are those recorded at deploy time for a model that stores none.
    ``prefetch``: the download of this very file, already started (the predictor's cold start):
    the engine's library is imported while it finishes; if it failed, the file is fetched again
    here and that error reported.
    """
    try:
        _, key = parse_s3_uri(uri)
        name, version = parse_model_key(key)
    except ValueError as exc:
        raise ModelUnavailable(f"MODEL_URI is not a model location: {exc}") from exc
    engine = _check_engine(engine, key)
    expected = expected_sha256.strip().lower()
    if len(expected) != 64:
        raise ModelUnavailable("MODEL_SHA256 is not set to the model's sha256 hex digest")
    importlib.import_module(ENGINE_MODULES[engine])  # while a prefetch is still downloading
    cached: Path | None = None
    if prefetch is not None and (prefetch.uri, prefetch.expected) == (uri, expected):
        try:
            cached = prefetch.result()
        except Exception:  # fetched again below, which reports the error
            cached = None
    if cached is None:
        cached = fetch(s3, uri, expected, cache_dir)
    fmt = _file_format(cached)
    if _FORMAT_ENGINE[fmt] != engine:
        raise ModelUnavailable(
            f"{uri} is an {fmt.upper()} model, which the {engine} engine does not load "
            f"({contract.ENV_MODEL_ENGINE}={engine}): redeploy (pulumi up)"
        )
    if engine == contract.ENGINE_ONNX:
        return _load_onnx(cached, uri, name, version, expected)
    return _load_xgboost(cached, uri, name, version, expected, categories=categories)


def _load_xgboost(
    path: Path,
    uri: str,
    name: str,
    version: str,
    sha256: str,
    *,
    categories: Mapping[str, Any] | None = None,
) -> XGBoostModel:
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        path.unlink(missing_ok=True)
        raise ModelUnavailable(f"XGBoost could not load {uri}: {str(exc).splitlines()[0]}") from exc
    try:
        described = describe_booster(booster)
        if categories and not described["categories"]:
            described["categories"] = categories
        info = model_info(described, name, version, sha256, contract.ENGINE_XGBOOST)
    except ValueError as exc:
        raise ModelUnavailable(f"{uri}: {exc}") from exc
    return XGBoostModel(booster, info)


def onnx_session_options() -> Any:
    """One intra-op and one inter-op thread, every graph optimization: per-row cost is what
    real-time serving pays, and Lambda's vCPUs serve one request at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return options


def _load_onnx(path: Path, uri: str, name: str, version: str, sha256: str) -> OnnxModel:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(
            str(path), sess_options=onnx_session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        path.unlink(missing_ok=True)
        raise ModelUnavailable(f"onnxruntime could not load {uri}: {exc}") from exc
    meta = session.get_modelmeta().custom_metadata_map
    try:
        names = tuple(str(n) for n in json.loads(meta[contract.ONNX_META_FEATURE_NAMES]))
        objective = meta[contract.ONNX_META_OBJECTIVE]
        num_class = int(meta.get(contract.ONNX_META_NUM_CLASS, "0") or 0)
        outputs = [o.name for o in session.get_outputs()]
        (model_input,) = session.get_inputs()
        width = model_input.shape[1]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ModelUnavailable(
            f"{uri} is not an ONNX model converted by mlserve (metadata, input or output "
            f"missing: {exc}); redeploy (pulumi up) with mlserve:engine onnx"
        ) from exc
    if outputs != [contract.ONNX_OUTPUT_NAME] or (isinstance(width, int) and width != len(names)):
        raise ModelUnavailable(
            f"{uri}: outputs {outputs} / input width {width} do not match the recorded "
            f"{len(names)} features and output {contract.ONNX_OUTPUT_NAME!r}; redeploy"
        )
    info = ModelInfo(
        name, version, sha256, len(names), names, objective, num_class, contract.ENGINE_ONNX
    )
    return OnnxModel(session, info)


class ModelCache:
    """Holds the loaded model for the life of the container; reloads after a failure."""

    def __init__(
        self,
        uri: str | None,
        sha256: str | None,
        s3_factory: Callable[[], Any],
        cache_dir: Path = DEFAULT_CACHE_DIR,
        engine: str | None = None,
        *,
        categories: str | None = None,
        prefetch: Prefetch | None = None,
    ) -> None:
        self._uri = uri
        self._prefetch = prefetch  # used by the first load only
        self._categories = categories
        self._engine = engine
        self._sha256 = sha256
        self._s3_factory = s3_factory
        self._cache_dir = cache_dir
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()

    def _recorded_categories(self) -> dict[str, Any] | None:
        if not self._categories or not self._categories.strip():
            return None
        try:
            recorded = json.loads(self._categories)
        except ValueError as exc:
            raise ModelUnavailable(f"{contract.ENV_MODEL_CATEGORIES} is not JSON: {exc}") from exc
        if not isinstance(recorded, dict):
            raise ModelUnavailable(f"{contract.ENV_MODEL_CATEGORIES} is not a JSON object")
        return recorded

    def get(self) -> LoadedModel:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                if not self._uri or not self._sha256:
                    raise ModelUnavailable("MODEL_URI and MODEL_SHA256 must be set")
                prefetch, self._prefetch = self._prefetch, None
                self._model = load_model(
                    self._uri,
                    self._sha256,
                    self._s3_factory(),
                    self._cache_dir,
                    self._engine,
                    categories=self._recorded_categories(),
                    prefetch=prefetch,
                )
            return self._model

"""Deploy-time conversion of the XGBoost model to ONNX for the ``onnx`` engine (issue 8).

:func:`convert_to_onnx` converts with onnxmltools, rewires the graph so it has exactly one
output, ``prediction``, with the shape the ``xgboost`` engine returns (binary:logistic: the
probability of class 1, ``(n,)``; multi:softprob: ``(n, classes)``; regression: ``(n,)``),
records what the runtime needs in the model's ``metadata_props`` (feature names, objective,
number of classes, name, version, the source model's sha256), and **verifies** the result
against ``Booster.predict`` with onnxruntime on a deterministic sample of
:data:`VERIFY_ROWS` rows that cover every split threshold of the model (exactly at it and one
float32 step either side), missing values (NaN cells and all-NaN rows) and extreme values
(zeros, +-1e-30, +-1e10, +-3e38, the float32 extremes).

Tolerance: every prediction must satisfy ``|onnx - xgboost| <= TOLERANCE * max(1, |xgboost|)``
with ``TOLERANCE = 1e-5``: an absolute 1e-5 for probabilities and any output of magnitude up to
1, relative beyond that (float32 sums of many leaves differ in their last bits when the trees are
added in another order, so a regression output of 1e5 can only agree to ~1e-2 absolutely).

An unsupported model (objective, booster type, categorical features, multi-target) or a failed
verification raises :class:`EngineConversionError` naming the reason and the measured
difference; the Pulumi program turns it into a failed deployment. Nothing here imports Pulumi.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from runtime import contract

TOLERANCE: Final = 1e-5
VERIFY_ROWS: Final = 4096
VERIFY_SEED: Final = 20_251_125
ONNX_INPUT_NAME: Final = "input"

# objective -> how the converted graph's outputs map to the xgboost engine's predictions.
# Each was checked against Booster.predict (tests/infra/test_engine.py covers the first three,
# the targets; the others pass the same verification at deploy time or the deploy stops).
_CLASS1: Final = "class1"  # TreeEnsembleClassifier probabilities[:, 1] -> (n,)
_PROBABILITIES: Final = "probabilities"  # probabilities -> (n, classes)
_LABEL: Final = "label"  # multi:softmax: the class index as float32 -> (n,)
_VALUE: Final = "value"  # TreeEnsembleRegressor variable (n, 1) -> (n,)
SUPPORTED_OBJECTIVES: Final[dict[str, str]] = {
    "binary:logistic": _CLASS1,
    "multi:softprob": _PROBABILITIES,
    "multi:softmax": _LABEL,
    "reg:squarederror": _VALUE,
    "reg:absoluteerror": _VALUE,
    "reg:pseudohubererror": _VALUE,
    "reg:squaredlogerror": _VALUE,
    "count:poisson": _VALUE,
    "reg:gamma": _VALUE,
    "reg:tweedie": _VALUE,
}
_EXTREMES: Final = np.array(
    [
        *(0.0, -0.0, 1e-30, -1e-30, 1e10, -1e10, 3e38, -3e38),
        *(float(np.finfo(np.float32).max), float(np.finfo(np.float32).min)),
    ],
    dtype=np.float32,
)


class EngineConversionError(ValueError):
    """The model cannot be served by the onnx engine; the message says why (and by how much)."""


@dataclass(frozen=True)
class Conversion:
    """A converted and verified model."""

    out_path: Path
    sha256: str  # of the .onnx file
    source_sha256: str  # of the XGBoost model it was converted from
    objective: str
    num_features: int
    num_class: int
    max_abs_diff: float  # max |onnx - xgboost| over the verification sample
    max_scaled_diff: float  # max |onnx - xgboost| / max(1, |xgboost|): what the tolerance bounds
    tolerance: float
    rows_checked: int
    seconds: float  # conversion + verification


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_booster(model_path: Path) -> Any:
    import xgboost as xgb

    try:
        return xgb.Booster(model_file=str(model_path))
    except xgb.core.XGBoostError as exc:
        raise EngineConversionError(
            f"{model_path}: XGBoost cannot load the model: {str(exc).splitlines()[0]}"
        ) from exc


def _describe(booster: Any, model_path: Path) -> tuple[str, int]:
    """(objective, num_class) of a model the onnx engine supports, else EngineConversionError."""
    learner = json.loads(booster.save_config())["learner"]
    objective = str(learner["objective"]["name"])
    params = learner.get("learner_model_param", {})
    num_class = int(params.get("num_class", "0") or 0)
    num_target = int(params.get("num_target", "1") or 1)
    booster_type = str(learner.get("gradient_booster", {}).get("name", "unknown"))
    unsupported = "is not supported by the onnx engine; use mlserve:engine xgboost"
    if booster_type != "gbtree":
        raise EngineConversionError(
            f"{model_path}: booster {booster_type!r} {unsupported} (only gbtree converts)"
        )
    if objective not in SUPPORTED_OBJECTIVES:
        raise EngineConversionError(
            f"{model_path}: objective {objective!r} {unsupported}; supported objectives: "
            f"{', '.join(SUPPORTED_OBJECTIVES)}"
        )
    categorical = [
        name
        for name, kind in zip(
            booster.feature_names or [f"f{i}" for i in range(booster.num_features())],
            booster.feature_types or [],
            strict=False,
        )
        if kind == "c"
    ]
    if categorical:
        raise EngineConversionError(
            f"{model_path}: a model with categorical features "
            f"({', '.join(categorical[:5])}) {unsupported}"
        )
    if num_target > 1:
        raise EngineConversionError(
            f"{model_path}: a multi-target model ({num_target} targets) {unsupported}"
        )
    return objective, num_class


def split_thresholds(booster: Any) -> dict[int, np.ndarray]:
    """Feature index -> the sorted float32 thresholds its splits compare against."""
    raw = json.loads(bytes(booster.save_raw("json")))
    found: dict[int, set[float]] = defaultdict(set)
    for tree in raw["learner"]["gradient_booster"]["model"]["trees"]:
        for left, feature, condition in zip(
            tree["left_children"], tree["split_indices"], tree["split_conditions"], strict=True
        ):
            if left != -1:
                found[int(feature)].add(float(condition))
    return {f: np.array(sorted(v), dtype=np.float32) for f, v in found.items()}


def verification_sample(
    num_features: int, thresholds: dict[int, np.ndarray], rows: int = VERIFY_ROWS
) -> np.ndarray:
    """A deterministic float32 sample (same model -> same rows) covering the model's splits.

    Half the rows put each feature at one of its split thresholds, exactly or one float32 step
    below/above; a quarter are Gaussian around the thresholds' range; an eighth are extreme
    values; the rest are all-missing or mixed. 10% of all cells are NaN (missing).
    """
    rng = np.random.default_rng(VERIFY_SEED)
    sample = np.empty((rows, num_features), dtype=np.float32)
    at_split, gaussian, extreme = rows // 2, rows // 4, rows // 8
    for j in range(num_features):
        cuts = thresholds.get(j)
        if cuts is None or cuts.size == 0:
            cuts = np.zeros(1, dtype=np.float32)
        picked = cuts[rng.integers(0, cuts.size, at_split)]
        step = rng.integers(-1, 2, at_split)
        below = np.nextafter(picked, np.float32(-np.inf))
        above = np.nextafter(picked, np.float32(np.inf))
        sample[:at_split, j] = np.where(step < 0, below, np.where(step > 0, above, picked))
        centre, spread = float(cuts.mean()), float(cuts.max() - cuts.min()) or 1.0
        sample[at_split : at_split + gaussian, j] = rng.normal(centre, spread, gaussian)
        start = at_split + gaussian
        sample[start : start + extreme, j] = _EXTREMES[rng.integers(0, _EXTREMES.size, extreme)]
        rest = rows - start - extreme
        mixed = np.concatenate([cuts, _EXTREMES])
        sample[start + extreme :, j] = mixed[rng.integers(0, mixed.size, rest)]
    sample[rng.random(sample.shape) < 0.1] = np.nan
    tail = rows - (at_split + gaussian + extreme)
    sample[-tail // 4 :] = np.nan  # all-missing rows
    for k, value in enumerate(_EXTREMES[:8]):  # constant rows: all zeros, all huge, ...
        sample[at_split + gaussian + k] = value
    return sample


def _single_output(model: Any, mapping: str) -> None:
    """Rewire the converted graph to one output ``prediction`` shaped like the xgboost engine's."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if mapping == _VALUE:
        (source,) = outputs
        shape = helper.make_tensor("mlserve_flat", TensorProto.INT64, [1], [-1])
        graph.initializer.append(shape)
        node = helper.make_node("Reshape", [source, "mlserve_flat"], [contract.ONNX_OUTPUT_NAME])
        dims: list[Any] = [None]
    else:
        label, probabilities = (o.name for o in graph.output)
        if mapping == _CLASS1:
            one = helper.make_tensor("mlserve_class1", TensorProto.INT64, [], [1])
            graph.initializer.append(one)
            node = helper.make_node(
                "Gather", [probabilities, "mlserve_class1"], [contract.ONNX_OUTPUT_NAME]
            )
            node.attribute.append(helper.make_attribute("axis", 1))
            dims = [None]
        elif mapping == _PROBABILITIES:
            node = helper.make_node("Identity", [probabilities], [contract.ONNX_OUTPUT_NAME])
            dims = [None, None]
        else:
            node = helper.make_node(
                "Cast", [label], [contract.ONNX_OUTPUT_NAME], to=TensorProto.FLOAT
            )
            dims = [None]
    graph.node.append(node)
    graph.name = "mlserve"  # onnxmltools names the graph with a random UUID: keep the bytes stable
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(contract.ONNX_OUTPUT_NAME, TensorProto.FLOAT, dims)
    )
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", 13))
    onnx.checker.check_model(model)


def _convert(booster: Any, num_features: int, mapping: str) -> Any:
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    # onnxmltools maps features by the names f0..fN: convert a copy without the names (they are
    # kept in the metadata instead).
    anonymous = booster.copy()
    anonymous.feature_names = None
    anonymous.feature_types = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = convert_xgboost(
                anonymous,
                initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, num_features]))],
            )
        _single_output(model, mapping)
    except EngineConversionError:
        raise
    except Exception as exc:  # onnxmltools raises bare RuntimeError/ValueError/AssertionError
        raise EngineConversionError(
            f"onnxmltools could not convert the model: {type(exc).__name__}: {exc}"
        ) from exc
    return model


def _predict_onnx(data: bytes, sample: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.asarray(session.run([contract.ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: sample})[0])


def _write_atomically(data: bytes, out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def convert_to_onnx(
    model_path: Path,
    out_path: Path,
    *,
    name: str = "",
    version: str = "",
    tolerance: float = TOLERANCE,
    rows: int = VERIFY_ROWS,
) -> Conversion:
    """Convert the XGBoost model at ``model_path`` to ONNX at ``out_path`` and verify it.

    Raises :class:`EngineConversionError` (and writes nothing) when the model is not supported
    or the converted model disagrees with ``Booster.predict`` beyond ``tolerance``.
    """
    import onnx
    import xgboost as xgb

    started = time.perf_counter()
    model_path = Path(model_path)
    source = model_path.read_bytes()
    booster = _load_booster(model_path)
    objective, num_class = _describe(booster, model_path)
    num_features = int(booster.num_features())
    feature_names = list(booster.feature_names or [f"f{i}" for i in range(num_features)])
    model = _convert(booster, num_features, SUPPORTED_OBJECTIVES[objective])
    onnx.helper.set_model_props(
        model,
        {
            contract.ONNX_META_FEATURE_NAMES: json.dumps(feature_names),
            contract.ONNX_META_OBJECTIVE: objective,
            contract.ONNX_META_NUM_CLASS: str(num_class),
            contract.ONNX_META_NAME: name,
            contract.ONNX_META_VERSION: version,
            contract.ONNX_META_SOURCE_SHA256: _sha256(source),
            contract.ONNX_META_TOLERANCE: repr(tolerance),
        },
    )
    data = model.SerializeToString()

    sample = verification_sample(num_features, split_thresholds(booster), rows)
    reference = booster.predict(
        xgb.DMatrix(sample, missing=np.nan, feature_names=booster.feature_names)
    )
    try:
        converted = _predict_onnx(data, sample)
    except Exception as exc:
        raise EngineConversionError(
            f"{model_path}: onnxruntime cannot run the converted model: {exc}"
        ) from exc
    if converted.shape != reference.shape:
        raise EngineConversionError(
            f"{model_path}: the converted model returns shape {converted.shape} where XGBoost "
            f"returns {reference.shape} ({objective})"
        )
    diff = np.abs(converted.astype(np.float64) - reference.astype(np.float64))
    diff[np.isnan(converted) != np.isnan(reference)] = np.inf
    diff[np.isnan(converted) & np.isnan(reference)] = 0.0
    scaled = diff / np.maximum(1.0, np.abs(reference.astype(np.float64)))
    max_abs, max_scaled = float(np.nanmax(diff)), float(np.nanmax(scaled))
    if not max_scaled <= tolerance:
        worst = int(np.unravel_index(int(np.argmax(scaled)), scaled.shape)[0])
        raise EngineConversionError(
            f"{model_path}: the ONNX conversion disagrees with XGBoost: max |onnx - xgboost| = "
            f"{max_abs:.3g} (scaled {max_scaled:.3g}) over {rows} verification rows, tolerance "
            f"{tolerance:g} x max(1, |xgboost|); worst at row {worst} "
            f"(xgboost {reference[worst]}, onnx {converted[worst]}). Use mlserve:engine xgboost."
        )
    _write_atomically(data, Path(out_path))
    return Conversion(
        out_path=Path(out_path),
        sha256=_sha256(data),
        source_sha256=_sha256(source),
        objective=objective,
        num_features=num_features,
        num_class=num_class,
        max_abs_diff=max_abs,
        max_scaled_diff=max_scaled,
        tolerance=tolerance,
        rows_checked=rows,
        seconds=time.perf_counter() - started,
    )

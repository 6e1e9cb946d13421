"""Which models mlserve serves, and the metadata.json the program records for one (no Pulumi).

Every model XGBoost loads from its JSON or UBJSON format is served by the ``xgboost`` engine
with the predictions of ``Booster.predict`` (gbtree, dart, gblinear; every objective; models
without feature names, which are served as ``f0``, ``f1``...). What is refused here, at deploy
and at emulator start, each with a message naming why:

- a file XGBoost cannot load (pickle and the legacy binary format are refused earlier, by
  components/settings.py, from the file's first bytes);
- categorical features whose categories cannot be read: stored in the model in an encoding
  this version does not read, or recorded in the ``metadata.json`` beside the model for a
  feature that is not categorical, as something else than a list of distinct strings or
  numbers, or differently from the categories the model stores;
- categories recorded only in ``metadata.json`` that do not fit the functions' environment
  (:data:`MAX_CATEGORIES_ENV_BYTES`).

The ``onnx`` engine refuses more (components/engine.py). :func:`model_metadata` is the one
computation of metadata.json: the Pulumi program (components/storage.py) and the local emulator
(mlserve/local/stores.py) both call it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from runtime import contract
from runtime.categories import categories_by_feature
from runtime.model import describe_booster

# The categories recorded only in metadata.json reach the functions and containers in the
# MODEL_CATEGORIES variable; Lambda allows 4 KB of environment in all.
MAX_CATEGORIES_ENV_BYTES: Final = 2048
# What the model decides, whatever a metadata.json beside it says.
_FROM_MODEL: Final = (
    "feature_names",
    "feature_types",
    "num_features",
    "objective",
    "booster",
    "num_class",
    "num_target",
)


class ModelRefused(ValueError):
    """The model cannot be served; the message says why and what to do."""


def model_metadata(model_path: Path, name: str, version: str, sha256: str) -> dict[str, Any]:
    """The metadata.json stored next to the model object.

    What the model says about itself (feature names and types, objective, booster, classes,
    targets, the categories it stores) always wins; a ``metadata.json`` beside ``model_path``
    (written by ``python -m mlserve train-example``, or by hand) adds the rest: metrics,
    ``trained_at``, and the ``categories`` of a model that stores none (XGBoost < 3.1, or
    trained on codes), recorded from the training data. A metadata file recording another
    sha256 describes another model: refused. Raises :class:`ModelRefused`.
    """
    local = model_path.parent / contract.MODEL_METADATA_NAME
    given = read_metadata_file(local, model_path, sha256)
    described = inspect_model(model_path)
    metadata = {**given, **{key: described[key] for key in _FROM_MODEL}}
    metadata["categories"], metadata["categories_source"] = _categories(
        described, given.get("categories"), local
    )
    metadata.setdefault(
        "trained_at",
        datetime.fromtimestamp(model_path.stat().st_mtime, UTC).isoformat(timespec="seconds"),
    )
    metadata.update(name=name, version=version, sha256=sha256)
    return metadata


def read_metadata_file(path: Path, model_path: Path, sha256: str) -> dict[str, Any]:
    """The ``metadata.json`` at ``path`` ({} when there is none). Raises :class:`ModelRefused`
    when it is not a JSON object, or when it records the sha256 of another model than
    ``model_path``'s (``sha256``)."""
    if not path.is_file():
        return {}
    try:
        given = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelRefused(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(given, dict):
        raise ModelRefused(f"{path} is not a JSON object")
    recorded = given.get("sha256")
    if recorded is not None and recorded != sha256:
        raise ModelRefused(
            f"{path} records sha256 {recorded} but {model_path} has sha256 {sha256}: it "
            "describes another model, the metadata is stale; retrain (make model) or remove "
            "the metadata file"
        )
    return given


def inspect_model(model_path: Path) -> dict[str, Any]:
    """:func:`runtime.model.describe_booster` of the model file, or :class:`ModelRefused`."""
    import xgboost as xgb

    try:
        booster = xgb.Booster(model_file=str(model_path))
    except xgb.core.XGBoostError as exc:
        raise ModelRefused(
            f"{model_path}: XGBoost {xgb.__version__} cannot load the model: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    try:
        described = describe_booster(booster)
    except ValueError as exc:
        raise ModelRefused(f"{model_path}: the categories stored in the model: {exc}") from exc
    if described["categories"]:
        _check_categories(booster, described["categories"], model_path)
    return described


def _check_categories(booster: Any, ours: dict[str, list[Any]], model_path: Path) -> None:
    """The categories the runtime read from the model document (runtime/categories.py, which
    the Lambda layer runs without Arrow) must be those XGBoost itself exports: a reading that
    differs would recode silently wrong, so it is refused."""
    exported = booster.get_categories(export_to_arrow=True).to_arrow()
    theirs = {
        name: [v if isinstance(v, str) else float(v) for v in array.to_pylist()]
        for name, array in exported
        if array is not None
    }
    if theirs != ours:
        raise ModelRefused(
            f"{model_path}: the categories stored in the model read as {ours} here but "
            f"XGBoost exports {theirs}: this encoding is not supported"
        )


def _categories(
    described: dict[str, Any], given: Any, local: Path
) -> tuple[dict[str, list[Any]], str | None]:
    """(categories, where they come from: "model", "metadata" or None)."""
    stored: dict[str, list[Any]] = described["categories"]
    if given is None:
        return stored, ("model" if stored else None)
    if not isinstance(given, dict):
        raise ModelRefused(f"{local}: categories must be an object of feature -> list")
    try:
        categories_by_feature(described["feature_names"], described["feature_types"], given)
    except ValueError as exc:
        raise ModelRefused(f"{local}: {exc}") from exc
    if stored:
        if any(list(values) != stored.get(name, list(values)) for name, values in given.items()):
            raise ModelRefused(
                f"{local} records categories that differ from those the model stores: remove "
                "them from the metadata file (the model's own are used)"
            )
        return stored, "model"
    if len(categories_environment(given)) > MAX_CATEGORIES_ENV_BYTES:
        raise ModelRefused(
            f"{local}: the categories recorded there take more than {MAX_CATEGORIES_ENV_BYTES} "
            f"bytes of the functions' environment ({contract.ENV_MODEL_CATEGORIES}); train "
            "with XGBoost >= 3.1 on a DataFrame or Arrow table, which stores them in the model"
        )
    return {str(k): list(v) for k, v in given.items()}, "metadata"


def categories_environment(categories: dict[str, Any]) -> str:
    """The MODEL_CATEGORIES value: compact JSON."""
    return json.dumps(categories, separators=(",", ":"), ensure_ascii=False)


def model_categories_env(metadata: dict[str, Any]) -> str:
    """MODEL_CATEGORIES for the model loaders: the categories recorded only in metadata.json
    (the model stores none), else empty."""
    if metadata.get("categories_source") != "metadata":
        return ""
    return categories_environment(metadata["categories"])


def _outputs(metadata: dict[str, Any]) -> int:
    objective = str(metadata.get("objective"))
    if objective == "multi:softprob":
        return int(metadata.get("num_class") or 0)
    return 1 if objective == "multi:softmax" else int(metadata.get("num_target") or 1)


def check_canary(stable: dict[str, Any], canary: dict[str, Any]) -> None:
    """A canary (issue 17) answers the same requests as the stable model: the same features
    (names, order, types, categories) and as many predictions per row. Raises
    :class:`ModelRefused` naming the first difference."""
    for key, what in (
        ("feature_names", "feature names (in order)"),
        ("feature_types", "feature types"),
        ("categories", "categories"),
    ):
        if (stable.get(key) or None) != (canary.get(key) or None):
            raise ModelRefused(
                f"the canary's {what} differ from the stable model's: {canary.get(key)} vs "
                f"{stable.get(key)}; a canary must take the same requests (retrain it on the same "
                "features)"
            )
    if _outputs(stable) != _outputs(canary):
        raise ModelRefused(
            f"the canary gives {_outputs(canary)} prediction(s) per row, the stable model "
            f"{_outputs(stable)} ({canary.get('objective')} vs {stable.get('objective')}); a "
            "canary must answer in the same shape"
        )

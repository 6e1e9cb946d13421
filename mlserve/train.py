"""Train the example model: a binary classifier on scikit-learn's breast-cancer data set.

The data set ships inside scikit-learn, so training needs no network. The model is written in
XGBoost's own UBJSON format (never pickle) with the feature names embedded, next to a
``metadata.json`` that records the feature names, objective, sha256, hold-out metrics and the
training data's reference statistics (mlserve/drift.py, for ``mlserve drift``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mlserve import drift
from runtime.contract import MODEL_METADATA_NAME, MODEL_OBJECT_NAME
from runtime.modelfile import sha256_file

DEFAULT_OUT_DIR = Path("models/example")
SEED = 7


@dataclass(frozen=True)
class ExampleData:
    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_names: list[str]


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    metadata_path: Path
    sha256: str
    metrics: dict[str, float]


def feature_name(raw: str) -> str:
    """'mean radius' -> 'mean_radius': names usable as JSON keys and CSV headers alike."""
    return re.sub(r"[^0-9a-z]+", "_", raw.lower()).strip("_")


def load_example_data() -> ExampleData:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return ExampleData(
        x=np.asarray(data.data, dtype=np.float64),
        y=np.asarray(data.target, dtype=np.int64),
        feature_names=[feature_name(n) for n in data.feature_names],
        target_names=[str(n) for n in data.target_names],
    )


def split(data: ExampleData, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test index split."""
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(data.y))
    n_test = round(len(order) * test_fraction)
    return order[n_test:], order[:n_test]


def train_example(out_dir: Path = DEFAULT_OUT_DIR, n_estimators: int = 100) -> TrainResult:
    import xgboost as xgb

    data = load_example_data()
    train_idx, test_idx = split(data)
    dtrain = xgb.DMatrix(
        data.x[train_idx], label=data.y[train_idx], feature_names=data.feature_names
    )
    dtest = xgb.DMatrix(data.x[test_idx], label=data.y[test_idx], feature_names=data.feature_names)
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "max_depth": 4,
        "eta": 0.1,
        "seed": SEED,
        "nthread": 1,
    }
    booster = xgb.train(params, dtrain, num_boost_round=n_estimators)
    proba = booster.predict(dtest)
    y_test = data.y[test_idx]
    accuracy = float(np.mean((proba >= 0.5).astype(np.int64) == y_test))
    evals = booster.eval(dtest)  # "[0]\teval-logloss:0.1\teval-auc:0.99"
    metrics = {"accuracy": round(accuracy, 6)}
    for part in evals.split("\t")[1:]:
        key, value = part.split(":")
        metrics[key.removeprefix("eval-")] = round(float(value), 6)

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_OBJECT_NAME
    booster.save_model(model_path)
    digest = sha256_file(model_path)
    metadata = {
        "name": out_dir.name,
        "feature_names": data.feature_names,
        "num_features": len(data.feature_names),
        "objective": params["objective"],
        "classes": data.target_names,
        "sha256": digest,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "xgboost_version": xgb.__version__,
        "dataset": "scikit-learn breast_cancer (569 rows, 30 features)",
        "train_rows": len(train_idx),
        "test_rows": len(test_idx),
        "metrics": metrics,
        drift.REFERENCE_KEY: drift.profile(data.x[train_idx], data.feature_names),
    }
    metadata_path = out_dir / MODEL_METADATA_NAME
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return TrainResult(model_path, metadata_path, digest, metrics)

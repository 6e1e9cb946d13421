"""Models the benchmarks run on: the example model and larger synthetic ones.

A synthetic model is trained on deterministic random data and written exactly like the example
(model.ubj + metadata.json with feature names ``f0..fN`` and the sha256), so every component
that reads a model directory reads these too. Models are cached under .cache/bench-models by
their parameters: training the 500-tree model once takes a few seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlserve.train import sha256_file, train_example
from runtime.contract import MODEL_METADATA_NAME, MODEL_OBJECT_NAME

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-models"


@dataclass(frozen=True)
class BenchModel:
    label: str  # "example (100 trees, depth 4, 30 features)"
    directory: Path
    num_features: int

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_OBJECT_NAME

    @property
    def size_bytes(self) -> int:
        return self.model_path.stat().st_size


def example_model() -> BenchModel:
    directory = CACHE / "example"
    if not (directory / MODEL_OBJECT_NAME).exists():
        train_example(directory)
    return BenchModel("example (100 trees, depth 4, 30 features)", directory, 30)


def synthetic_matrix(rows: int, features: int, seed: int = 0) -> np.ndarray:
    """Deterministic float32 rows; every feature carries some signal for the trees to split on."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, features)).astype(np.float32)


def synthetic_model(
    trees: int = 500, depth: int = 8, features: int = 50, train_rows: int = 20_000
) -> BenchModel:
    """A binary:logistic model of ``trees`` full-depth trees (the issue's larger model)."""
    import xgboost as xgb

    name = f"synthetic-{trees}t-d{depth}-{features}f"
    directory = CACHE / name
    label = f"synthetic ({trees} trees, depth {depth}, {features} features)"
    if (directory / MODEL_OBJECT_NAME).exists():
        return BenchModel(label, directory, features)
    x = synthetic_matrix(train_rows, features, seed=1)
    weights = np.random.default_rng(2).normal(size=features)
    logits = x @ weights + np.sin(3 * x[:, 0]) * x[:, 1]
    y = (logits + np.random.default_rng(3).normal(scale=0.5, size=train_rows) > 0).astype(int)
    feature_names = [f"f{i}" for i in range(features)]
    dtrain = xgb.DMatrix(x, label=y, feature_names=feature_names)
    params = {
        "objective": "binary:logistic",
        "max_depth": depth,
        "eta": 0.05,
        "seed": 7,
        "nthread": 2,
        "min_child_weight": 0,
        "gamma": 0,
    }
    booster = xgb.train(params, dtrain, num_boost_round=trees)
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(directory / MODEL_OBJECT_NAME)
    metadata = {
        "name": name,
        "feature_names": feature_names,
        "num_features": features,
        "objective": "binary:logistic",
        "sha256": sha256_file(directory / MODEL_OBJECT_NAME),
        "xgboost_version": xgb.__version__,
        "dataset": f"synthetic normal rows ({train_rows} rows, {features} features)",
    }
    (directory / MODEL_METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return BenchModel(label, directory, features)

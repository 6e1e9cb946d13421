"""Tiny models of every kind XGBoost trains, for the compatibility matrix (README, "Bring your
own model"): each trains in milliseconds on 120 random rows of 4 features.

:data:`ZOO` names each :class:`ZooModel`; :func:`save` writes one to a model directory as a user
would (``model.json`` or ``model.ubj``, no metadata.json unless the model needs one), and
:data:`FIXTURES` lists the models saved by older XGBoost versions (tests/fixtures/models, made by
tests/fixtures/make_old_models.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

ROWS = 120
FEATURES = ("age", "income", "score", "visits")
COLORS = ("red", "green", "blue", "violet")
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "models"


def _data(seed: int = 7) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(ROWS, len(FEATURES))).astype(np.float32), rng


@dataclass(frozen=True)
class ZooModel:
    """A model to train: XGBoost parameters, a label maker and DMatrix extras."""

    params: dict[str, Any]
    label: Callable[[np.ndarray, np.random.Generator], dict[str, Any]] = field(
        default=lambda x, _rng: {"label": (x[:, 0] + x[:, 1] > 0).astype(np.float32)}
    )
    rounds: int = 4
    named: bool = True
    file_name: str = "model.json"

    def train(self) -> xgb.Booster:
        x, rng = _data()
        extra = self.label(x, rng)
        names = list(FEATURES) if self.named else None
        matrix = xgb.DMatrix(x, feature_names=names, **extra)
        trees = {} if self.params.get("booster") == "gblinear" else {"max_depth": 3}
        return xgb.train({"nthread": 1, **trees, **self.params}, matrix, self.rounds)


def _classes(x: np.ndarray, _rng: np.random.Generator) -> dict[str, Any]:
    return {"label": np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.float32)}


def _value(x: np.ndarray, _rng: np.random.Generator) -> dict[str, Any]:
    return {"label": (3 * x[:, 0] - x[:, 2] + 5).astype(np.float32)}


def _positive(x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    return {"label": np.exp(0.5 * x[:, 0]) + rng.random(ROWS).astype(np.float32)}


def _counts(x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    return {"label": rng.poisson(np.exp(0.5 * x[:, 0])).astype(np.float32)}


def _targets(x: np.ndarray, _rng: np.random.Generator) -> dict[str, Any]:
    return {"label": np.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 3]], axis=1)}


def _ranks(x: np.ndarray, _rng: np.random.Generator) -> dict[str, Any]:
    return {
        "label": np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.float32),
        "qid": np.repeat(np.arange(ROWS // 10), 10),
    }


def _interval(x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    lower = np.exp(x[:, 0]) + 1
    upper = np.where(rng.random(ROWS) < 0.3, np.inf, lower + rng.random(ROWS))
    return {"label_lower_bound": lower, "label_upper_bound": upper}


def _survival(x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    times = np.exp(x[:, 0]) + 1
    return {"label": np.where(rng.random(ROWS) < 0.3, -times, times).astype(np.float32)}


ZOO: dict[str, ZooModel] = {
    "binary-logistic": ZooModel({"objective": "binary:logistic"}, file_name="model.ubj"),
    "binary-logistic-unnamed": ZooModel({"objective": "binary:logistic"}, named=False),
    "binary-logitraw": ZooModel({"objective": "binary:logitraw"}),
    "binary-hinge": ZooModel({"objective": "binary:hinge"}),
    "dart": ZooModel(
        {"booster": "dart", "objective": "binary:logistic", "rate_drop": 0.5, "skip_drop": 0.0},
        rounds=8,
    ),
    "gblinear-logistic": ZooModel({"booster": "gblinear", "objective": "binary:logistic"}),
    "gblinear-regression": ZooModel(
        {"booster": "gblinear", "objective": "reg:squarederror"}, label=_value
    ),
    "random-forest": ZooModel(
        {"num_parallel_tree": 3, "subsample": 0.8, "colsample_bynode": 0.8}, label=_value
    ),
    "multi-softprob": ZooModel({"objective": "multi:softprob", "num_class": 3}, label=_classes),
    "multi-softmax": ZooModel({"objective": "multi:softmax", "num_class": 3}, label=_classes),
    "reg-squarederror": ZooModel({"objective": "reg:squarederror"}, label=_value),
    "reg-base-score": ZooModel(
        {"objective": "reg:squarederror", "base_score": 100.0}, label=_value
    ),
    "reg-absoluteerror": ZooModel({"objective": "reg:absoluteerror"}, label=_value),
    "reg-pseudohuber": ZooModel({"objective": "reg:pseudohubererror"}, label=_value),
    "reg-squaredlogerror": ZooModel({"objective": "reg:squaredlogerror"}, label=_positive),
    "reg-logistic": ZooModel({"objective": "reg:logistic"}),
    "multi-output": ZooModel({"objective": "reg:squarederror"}, label=_targets),
    "multi-output-tree": ZooModel(
        {"objective": "reg:squarederror", "multi_strategy": "multi_output_tree"}, label=_targets
    ),
    "quantile": ZooModel(
        {"objective": "reg:quantileerror", "quantile_alpha": [0.1, 0.5, 0.9]}, label=_value
    ),
    "count-poisson": ZooModel({"objective": "count:poisson"}, label=_counts),
    "reg-tweedie": ZooModel({"objective": "reg:tweedie"}, label=_counts),
    "reg-gamma": ZooModel({"objective": "reg:gamma"}, label=_positive),
    "rank-ndcg": ZooModel({"objective": "rank:ndcg"}, label=_ranks),
    "rank-pairwise": ZooModel({"objective": "rank:pairwise"}, label=_ranks),
    "survival-aft": ZooModel({"objective": "survival:aft"}, label=_interval),
    "survival-cox": ZooModel({"objective": "survival:cox"}, label=_survival),
}


def categorical_table(rows: int = ROWS, seed: int = 11) -> tuple[pa.Table, np.ndarray]:
    """Features ``x`` (a number) and ``color`` (a string category) and a binary label that
    depends on both."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    color = rng.choice(COLORS, rows)
    table = pa.table({"x": x, "color": pa.array(color).dictionary_encode()})
    label = ((x > 0) ^ np.isin(color, ("red", "violet"))).astype(np.float32)
    return table, label


def train_categorical() -> xgb.Booster:
    """A model with native categorical support; XGBoost (>= 3.1) stores its categories."""
    table, label = categorical_table()
    matrix = xgb.DMatrix(table, label, enable_categorical=True)
    params = {"objective": "binary:logistic", "nthread": 1, "max_depth": 3, "max_cat_to_onehot": 1}
    return xgb.train(params, matrix, 6)


def predict_codes(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """``Booster.predict`` of a float matrix (NaN: missing) whose categorical columns hold
    category codes, as XGBoost takes them from a matrix."""
    data = xgb.DMatrix(
        np.asarray(matrix, dtype=np.float32),
        feature_names=booster.feature_names,
        feature_types=booster.feature_types,
        enable_categorical=True,
    )
    return np.asarray(booster.predict(data))


def save(name: str, out_dir: Path) -> xgb.Booster:
    """Train zoo model ``name`` (or ``categorical``) and save it into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if name == "categorical":
        booster = train_categorical()
        booster.save_model(out_dir / "model.json")
        return booster
    model = ZOO[name]
    booster = model.train()
    booster.save_model(out_dir / model.file_name)
    return booster


def copy_fixture(name: str, out_dir: Path) -> xgb.Booster:
    """Copy the old-version fixture ``name`` (and its metadata.json, if any) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = FIXTURE_DIR / name
    for path in source.iterdir():
        (out_dir / path.name).write_bytes(path.read_bytes())
    return xgb.Booster(model_file=str(out_dir / "model.json"))


def fixtures() -> list[str]:
    return sorted(p.name for p in FIXTURE_DIR.iterdir() if (p / "model.json").is_file())


def fixture_info(name: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((FIXTURE_DIR / name / "fixture.json").read_text())
    return info

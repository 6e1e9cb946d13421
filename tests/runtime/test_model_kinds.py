"""The xgboost engine on every kind of model (tests/model_zoo.py), without the HTTP layers:
predictions equal ``Booster.predict``, and the shape the API and batch parts describe is the
shape XGBoost returns."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from runtime import contract
from runtime.model import XGBoostModel, describe_booster, model_info
from tests import model_zoo


@pytest.mark.parametrize("case", sorted(model_zoo.ZOO))
def test_served_like_booster_predict_with_the_described_shape(case: str) -> None:
    booster = model_zoo.ZOO[case].train()
    info = model_info(describe_booster(booster), "m", "v", "0" * 64, contract.ENGINE_XGBOOST)
    model = XGBoostModel(booster, info)
    x, _ = model_zoo._data(seed=5)
    x[3, 1] = np.nan
    expected = booster.predict(xgb.DMatrix(x, feature_names=booster.feature_names))
    served = model.predict(x)
    np.testing.assert_array_equal(served, expected)  # the same library: exactly equal
    assert (served.shape[1] if served.ndim == 2 else 1) == info.outputs

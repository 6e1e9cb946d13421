"""Helpers of the e2e tests: an API client for the emulator, reference predictions, error checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import requests
import xgboost as xgb

from mlserve.train import ExampleData


@dataclass(frozen=True)
class Example:
    data: ExampleData
    test_idx: np.ndarray

    @property
    def names(self) -> list[str]:
        return self.data.feature_names

    def rows(self, n: int) -> np.ndarray:
        return self.data.x[self.test_idx[:n]]


class Api:
    """requests against the emulator's invoke URL, with the API key."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url
        self.session = requests.Session()
        if api_key:
            self.session.headers["x-api-key"] = api_key

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url + path, timeout=30, **kwargs)

    def predict_json(self, document: Any) -> requests.Response:
        return self.post("/predict", json=document)

    def predict_csv(self, text: str) -> requests.Response:
        return self.post("/predict", data=text.encode(), headers={"content-type": "text/csv"})

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


def reference(booster: xgb.Booster, rows: np.ndarray) -> np.ndarray:
    """What XGBoost itself predicts for these rows (NaN = missing)."""
    names = booster.feature_names
    return np.asarray(booster.predict(xgb.DMatrix(rows, feature_names=names, missing=np.nan)))


def assert_error(response: requests.Response, status: int, code: str, *fragments: str) -> str:
    """A JSON error {"error": {"code", "message"}} with this status; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    message = error["message"]
    assert message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in response.text
    return str(message)

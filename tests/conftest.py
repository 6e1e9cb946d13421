"""Fixtures shared by every test package: a trained example model (never models/example)."""

from __future__ import annotations

import pytest

from mlserve.train import TrainResult, train_example


@pytest.fixture(scope="session")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The example model, trained once per session into a temporary directory."""
    return train_example(tmp_path_factory.mktemp("models") / "example")

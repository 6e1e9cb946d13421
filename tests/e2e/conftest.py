"""One trained example model and one running emulator (architecture ``lambda``) for the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import xgboost as xgb

from mlserve.local import Emulator
from mlserve.train import TrainResult, load_example_data, split, train_example

from .helpers import Api, Example


@pytest.fixture(scope="package")
def example() -> Example:
    data = load_example_data()
    _, test_idx = split(data)
    return Example(data, test_idx)


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The example model, trained into a temporary directory (never models/example)."""
    return train_example(out_dir=tmp_path_factory.mktemp("models") / "example")


@pytest.fixture(scope="package")
def booster(trained: TrainResult) -> xgb.Booster:
    return xgb.Booster(model_file=str(trained.model_path))


@pytest.fixture(scope="package")
def emulator(trained: TrainResult) -> Iterator[Emulator]:
    with Emulator().start(architecture="lambda", model_dir=trained.model_path.parent) as emu:
        yield emu


@pytest.fixture
def api(emulator: Emulator) -> Iterator[Api]:
    with Api(emulator.url, emulator.api_key) as client:
        yield client

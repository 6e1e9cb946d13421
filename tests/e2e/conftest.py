"""One trained example model for the package, and the running emulator the tests ask for.

An Emulator is process-wide (AWS environment, handler modules), so one runs at a time: the
package-scoped :class:`Emulators` keeps the current one running while tests ask for the same
deployment (``emulators.get("lambda")``) and replaces it when a test asks for another one. Test
modules are written so that each needs one deployment (one start per module).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xgboost as xgb

from mlserve.local import Emulator
from mlserve.train import TrainResult, load_example_data, split, train_example

from .helpers import Api, Example


class Emulators:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.current: Emulator | None = None
        self._key: tuple[str, tuple[tuple[str, Any], ...]] | None = None

    def get(self, architecture: str, **options: Any) -> Emulator:
        """The running emulator of this deployment (started, or restarted, when needed)."""
        key = (architecture, tuple(sorted(options.items())))
        if self.current is not None and self.current.running and self._key == key:
            return self.current
        self.stop()
        self.current = Emulator().start(
            architecture=architecture, model_dir=self.model_dir, **options
        )
        self._key = key
        return self.current

    def stop(self) -> None:
        current, self.current, self._key = self.current, None, None
        if current is not None:
            current.stop()


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
def emulators(trained: TrainResult) -> Iterator[Emulators]:
    pool = Emulators(trained.model_path.parent)
    yield pool
    pool.stop()


@pytest.fixture
def emulator(emulators: Emulators) -> Emulator:
    """Architecture ``lambda``."""
    return emulators.get("lambda")


@pytest.fixture
def api(emulator: Emulator) -> Iterator[Api]:
    with Api(emulator.url, emulator.api_key) as client:
        yield client

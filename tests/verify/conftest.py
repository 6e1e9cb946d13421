"""Fixtures of the verify checks.

An Emulator is process-wide (one runs at a time), so the checks share one pool: ``emulators``
keeps the current deployment running while tests ask for the same one and replaces it when a
test asks for another (tests/e2e/conftest.py :class:`Emulators`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlserve.train import train_example
from tests.e2e.conftest import Emulators


@pytest.fixture(scope="package")
def verify_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example model, trained into a temporary directory (never models/example)."""
    trained = train_example(out_dir=tmp_path_factory.mktemp("verify-models") / "example")
    return trained.model_path.parent


@pytest.fixture(scope="package")
def emulators(verify_model_dir: Path) -> Iterator[Emulators]:
    pool = Emulators(verify_model_dir)
    yield pool
    pool.stop()

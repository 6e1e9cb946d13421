"""The shared stores the program deployed: the model (a file on disk) and where it was put.

:class:`ModelArtifact` reads a model file (``model.ubj`` or ``model.json``, with or without a
``metadata.json`` beside it) as components/compatibility computes its metadata;
:class:`SharedStores` names the deployed bucket, job table and model keys (read from the stack
outputs by :class:`mlserve.local.Emulator`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import contract

MODEL_VERSION_LENGTH = 12  # models/{name}/{sha256[:12]}/model.ubj, as the Pulumi program names it


class ModelNotFound(FileNotFoundError):
    """The model directory has no model.ubj nor model.json."""


@dataclass(frozen=True)
class ModelArtifact:
    """A model on disk, ``model.ubj`` or ``model.json``, with the metadata the Pulumi program
    records for it (components/compatibility.model_metadata: a ``metadata.json`` beside it is
    optional)."""

    name: str
    version: str
    sha256: str
    model_path: Path
    metadata_path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, model_dir: Path, name: str | None = None) -> ModelArtifact:
        """The model in ``model_dir``; raises :class:`ModelNotFound`, or
        components.compatibility.ModelRefused for a model mlserve cannot serve."""
        names = contract.MODEL_FILE_NAMES
        found = [model_dir / n for n in names if (model_dir / n).is_file()]
        if not found:
            raise ModelNotFound(
                f"no model at {model_dir} (looked for {' or '.join(names)}): save one with "
                "Booster.save_model, or train the example with `python -m mlserve "
                f"train-example --out {model_dir}`"
            )
        if len(found) > 1:
            raise ModelNotFound(f"{model_dir} holds both {' and '.join(names)}: keep one")
        return cls.from_file(found[0], name)

    @classmethod
    def from_file(cls, model_path: Path, name: str | None = None) -> ModelArtifact:
        from components.compatibility import model_metadata
        from mlserve.train import sha256_file

        if not model_path.is_file():
            raise ModelNotFound(f"no model file at {model_path}")
        metadata_path: Path | None = model_path.parent / contract.MODEL_METADATA_NAME
        given: dict[str, Any] = {}
        if metadata_path is not None and metadata_path.is_file():
            with contextlib.suppress(ValueError):  # model_metadata refuses it, with why
                given = json.loads(metadata_path.read_text())
        else:
            metadata_path = None
        digest = sha256_file(model_path)
        version = digest[:MODEL_VERSION_LENGTH]
        recorded_name = given.get("name") if isinstance(given, dict) else None
        model_name = name or str(recorded_name or model_path.parent.resolve().name)
        metadata = model_metadata(model_path, model_name, version, digest)
        return cls(model_name, version, digest, model_path, metadata_path, metadata)


@dataclass(frozen=True)
class SharedStores:
    """What the architectures share: one model store, one job table."""

    bucket: str
    table: str
    model: ModelArtifact
    model_key: str
    metadata_key: str

    @property
    def model_uri(self) -> str:
        return f"s3://{self.bucket}/{self.model_key}"

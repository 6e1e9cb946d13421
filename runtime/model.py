"""Load the XGBoost model from S3 and predict.

- Only XGBoost's own JSON and UBJSON formats are accepted, never pickle or the legacy binary
  format: the first bytes are checked before XGBoost sees the file.
- The object is downloaded once per container into a cache directory (``/tmp/mlserve`` on
  Lambda), its sha256 checked against the digest recorded at deploy time; a cached file whose
  digest matches is reused without touching S3.
- A failed load raises :class:`ModelUnavailable` (HTTP 503) and is retried on the next request.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from runtime.contract import parse_model_key

if TYPE_CHECKING:
    import xgboost

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "mlserve"
_CHUNK = 1 << 20
_UBJ_LENGTH_MARKERS = frozenset(b"iUIlL")


class ModelUnavailable(Exception):
    """The model cannot be served right now (missing, corrupt, wrong format). HTTP 503."""

    code = "model_unavailable"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    num_features: int
    feature_names: tuple[str, ...]
    objective: str
    num_class: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "num_features": self.num_features,
            "feature_names": list(self.feature_names),
            "objective": self.objective,
        }


class LoadedModel:
    """A booster plus what the API says about it."""

    def __init__(self, booster: xgboost.Booster, info: ModelInfo) -> None:
        self.booster = booster
        self.info = info
        self._index = {name: i for i, name in enumerate(info.feature_names)}

    @property
    def feature_index(self) -> dict[str, int]:
        return self._index

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """One prediction per row: shape (n,) or (n, classes) for multi-class probabilities."""
        return np.asarray(self.booster.inplace_predict(rows))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def detect_format(head: bytes) -> str:
    """'json' or 'ubj' from the first bytes of a model file; anything else is refused."""
    stripped = head.lstrip()
    if stripped[:1] != b"{":
        raise ModelUnavailable(
            "the model object is not an XGBoost JSON/UBJSON model (pickle and the legacy "
            "binary format are refused); re-save it with Booster.save_model('model.ubj')"
        )
    second = stripped[1:2]
    if second in (b'"', b"}") or (second and second.isspace()):
        return "json"
    if second and second[0] in _UBJ_LENGTH_MARKERS:
        return "ubj"
    raise ModelUnavailable("the model object is neither XGBoost JSON nor UBJSON")


def _model_info(booster: xgboost.Booster, name: str, version: str, sha256: str) -> ModelInfo:
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    objective = str(learner.get("objective", {}).get("name", "unknown"))
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    num_features = int(booster.num_features())
    names = booster.feature_names or [f"f{i}" for i in range(num_features)]
    return ModelInfo(name, version, sha256, num_features, tuple(names), objective, num_class)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    uri: str, expected_sha256: str, s3: Any, cache_dir: Path = DEFAULT_CACHE_DIR
) -> LoadedModel:
    """Download (or reuse the cached copy of) the model at ``uri``, verify it, load it."""
    import xgboost as xgb

    try:
        bucket, key = parse_s3_uri(uri)
        name, version = parse_model_key(key)
    except ValueError as exc:
        raise ModelUnavailable(f"MODEL_URI is not a model location: {exc}") from exc
    expected = expected_sha256.strip().lower()
    if len(expected) != 64:
        raise ModelUnavailable("MODEL_SHA256 is not set to the model's sha256 hex digest")

    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = next(
        (p for p in cache_dir.glob(f"{expected}.*") if p.suffix in (".json", ".ubj")), None
    )
    if cached is None or _sha256_file(cached) != expected:
        cached = _download(s3, bucket, key, expected, cache_dir)
    booster = xgb.Booster()
    try:
        booster.load_model(str(cached))
    except xgb.core.XGBoostError as exc:
        cached.unlink(missing_ok=True)
        raise ModelUnavailable(f"XGBoost could not load {uri}: {str(exc).splitlines()[0]}") from exc
    return LoadedModel(booster, _model_info(booster, name, version, expected))


def _download(s3: Any, bucket: str, key: str, expected: str, cache_dir: Path) -> Path:
    uri = f"s3://{bucket}/{key}"
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            raise ModelUnavailable(f"cannot read the model object {uri}: {exc}") from exc
        head = b""
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                if len(head) < 16:
                    head += chunk[:16]
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise ModelUnavailable(
                f"sha256 mismatch for {uri}: expected {expected}, got {actual}; the object was "
                "altered after deployment: redeploy (pulumi up) or restore the original object"
            )
        final = cache_dir / f"{expected}.{detect_format(head)}"
        tmp.replace(final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


class ModelCache:
    """Holds the loaded model for the life of the container; reloads after a failure."""

    def __init__(
        self,
        uri: str | None,
        sha256: str | None,
        s3_factory: Callable[[], Any],
        cache_dir: Path = DEFAULT_CACHE_DIR,
    ) -> None:
        self._uri = uri
        self._sha256 = sha256
        self._s3_factory = s3_factory
        self._cache_dir = cache_dir
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()

    def get(self) -> LoadedModel:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                if not self._uri or not self._sha256:
                    raise ModelUnavailable("MODEL_URI and MODEL_SHA256 must be set")
                self._model = load_model(
                    self._uri, self._sha256, self._s3_factory(), self._cache_dir
                )
            return self._model

"""The model file: where it is (``s3://`` URI), its download into the cache directory with the
sha256 check, and its format; no numpy, no engine.

Apart from runtime/model.py (which loads the file with an engine) so that the ``lambda``
predictor can start the download in a thread before it imports numpy, Powertools and the engine
(:class:`Prefetch`, ``RuntimeContext.prefetch_model``): the download then overlaps the imports of
a cold start instead of following them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "mlserve"
_CHUNK = 1 << 20
_UBJ_LENGTH_MARKERS = frozenset(b"iUIlL")
# An ONNX ModelProto starts with field 1 (ir_version, varint: tag 0x08, a small number), followed
# by the tag of one of the next fields (producer_name 0x12 ... graph 0x3a, opset_import 0x42).
_ONNX_IR_TAG = 0x08
_ONNX_NEXT_TAGS = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42")
_SUFFIXES = (".json", ".ubj", ".onnx")


class ModelUnavailable(Exception):
    """The model cannot be served right now (missing, corrupt, wrong format). HTTP 503."""

    code = "model_unavailable"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def detect_format(head: bytes) -> str:
    """'json', 'ubj' or 'onnx' from the first bytes of a model file; anything else is refused."""
    if len(head) >= 3 and head[0] == _ONNX_IR_TAG and head[1] < 0x80 and head[2] in _ONNX_NEXT_TAGS:
        return "onnx"
    stripped = head.lstrip()
    if stripped[:1] != b"{":
        raise ModelUnavailable(
            "the model object is not an XGBoost JSON/UBJSON model nor an ONNX model (pickle and "
            "the legacy binary format are refused); re-save it with "
            "Booster.save_model('model.ubj')"
        )
    second = stripped[1:2]
    if second in (b'"', b"}") or (second and second.isspace()):
        return "json"
    if second and second[0] in _UBJ_LENGTH_MARKERS:
        return "ubj"
    raise ModelUnavailable("the model object is neither XGBoost JSON nor UBJSON")


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MB blocks; the one digest helper of the project."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(s3: Any, uri: str, expected: str, cache_dir: Path) -> Path:
    """The model file of ``uri`` in ``cache_dir``, its sha256 ``expected``: the cached copy when
    its digest matches (S3 is not read), else downloaded and checked. ``s3`` has boto3's
    ``get_object(Bucket=, Key=)``. Raises :class:`ModelUnavailable`."""
    bucket, key = parse_s3_uri(uri)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = next((p for p in cache_dir.glob(f"{expected}.*") if p.suffix in _SUFFIXES), None)
    if cached is not None and sha256_file(cached) == expected:
        return cached
    return _download(s3, bucket, key, expected, cache_dir)


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


class Prefetch:
    """:func:`fetch` in a daemon thread, started at once; :meth:`result` waits for its file."""

    def __init__(self, s3: Any, uri: str, expected: str, cache_dir: Path) -> None:
        self.uri, self.expected = uri, expected
        self._path: Path | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(s3, uri, expected, cache_dir),
            name="model-prefetch",
            daemon=True,
        )
        self._thread.start()

    def _run(self, s3: Any, uri: str, expected: str, cache_dir: Path) -> None:
        try:
            self._path = fetch(s3, uri, expected, cache_dir)
        except BaseException as exc:  # handed to whoever waits for the file
            self._error = exc

    def result(self) -> Path:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._path is not None
        return self._path

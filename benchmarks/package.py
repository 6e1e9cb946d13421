"""Package size: layer + function unzipped per Lambda architecture, and the function archive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import Row, check

if TYPE_CHECKING:
    from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
ONNX_TARGET_MB = 120  # issue 8: layer + function unzipped with mlserve:engine onnx


def rows(console: Console, quick: bool = False) -> list[Row]:
    from components.packaging import (
        LAYER_REQUIREMENTS,
        build_function_archive,
        build_layer,
        check_size,
        human_mb,
    )
    from runtime.contract import ENGINE_ONNX, LAMBDA_UNZIPPED_LIMIT_BYTES

    out: list[Row] = []
    function = build_function_archive(ROOT)
    for arch in ("arm64", "x86_64"):
        with console.status(f"building the {arch} layer (cached after the first run) ..."):
            layer = build_layer(ROOT / "runtime" / "requirements.txt", arch)
        check_size(layer, function)
        total = layer.unzipped_bytes + function.unzipped_bytes
        out.append(
            check(
                f"layer + function unzipped, {arch}",
                f"{human_mb(total)} of {human_mb(LAMBDA_UNZIPPED_LIMIT_BYTES)}",
                "≤ 175 MB",
                total <= 175 * MB,
            )
        )
    # mlserve:engine onnx (issue 8): onnxruntime instead of xgboost + scipy
    for arch in ("arm64", "x86_64"):
        with console.status(f"building the {arch} onnx layer (cached after the first run) ..."):
            layer = build_layer(LAYER_REQUIREMENTS[ENGINE_ONNX], arch)
        check_size(layer, function)
        total = layer.unzipped_bytes + function.unzipped_bytes
        out.append(
            check(
                f"layer + function unzipped, {arch}, onnx engine",
                f"{human_mb(total)} of {human_mb(LAMBDA_UNZIPPED_LIMIT_BYTES)}",
                "≤ 120 MB",
                total <= ONNX_TARGET_MB * MB,
            )
        )
    out.append(
        check(
            "function code archive (zipped)",
            f"{function.zipped_bytes / 1024:.0f} KB",
            "≤ 1 MB",
            function.zipped_bytes <= MB,
        )
    )
    return out

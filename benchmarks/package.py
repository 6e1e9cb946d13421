"""Package size: layer + function unzipped per Lambda architecture, and the function archive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import Row, check

if TYPE_CHECKING:
    from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
# Layer + function unzipped, byte code included (issue 14; issue 6 asked <= 175 MB without it)
TARGET_MB = 200  # xgboost engine
ONNX_TARGET_MB = 120  # mlserve:engine onnx (issues 8 and 14)


def rows(console: Console, quick: bool = False) -> list[Row]:
    from components.packaging import (
        LAYER_REQUIREMENTS,
        build_function_archive,
        build_layer,
        check_size,
        human_mb,
    )
    from components.settings import LAMBDA_ARCHITECTURES
    from runtime.contract import ENGINE_ONNX, ENGINE_XGBOOST, LAMBDA_UNZIPPED_LIMIT_BYTES

    out: list[Row] = []
    function = build_function_archive(ROOT)
    # (engine, target MB): mlserve:engine onnx (issue 8) ships onnxruntime instead of xgboost
    targets = ((ENGINE_XGBOOST, TARGET_MB), (ENGINE_ONNX, ONNX_TARGET_MB))
    for engine, target_mb in targets:
        for arch in LAMBDA_ARCHITECTURES:
            with console.status(f"building the {arch} {engine} layer (cached after one run) ..."):
                layer = build_layer(LAYER_REQUIREMENTS[engine], arch)
            check_size(layer, function)
            total = layer.unzipped_bytes + function.unzipped_bytes
            out.append(
                check(
                    f"layer + function unzipped, {arch}, {engine} engine",
                    f"{human_mb(total)} of {human_mb(LAMBDA_UNZIPPED_LIMIT_BYTES)}",
                    f"≤ {target_mb} MB",
                    total <= target_mb * MB,
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

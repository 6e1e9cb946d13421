"""Figures for the `make verify` summary table.

Tests under tests/verify call :func:`record` after their assertions hold; `python -m mlserve
verify` sets ``MLSERVE_VERIFY_REPORT`` to a JSON-lines file, sums the figures per architecture
and prints one table. Outside `make verify` (plain `make test`) recording is a no-op.
"""

from __future__ import annotations

import json
import os
import threading

from mlserve.verify import FIGURES, REPORT_ENV

_lock = threading.Lock()


def record(section: str, architecture: str, **figures: int) -> None:
    """Add ``figures`` (keys of FIGURES) for ``architecture`` ("all" when not per architecture)."""
    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown verify figures: {sorted(unknown)}")
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    line = json.dumps({"section": section, "architecture": architecture, "figures": figures})
    with _lock, open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")

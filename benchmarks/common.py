"""What every benchmark section returns: rows of (figure, measured, target, verdict)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    target: str = "(reported)"
    verdict: str = "-"  # PASS, MISS, or "-" for reported-only figures

    def cells(self) -> tuple[str, str, str, str]:
        return (self.figure, self.measured, self.target, self.verdict)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def check(figure: str, measured: str, target: str, ok: bool) -> Row:
    return Row(figure, measured, target, verdict(ok))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)

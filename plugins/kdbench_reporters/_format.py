"""Number formatting shared by the text reporters: one place decides how a
leaderboard reads, whatever the format."""

from __future__ import annotations

import math
from typing import Any


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return value is None


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 2, sep: str = " ± ") -> str:
    """``81.23 ± 0.45`` (percent by default); the std is left out when undefined."""
    if missing(mean):
        return "—"
    text = f"{mean * scale:.{digits}f}"
    return text + ("" if missing(std) else f"{sep}{std * scale:.{digits}f}")


def si(value: Any) -> str:
    if missing(value):
        return "—"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.2f}{unit}"
    return f"{value:.0f}"


def gain(row: dict[str, Any], mark: str = " *") -> str:
    """``+1.23 [+0.40, +2.06] *``: mean paired gain in points, its 95% interval, and a
    mark when the interval excludes zero."""
    if not row["gain_n"]:
        return "—"
    text = f"{row['gain_mean'] * 100:+.2f}"
    if not missing(row["gain_ci_low"]):
        text += f" [{row['gain_ci_low'] * 100:+.2f}, {row['gain_ci_high'] * 100:+.2f}]"
    return text + (mark if row["gain_significant"] else "")


def count(row: dict[str, Any]) -> str:
    notes = [f"{row[k]} {k}" for k in ("failed", "missing") if row.get(k)]
    return f"{row['n']}" + (f" ({', '.join(notes)})" if notes else "")


def ratio(value: Any) -> str:
    return "—" if missing(value) else f"{value:.1f}×"


def ms(value: Any) -> str:
    return "—" if missing(value) else f"{value:.3f}"


def rank(value: Any) -> str:
    return "" if missing(value) else str(int(value))


HEADERS = ["Rank", "Teacher", "Student", "Fusion", "Method", "Acc (%)", "Macro-F1 (%)", "Gain vs ce (pts, 95% CI)",
           "n", "Params", "FLOPs", "Latency (ms)", "Compression", "Speed-up"]


def cells(row: dict[str, Any]) -> list[str]:
    """The main table's cells of one row, in ``HEADERS`` order."""
    return [
        rank(row["rank"]), row["teacher"], row["student"], row["fusion"], row["method"],
        pm(row["accuracy_mean"], row["accuracy_std"]), pm(row["f1_macro_mean"], row["f1_macro_std"]),
        gain(row), count(row), si(row["params"]), si(row["flops"]), ms(row["latency_ms_mean"]),
        ratio(row["compression"]), ratio(row["speedup"]),
    ]


NOTE = ("Test-split metrics of the checkpoint selected on the validation split; mean ± std over n seeds. "
        "Gain: accuracy minus the same student's ce accuracy, paired by seed, with a 95% Student-t interval; "
        "* marks an interval that excludes zero. Compression and speed-up: teacher params and latency ÷ the student's.")

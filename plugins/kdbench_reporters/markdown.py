"""Markdown leaderboards (GitHub tables through tabulate): one file per dataset."""

from __future__ import annotations

import math
from pathlib import Path

from tabulate import tabulate

from kdbench.report import Leaderboard


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "—"
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None and not math.isnan(std) else "")


def si(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.2f}{unit}"
    return f"{value:.0f}"


def gain(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "—"
    text = f"{mean * 100:+.2f}"
    return text + (f" ± {std * 100:.2f}" if not math.isnan(std) else "")


class MarkdownReporter:
    """GitHub Markdown table per dataset (tabulate)."""

    def rows(self, board: Leaderboard) -> list[list[str]]:
        out = []
        for r in board.table.to_dict("records"):
            lat = r["latency_ms_mean"]
            out.append([
                r["teacher"], r["student"], r["fusion"], r["method"],
                pm(r["accuracy_mean"], r["accuracy_std"]), pm(r["f1_macro_mean"], r["f1_macro_std"]),
                gain(r["gain_mean"], r["gain_std"], r["gain_n"]),
                f"{r['n']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
                si(r["params"]), si(r["flops"]), "—" if lat is None or math.isnan(lat) else f"{lat:.3f}",
            ])
        return out

    HEADERS = ["Teacher", "Student", "Fusion", "Method", "Acc (%)", "Macro-F1 (%)", "Gain vs ce (pts)",
               "n", "Params", "FLOPs", "Latency (ms)"]

    def render(self, boards: list[Leaderboard]) -> str:
        parts = []
        for board in boards:
            parts.append(f"## {board.dataset}\n")
            parts.append(tabulate(self.rows(board), headers=self.HEADERS, tablefmt="github", disable_numparse=True))
            parts.append("\nTest-split metrics of the checkpoint selected on the validation split; mean ± std over n seeds. "
                         "Gain: accuracy minus the same student's ce accuracy, paired by seed.\n")
        return "\n".join(parts)

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        paths = []
        for board in boards:
            path = out_dir / f"{board.slug}.md"
            path.write_text(f"# Leaderboard{': ' + board.grid if board.grid else ''}\n\n" + self.render([board]))
            paths.append(path)
        return paths

"""Plots with matplotlib, PNG and SVG per dataset:

- accuracy vs batch-1 latency and accuracy vs FLOPs, one point per row (teachers as
  squares), with the Pareto front (no other row is both cheaper and more accurate);
- the KD gain of every (student, method) over the baseline, with 95% interval error
  bars (std when fewer than two seeds pair up).

Files are byte-for-byte reproducible from the same results (fixed SVG ids, no dates).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kdbench.report import Leaderboard


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher),
    by increasing cost."""
    front, best = [], -math.inf
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def _ok(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


class PlotReporter:
    """Accuracy-cost scatter with Pareto fronts and KD gain bars (PNG + SVG)."""

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        paths: list[Path] = []
        with matplotlib.rc_context({"svg.hashsalt": "kdbench", "font.size": 8}):
            for board in boards:
                rows = board.table.to_dict("records")
                for cost, label in (("latency_ms_mean", "batch-1 latency (ms)"), ("flops", "FLOPs per sample")):
                    fig = self._scatter(plt, rows, cost, label, board)
                    paths += self._save(fig, out_dir / f"{board.slug}-accuracy-vs-{cost.split('_')[0]}")
                    plt.close(fig)
                fig = self._gains(plt, rows, board)
                paths += self._save(fig, out_dir / f"{board.slug}-gain")
                plt.close(fig)
        return paths

    def _save(self, fig, stem: Path) -> list[Path]:
        png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
        fig.savefig(png, dpi=120, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
        return [png, svg]

    def _scatter(self, plt, rows: list[dict[str, Any]], cost: str, label: str, board: Leaderboard):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        points = []
        for r in rows:
            x, y = r[cost], r["accuracy_mean"]
            if not (_ok(x) and _ok(y)):
                continue
            points.append((float(x), float(y) * 100))
            teacher = r["role"] == "teacher"
            name = r["teacher"] if teacher else f"{r['student']} · {r['method']}"
            yerr = float(r["accuracy_std"]) * 100 if _ok(r["accuracy_std"]) else None
            ax.errorbar(float(x), float(y) * 100, yerr=yerr, fmt="s" if teacher else "o", capsize=2, label=name)
        front = pareto_front(points)
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", linestyle="--",
                    linewidth=1, label="Pareto front")
        ax.set_xscale("log")
        from matplotlib.ticker import FormatStrFormatter, NullFormatter

        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{board.grid}: {board.dataset}" if board.grid else board.dataset)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="best")
        return fig

    def _gains(self, plt, rows: list[dict[str, Any]], board: Leaderboard):
        bars = [r for r in rows if r["role"] == "student" and not r["baseline"] and r["gain_n"]]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(bars) + 2), 3.6))
        names, values, errors = [], [], []
        for r in bars:
            names.append(f"{r['method']}\n{r['student']}\n← {r['teacher']}")
            values.append(r["gain_mean"] * 100)
            if _ok(r["gain_ci_low"]):
                errors.append(((r["gain_mean"] - r["gain_ci_low"]) * 100, (r["gain_ci_high"] - r["gain_mean"]) * 100))
            else:
                errors.append((0.0, 0.0))
        if bars:
            ax.bar(range(len(bars)), values, yerr=list(zip(*errors)), capsize=3,
                   color=["tab:green" if v >= 0 else "tab:red" for v in values])
            ax.set_xticks(range(len(bars)), names, fontsize=6)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("accuracy gain over ce (points)")
        ax.set_title("KD gain, 95% interval over seeds")
        ax.grid(True, axis="y", alpha=0.3)
        return fig

"""Markdown leaderboards (GitHub tables through tabulate): one file per dataset."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from kdbench.report import Leaderboard
from kdbench_reporters._format import HEADERS, NOTE, cells


class MarkdownReporter:
    """GitHub Markdown table per dataset (tabulate)."""

    def render(self, boards: list[Leaderboard], level: int = 2) -> str:
        parts = []
        for board in boards:
            rows = [cells(r) for r in board.table.to_dict("records")]
            parts.append(f"{'#' * level} {board.dataset}\n")
            parts.append(tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True))
            parts.append(f"\n{NOTE}\n")
        return "\n".join(parts)

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        paths = []
        for board in boards:
            path = out_dir / f"{board.slug}.md"
            path.write_text(f"# Leaderboard{': ' + board.grid if board.grid else ''}\n\n" + self.render([board]))
            paths.append(path)
        return paths

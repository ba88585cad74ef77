"""CSV leaderboards: one file per dataset, every aggregate as a plain number."""

from __future__ import annotations

from pathlib import Path

from kdbench.report import Leaderboard


class CsvReporter:
    """CSV per dataset: every aggregate as a number."""

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        paths = []
        for board in boards:
            path = out_dir / f"{board.slug}.csv"
            table = board.table.copy()
            table.insert(0, "dataset", board.dataset)
            table.to_csv(path, index=False, float_format="%.6g")
            paths.append(path)
        return paths

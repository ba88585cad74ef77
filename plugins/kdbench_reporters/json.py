"""JSON leaderboards: every aggregate as a number (null when undefined), with the
environment the runs ran on (devices, versions, dates)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kdbench.report import Leaderboard


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy / pandas scalars
        return _clean(value.item())
    if value is not None and type(value).__name__ == "NAType":
        return None
    return value


class JsonReporter:
    """JSON per dataset: rows, aggregates and the runs' environment."""

    def document(self, board: Leaderboard) -> dict[str, Any]:
        rows = [{k: _clean(v) for k, v in r.items()} for r in board.table.to_dict("records")]
        return {"grid": board.grid, "dataset": board.dataset, "environment": board.meta, "rows": rows}

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        paths = []
        for board in boards:
            path = out_dir / f"{board.slug}.json"
            path.write_text(json.dumps(self.document(board), indent=2, sort_keys=True) + "\n")
            paths.append(path)
        return paths

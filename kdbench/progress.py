"""Progress over a grid: a rich bar for the grid (done/failed/left, ETA) and one per
running job's epochs on a terminal; one plain line per finished job otherwise
(logs, CI)."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class GridProgress:
    def __init__(self, total: int, console: Console | None = None, live: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.total = total
        self.done = self.failed = 0
        self._lock = threading.Lock()
        self._jobs: dict[str, Any] = {}
        self._progress = None
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self._grid = self._progress.add_task("grid", total=total, status=self._status())
            self._progress.start()

    def _status(self) -> str:
        left = self.total - self.done - self.failed
        return f"done {self.done} · failed {self.failed} · left {left}"

    def start_job(self, key: str, label: str, epochs: int) -> None:
        with self._lock:
            if self._progress is not None:
                self._jobs[key] = self._progress.add_task(f"  {label}", total=max(epochs, 1), status="")
            else:
                self._jobs[key] = label

    def epoch(self, key: str, stage: str, epoch: int, total: int) -> None:
        with self._lock:
            if self._progress is not None and key in self._jobs:
                self._progress.update(self._jobs[key], advance=1, status=f"{stage} {epoch}/{total}")

    def finish_job(self, key: str, ok: bool, line: str, counts: bool = True) -> None:
        with self._lock:
            if counts:
                if ok:
                    self.done += 1
                else:
                    self.failed += 1
            task = self._jobs.pop(key, None)
            n = self.done + self.failed
            if self._progress is not None:
                if task is not None:
                    self._progress.remove_task(task)
                if counts:
                    self._progress.update(self._grid, completed=n, status=self._status())
                self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                prefix = f"[{n}/{self.total}] " if counts else ""
                self.console.print(prefix + line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()

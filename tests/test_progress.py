from __future__ import annotations

import io

from rich.console import Console

from kdbench.progress import GridProgress


def test_live_bars_on_a_terminal():
    buf = io.StringIO()
    progress = GridProgress(2, Console(file=buf, force_terminal=True, width=120), live=True)
    progress.start_job("a", "run a", 3)
    progress.epoch("a", "distill", 1, 3)
    progress.finish_job("a", True, "done   run a")
    progress.start_job("b", "run b", 3)
    progress.finish_job("b", False, "FAILED run b: boom")
    progress.close()
    text = buf.getvalue()
    assert "done 1 · failed 1 · left 0" in text and "FAILED run b: boom" in text


def test_plain_lines_elsewhere():
    buf = io.StringIO()
    progress = GridProgress(2, Console(file=buf, width=40), live=False)
    progress.start_job("a", "a very long label " * 4, 3)
    progress.finish_job("a", True, "done   " + "x" * 60)
    progress.close()
    assert buf.getvalue() == "[1/2] done   " + "x" * 60 + "\n"  # one line, not wrapped

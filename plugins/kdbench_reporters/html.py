"""HTML leaderboards: one standalone page per dataset (no external files or scripts),
with columns sorted by a click on their header. Every string that comes from a
grid or a plugin (labels, names, environment) is HTML-escaped."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from kdbench.report import Leaderboard
from kdbench_reporters._format import HEADERS, NOTE, cells, missing

# The sort key of each column, in HEADERS order: a number, or the cell's text.
_KEYS = ["rank", "teacher", "student", "fusion", "method", "accuracy_mean", "f1_macro_mean", "gain_mean", "n",
         "params", "flops", "latency_ms_mean", "compression", "speedup"]

_SCRIPT = """
document.querySelectorAll("table.leaderboard").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var numeric = th.dataset.type === "number";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        if (x === "" && y === "") return 0;
        if (x === "") return 1;   /* empty cells last, whatever the direction */
        if (y === "") return -1;
        var d = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.35em 0.7em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
tr.teacher td { color: #666; font-style: italic; }
p.note, dl { color: #555; font-size: 0.85em; max-width: 60em; }
"""


def _sort_value(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, str):
        return value
    return "" if missing(value) else repr(float(value))


class HtmlReporter:
    """Standalone HTML page per dataset with sortable columns."""

    def render(self, board: Leaderboard) -> str:
        e = html.escape
        numeric = {k: not isinstance(board.table[k].dropna().iloc[0] if len(board.table[k].dropna()) else 0.0, str)
                   for k in _KEYS}
        head = "".join(
            f'<th class="{"number" if numeric[k] else "text"}" data-type="{"number" if numeric[k] else "text"}" scope="col">{e(h)}</th>'
            for h, k in zip(HEADERS, _KEYS))
        body = []
        for r in board.table.to_dict("records"):
            tds = "".join(
                f'<td class="{"number" if numeric[k] else "text"}" data-sort="{e(_sort_value(r, k))}">{e(c)}</td>'
                for c, k in zip(cells(r), _KEYS))
            body.append(f'<tr class="{e(r["role"])}">{tds}</tr>')
        env = "".join(f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in board.meta.items())
        title = e(f"{board.grid + ': ' if board.grid else ''}{board.dataset}")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>kdbench leaderboard — {title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{title}</h1>\n<table class=\"leaderboard\">\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(body)
            + f"\n</tbody>\n</table>\n<p class=\"note\">{e(NOTE)} Click a column header to sort.</p>\n"
            f"<dl>{env}</dl>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
        )

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        paths = []
        for board in boards:
            path = out_dir / f"{board.slug}.html"
            path.write_text(self.render(board))
            paths.append(path)
        return paths

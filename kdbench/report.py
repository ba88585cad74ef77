"""From the store to leaderboards: one table per dataset, aggregated over seeds.

A row is one (teacher, student, fusion, method); columns are mean ± std over seeds
of test accuracy and macro-F1, ``n`` (seeds done), ``failed`` (seeds failed, never
silently dropped), parameters, FLOPs per sample, batch-1 latency, and the gain over
the baseline method (``ce``) on the same dataset, student and fusion, paired by seed
(mean ± std of the per-seed differences). Teacher reference rows come first.
Reporters (plugins) format :class:`Leaderboard` objects; numbers stay numbers here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEYS = ["teacher", "student", "fusion", "method"]


@dataclass
class Leaderboard:
    dataset: str
    table: Any  # pandas.DataFrame, one row per (teacher, student, fusion, method)
    grid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.dataset).strip("-") or "dataset"


def _rows(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for doc in docs:
        spec = doc["spec"]
        m = doc.get("metrics") or {}
        rows.append({
            "dataset": spec["dataset"]["label"],
            "teacher": spec["teacher"]["label"] if spec.get("teacher") else "-",
            "student": spec["student"]["label"],
            "fusion": spec["fusion"]["label"],
            "method": spec["method"]["label"],
            "baseline": bool(spec["method"].get("baseline")),
            "seed": spec["seed"],
            "status": doc["status"],
            "run_id": doc["run_id"],
            "accuracy": m.get("accuracy"),
            "f1_macro": m.get("f1_macro"),
            "precision_macro": m.get("precision_macro"),
            "recall_macro": m.get("recall_macro"),
            "params": m.get("params"),
            "flops": m.get("flops"),
            "latency_ms": m.get("latency_ms"),
            "train_seconds": m.get("train_seconds"),
            "role": "student",
        })
    return rows


def _teacher_rows(docs: list[dict[str, Any]], store) -> list[dict[str, Any]]:
    seen, rows = set(), []
    for doc in docs:
        key = doc.get("teacher_key")
        if not key or key in seen:
            continue
        seen.add(key)
        record = store.teacher_record(key) if store is not None else None
        metrics = (record or {}).get("metrics") or doc.get("teacher_metrics")
        if not metrics:
            continue
        spec = doc["spec"]
        rows.append({
            "dataset": spec["dataset"]["label"], "teacher": spec["teacher"]["label"], "student": "-",
            "fusion": spec["fusion"]["label"], "method": "(teacher)", "baseline": False,
            "seed": spec["seed"], "status": "done", "run_id": key, "role": "teacher",
            **{k: metrics.get(k) for k in ("accuracy", "f1_macro", "precision_macro", "recall_macro",
                                           "params", "flops", "latency_ms", "train_seconds")},
        })
    return rows


def runs_frame(docs: list[dict[str, Any]], store=None):
    """One row per run (and per teacher training), every metric as a column."""
    import pandas as pd

    return pd.DataFrame(_rows(docs) + _teacher_rows(docs, store))


def aggregate(frame) -> Any:
    """Mean ± std over seeds per (teacher, student, fusion, method) of one dataset,
    with the paired gain over the baseline."""
    import pandas as pd

    out = []
    done = frame[frame["status"] == "done"]
    base = done[done["baseline"]].set_index(["student", "fusion", "seed"])["accuracy"]
    for key, group in frame.groupby(KEYS + ["role", "baseline"], sort=False, dropna=False):
        ok = group[group["status"] == "done"]
        row = dict(zip(KEYS + ["role", "baseline"], key))
        row["n"] = len(ok)
        row["failed"] = int((group["status"] != "done").sum())
        for metric in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "latency_ms", "train_seconds"):
            values = ok[metric].dropna().astype(float)
            row[f"{metric}_mean"] = values.mean() if len(values) else float("nan")
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        for metric in ("params", "flops"):
            values = ok[metric].dropna()
            row[metric] = int(values.iloc[0]) if len(values) else None
        gains = []
        if row["role"] == "student" and not row["baseline"]:
            for _, r in ok.iterrows():
                b = base.get((r["student"], r["fusion"], r["seed"]))
                if b is not None and not isinstance(b, pd.Series):
                    gains.append(r["accuracy"] - b)
        row["gain_n"] = len(gains)
        row["gain_mean"] = float(sum(gains) / len(gains)) if gains else float("nan")
        row["gain_std"] = float(pd.Series(gains).std(ddof=1)) if len(gains) > 1 else float("nan")
        out.append(row)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["_teacher_first"] = (table["role"] != "teacher").astype(int)
    table["_base_first"] = (~table["baseline"]).astype(int)
    table = table.sort_values(["_teacher_first", "student", "fusion", "_base_first", "accuracy_mean"],
                              ascending=[True, True, True, True, False], kind="stable")
    return table.drop(columns=["_teacher_first", "_base_first"]).reset_index(drop=True)


def build_leaderboards(docs: list[dict[str, Any]], store=None, grid: str = "") -> list[Leaderboard]:
    if not docs:
        return []
    frame = runs_frame(docs, store)
    boards = []
    for dataset, part in frame.groupby("dataset", sort=False):
        boards.append(Leaderboard(dataset, aggregate(part), grid, {"runs": len(part)}))
    return boards


def write_reports(boards: list[Leaderboard], out_dir: Path, formats: list[str], registry) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for fmt in formats:
        reporter = registry.create("reporter", fmt)
        paths.extend(reporter.write(boards, out_dir))
    return paths


def markdown(boards: list[Leaderboard], registry) -> str:
    """The leaderboards as Markdown text (what ``kdbench run`` prints at the end)."""
    return registry.create("reporter", "md").render(boards)

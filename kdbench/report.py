"""From the store to leaderboards: one table per dataset, aggregated over seeds.

A row is one (teacher, student, fusion, method). Per row:

- mean ± sample std over seeds (and ``n``, the seeds done) of test accuracy, macro-F1,
  macro precision and recall, batch-1 latency and train time; parameters and FLOPs;
- ``failed`` (runs recorded as failed) and ``missing`` (runs of the grid with no
  result yet): shown, never silently dropped;
- the gain over the baseline (``ce``): for each seed both ran, the method's accuracy
  minus the baseline's on the same dataset, student and fusion; mean, std and a 95%
  confidence interval ``mean ± t(0.975, n-1) · std / sqrt(n)`` (Student's t, paired
  by seed); ``gain_significant`` when the interval excludes zero (needs n ≥ 2);
- ``compression`` (teacher params ÷ student params) and ``speedup`` (teacher latency ÷
  student latency) for rows with a teacher;
- ``rank`` by mean accuracy among the student rows of the dataset.

Teacher reference rows (method ``(teacher)``) come first, built from the teacher
records of the runs. Reporters (plugins) format :class:`Leaderboard` objects;
numbers stay numbers here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEYS = ["teacher", "student", "fusion", "method"]
METRICS = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "latency_ms", "train_seconds"]
TEACHER_METHOD = "(teacher)"


@dataclass
class Leaderboard:
    dataset: str
    table: Any  # pandas.DataFrame, one row per (teacher, student, fusion, method)
    grid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return slug(self.dataset)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "dataset"


def _label(spec: dict[str, Any] | None) -> str:
    return spec["label"] if spec else "-"


def _row(spec: dict[str, Any], status: str, run_id: str, metrics: dict[str, Any] | None,
         teacher_metrics: dict[str, Any] | None = None, role: str = "student") -> dict[str, Any]:
    m = metrics or {}
    t = teacher_metrics or {}
    return {
        "dataset": spec["dataset"]["label"],
        "teacher": _label(spec.get("teacher")),
        "student": _label(spec.get("student")) if role == "student" else "-",
        "fusion": spec["fusion"]["label"],
        "method": spec["method"]["label"] if role == "student" else TEACHER_METHOD,
        "baseline": bool(spec["method"].get("baseline")) if role == "student" else False,
        "seed": spec["seed"], "status": status, "run_id": run_id, "role": role,
        **{k: m.get(k) for k in (*METRICS, "params", "flops")},
        "teacher_params": t.get("params"), "teacher_latency_ms": t.get("latency_ms"),
    }


def runs_frame(docs: list[dict[str, Any]], store=None, expected: Iterable[Any] = ()):
    """One row per run (and per teacher training); ``expected`` RunSpecs without a
    result document become ``missing`` rows."""
    import pandas as pd

    rows, seen = [], set()
    for doc in docs:
        seen.add(doc["run_id"])
        rows.append(_row(doc["spec"], doc["status"], doc["run_id"], doc.get("metrics"), doc.get("teacher_metrics")))
    for spec in expected:
        if spec.run_id not in seen:
            rows.append(_row(spec.to_dict(), "missing", spec.run_id, None))
    teachers = set()
    for doc in docs:
        key = doc.get("teacher_key")
        if not key or key in teachers:
            continue
        teachers.add(key)
        record = store.teacher_meta(key) if store is not None else None
        metrics = (record or {}).get("metrics") or doc.get("teacher_metrics")
        if metrics:
            rows.append(_row(doc["spec"], "done", key, metrics, role="teacher"))
    return pd.DataFrame(rows)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student's t confidence interval of the mean; (nan, nan) below two values."""
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    from scipy.stats import t

    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def _stats(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


def aggregate(frame) -> Any:
    """Mean ± std over seeds per (teacher, student, fusion, method) of one dataset,
    with the paired gain over the baseline, compression, speed-up and rank."""
    import pandas as pd

    done = frame[frame["status"] == "done"]
    base = {(r.student, r.fusion, r.seed): r.accuracy for r in done[done["baseline"] & (done["role"] == "student")].itertuples()}
    out = []
    for key, group in frame.groupby(KEYS + ["role", "baseline"], sort=False, dropna=False):
        ok = group[group["status"] == "done"]
        row = dict(zip(KEYS + ["role", "baseline"], key))
        row["n"] = len(ok)
        row["failed"] = int((group["status"] == "failed").sum())
        row["missing"] = int((group["status"] == "missing").sum())
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = _stats([float(v) for v in ok[metric].dropna()])
        for metric in ("params", "flops"):
            values = ok[metric].dropna()
            row[metric] = int(values.iloc[0]) if len(values) else None
        gains = []
        if row["role"] == "student" and not row["baseline"]:
            gains = [r.accuracy - base[(r.student, r.fusion, r.seed)] for r in ok.itertuples() if (r.student, r.fusion, r.seed) in base]
        row["gain_n"] = len(gains)
        row["gain_mean"], row["gain_std"] = _stats(gains)
        row["gain_ci_low"], row["gain_ci_high"] = t_interval(gains)
        row["gain_significant"] = bool(len(gains) > 1 and (row["gain_ci_low"] > 0 or row["gain_ci_high"] < 0))
        t_params = ok["teacher_params"].dropna()
        t_latency = [float(v) for v in ok["teacher_latency_ms"].dropna()]
        row["compression"] = float(t_params.iloc[0]) / row["params"] if len(t_params) and row["params"] else float("nan")
        row["speedup"] = (_stats(t_latency)[0] / row["latency_ms_mean"]
                          if t_latency and row["latency_ms_mean"] and not math.isnan(row["latency_ms_mean"]) else float("nan"))
        out.append(row)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    students = table["role"] == "student"
    table["rank"] = pd.NA
    table.loc[students, "rank"] = table.loc[students, "accuracy_mean"].rank(ascending=False, method="min")
    table["rank"] = table["rank"].astype("Int64")
    table["_teacher_first"] = (table["role"] != "teacher").astype(int)
    table["_base_first"] = (~table["baseline"]).astype(int)
    table = table.sort_values(["_teacher_first", "student", "fusion", "_base_first", "accuracy_mean", "teacher", "method"],
                              ascending=[True, True, True, True, False, True, True], kind="stable", na_position="last")
    return table.drop(columns=["_teacher_first", "_base_first"]).reset_index(drop=True)


def environment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the runs ran on, from their documents (never from the reporting machine)."""
    done = [d for d in docs if d.get("status") == "done"]
    pick = lambda f: sorted({f(d) for d in done if f(d)})  # noqa: E731
    return {
        "devices": pick(lambda d: d.get("device")),
        "kdbench": pick(lambda d: (d.get("versions") or {}).get("kdbench")),
        "torch": pick(lambda d: (d.get("versions") or {}).get("torch")),
        "python": pick(lambda d: (d.get("versions") or {}).get("python")),
        "first_run": min((d["finished_at"] for d in done if d.get("finished_at")), default=None),
        "last_run": max((d["finished_at"] for d in done if d.get("finished_at")), default=None),
        "runs": len(docs),
        "runs_done": len(done),
    }


def build_leaderboards(docs: list[dict[str, Any]], store=None, grid: str = "", expected: Iterable[Any] = ()) -> list[Leaderboard]:
    docs = sorted(docs, key=lambda d: d["run_id"])  # the same documents give the same tables
    frame = runs_frame(docs, store, expected)
    if frame.empty:
        return []
    boards = []
    for dataset, part in frame.groupby("dataset", sort=False):
        part_docs = [d for d in docs if d["spec"]["dataset"]["label"] == dataset]
        boards.append(Leaderboard(dataset, aggregate(part), grid, environment(part_docs)))
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

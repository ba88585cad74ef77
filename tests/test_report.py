"""Aggregation on hand-worked result documents, every reporter, the HTML page in a
real headless browser, and byte-for-byte publishing."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from kdbench.report import build_leaderboards, t_interval, write_reports
from kdbench.store import ResultStore


def comp(name, label=None, **extra):
    return {"name": name, "params": {}, "version": 1, "label": label or name, **extra}


def doc(method, seed, acc, student="mlp", teacher="cnn", status="done", latency=1.0, params=100, tkey="t0"):
    baseline = method == "ce"
    spec = {
        "dataset": comp("synthetic", "data"), "teacher": None if baseline else comp(teacher),
        "student": comp(student), "fusion": comp("concat"),
        "method": comp(method, baseline=baseline, needs_teacher=not baseline), "seed": seed,
    }
    metrics = None if status != "done" else {
        "accuracy": acc, "f1_macro": acc - 0.01, "precision_macro": acc, "recall_macro": acc,
        "params": params, "flops": 2 * params, "latency_ms": latency, "train_seconds": 1.0,
    }
    return {
        "run_id": f"{method}-{student}-{seed}-{status}", "status": status, "error": None if status == "done" else "boom",
        "spec": spec, "metrics": metrics, "teacher_key": None if baseline else tkey,
        "teacher_metrics": None if baseline else {"accuracy": 0.95, "params": 1000, "latency_ms": 4.0},
        "device": "cpu", "versions": {"kdbench": "0.1.0", "torch": "2.x", "python": "3.11"},
        "finished_at": f"2026-12-0{seed + 1}T00:00:00+00:00",
    }


# Hand-worked: ce accuracies 0.70 0.72 0.74; kd 0.73 0.76 0.75 -> paired gains .03 .04 .01
# mean 0.02667, sd = sqrt(((.00333)^2 + (.01333)^2 + (.01667)^2) / 2) = 0.015275
# t(0.975, 2) = 4.302653; half-width = 4.302653 * 0.015275 / sqrt(3) = 0.037946
DOCS = [doc("ce", s, a) for s, a in enumerate([0.70, 0.72, 0.74])] + \
       [doc("kd", s, a, latency=0.5) for s, a in enumerate([0.73, 0.76, 0.75])] + \
       [doc("dkd", 0, 0.9), doc("dkd", 1, 0.0, status="failed")]


def board():
    (b,) = build_leaderboards(DOCS, None, "hand")
    return b


def row(b, method):
    return next(r for r in b.table.to_dict("records") if r["method"] == method)


def test_t_interval_hand_worked():
    low, high = t_interval([0.03, 0.04, 0.01])
    assert (low + high) / 2 == pytest.approx(0.026667, abs=1e-6)
    assert (high - low) / 2 == pytest.approx(0.037946, abs=1e-5)
    assert all(math.isnan(v) for v in t_interval([0.5]))


def test_aggregation_hand_worked():
    b = board()
    kd = row(b, "kd")
    assert kd["n"] == 3 and kd["accuracy_mean"] == pytest.approx(0.74666667)
    assert kd["accuracy_std"] == pytest.approx(math.sqrt(((0.73 - 0.746667) ** 2 + (0.76 - 0.746667) ** 2 + (0.75 - 0.746667) ** 2) / 2), rel=1e-4)
    assert kd["gain_n"] == 3 and kd["gain_mean"] == pytest.approx(0.026667, abs=1e-6)
    assert kd["gain_ci_low"] == pytest.approx(0.026667 - 0.037946, abs=1e-5)
    assert not kd["gain_significant"]  # the interval includes zero
    assert kd["compression"] == pytest.approx(10.0) and kd["speedup"] == pytest.approx(8.0)
    dkd = row(b, "dkd")
    assert (dkd["n"], dkd["failed"]) == (1, 1) and dkd["gain_n"] == 1 and dkd["gain_mean"] == pytest.approx(0.2)
    assert not dkd["gain_significant"] and math.isnan(dkd["gain_ci_low"])  # one pair: no interval
    ce = row(b, "ce")
    assert ce["gain_n"] == 0 and math.isnan(ce["compression"])
    teacher = row(b, "(teacher)")
    assert teacher["role"] == "teacher" and b.table.iloc[0]["method"] == "(teacher)"
    assert [row(b, m)["rank"] for m in ("dkd", "kd", "ce")] == [1, 2, 3]
    assert b.meta["devices"] == ["cpu"] and b.meta["last_run"].startswith("2026-12-03")


def test_significant_gain_is_marked():
    docs = [doc("ce", s, a) for s, a in enumerate([0.70, 0.72, 0.74])] + [doc("kd", s, a + 0.05) for s, a in enumerate([0.70, 0.725, 0.74])]
    (b,) = build_leaderboards(docs)
    kd = row(b, "kd")
    assert kd["gain_significant"] and kd["gain_ci_low"] > 0


def test_missing_runs_are_shown(write_grid, registry):
    from kdbench import config
    from kdbench.grid import make_plan

    plan = make_plan(config.parse_grid(str(write_grid()), registry), registry)
    (b,) = build_leaderboards([], None, "tiny", expected=plan.runs)
    assert b.table["missing"].sum() == len(plan.runs) and (b.table["n"] == 0).all()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from kdbench import load_registry

    out = tmp_path_factory.mktemp("report")
    docs = DOCS + [doc("kd", 0, 0.8, student="<script>alert('x')</script>")]
    paths = write_reports(build_leaderboards(docs, None, "hand"), out, ["md", "csv", "json", "latex", "html", "plots"], load_registry())
    return out, paths


def test_every_format(written):
    out, paths = written
    names = sorted(p.name for p in paths)
    assert names == sorted(["data.md", "data.csv", "data.json", "data.tex", "data.html"] +
                           [f"data-{k}.{e}" for k in ("accuracy-vs-latency", "accuracy-vs-flops", "gain") for e in ("png", "svg")])
    md = (out / "data.md").read_text()
    assert "| Rank" in md and "+2.67 [-1.13, +6.46]" in md and "1 (1 failed)" in md
    csv = (out / "data.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,teacher,student,fusion,method") and len(csv) == 1 + 5
    data = json.loads((out / "data.json").read_text())
    assert data["environment"]["torch"] == ["2.x"] and len(data["rows"]) == 5
    assert all(r["gain_ci_low"] is None or isinstance(r["gain_ci_low"], float) for r in data["rows"])
    tex = (out / "data.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex and r"\textbf{90.00}" in tex
    html = (out / "data.html").read_text()
    assert "<script>alert(" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert (out / "data-gain.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "data-accuracy-vs-flops.svg").read_text().lstrip().startswith("<?xml")


def test_latex_escaping():
    from kdbench_reporters.latex import escape

    assert escape("wrn_16_2 & 50% {x} #1 $5 ~ ^") == r"wrn\_16\_2 \& 50\% \{x\} \#1 \$5 \textasciitilde{} \textasciicircum{}"


def test_pareto_front():
    from kdbench_reporters.plots import pareto_front

    assert pareto_front([(1, 50), (2, 60), (3, 55), (0.5, 40), (4, 70), (2, 58)]) == [(0.5, 40), (1, 50), (2, 60), (4, 70)]


def _chromium() -> tuple[str, str] | None:
    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_html_page_in_a_real_browser(written, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    out, _ = written
    chrome, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    try:
        browser.get((out / "data.html").as_uri())
        rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")
        assert len(rows) == 5
        assert "<script>alert('x')</script>" in browser.find_element(By.TAG_NAME, "tbody").text  # shown as text
        headers = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard th")
        acc = next(h for h in headers if h.text.startswith("Acc"))

        def column(i):
            return [r.find_elements(By.TAG_NAME, "td")[i].text for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]

        i = headers.index(acc)
        acc.click()
        ascending = [float(v.split(" ")[0]) for v in column(i)]
        assert ascending == sorted(ascending) and acc.get_attribute("aria-sort") == "ascending"
        acc.click()
        descending = [float(v.split(" ")[0]) for v in column(i)]
        assert descending == sorted(descending, reverse=True)
        method = next(h for h in headers if h.text.startswith("Method"))
        method.click()
        assert column(headers.index(method)) == sorted(column(headers.index(method)))
    finally:
        browser.quit()


def test_publish_is_byte_for_byte(tmp_path, registry):
    from kdbench.publish import publish

    results = tmp_path / "results"
    store = ResultStore(results)
    for d in DOCS:
        store.put(d)
    (results / "grid.yaml").write_text("name: hand\ndescription: hand-made results\n")
    root = tmp_path / "leaderboards"
    publish(root, registry, results)
    first = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert Path("hand/README.md") in first and Path("README.md") in first
    assert Path("hand/results/runs/kd-mlp-0-done.json") in first
    readme = first[Path("hand/README.md")].decode()
    assert "| device | cpu |" in readme and "name: hand" in readme and "data-gain.svg" in readme
    assert "[hand](hand/README.md)" in first[Path("README.md")].decode()
    publish(root, registry)  # regenerate everything from the committed results
    again = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert again == first

"""End to end, from the command line: a tiny grid through the store to a leaderboard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from kdbench.cli import main


def kdbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdbench.cli", *args], capture_output=True, text=True, timeout=600)


def test_grid_end_to_end_then_resume(write_grid, tmp_path):
    grid, results = write_grid(), tmp_path / "results"
    first = kdbench("run", "--grid", str(grid), "--results", str(results))
    assert first.returncode == 0, first.stderr
    docs = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    assert len(docs) == 4  # 2 students x (ce + kd) x 1 seed
    for doc in docs:
        assert doc["status"] == "done" and doc["error"] is None
        assert set(doc["spec"]) >= {"dataset", "teacher", "student", "fusion", "method", "seed"}
        assert set(doc["metrics"]) >= {"accuracy", "f1_macro", "params", "flops", "latency_ms", "train_seconds"}
        assert doc["versions"]["kdbench"] and doc["versions"]["torch"] and doc["device"] == "cpu"
        assert (doc["teacher_metrics"] is None) == (doc["spec"]["method"]["name"] == "ce")
    assert len(list((results / "teachers").glob("*.safetensors"))) == 1
    board = (results / "leaderboard" / "tiny.md").read_text()
    assert "| Teacher" in board and "kd" in board and "(teacher)" in board
    csv = (results / "leaderboard" / "tiny.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,teacher,student,fusion,method") and len(csv) == 1 + 1 + 4
    assert "## tiny" in first.stdout and "4 run(s) done, 0 failed" in first.stdout
    assert "teachers: 1 trained" in first.stdout

    mtimes = {p: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    second = kdbench("run", "--grid", str(grid), "--results", str(results))
    assert second.returncode == 0, second.stderr
    assert "nothing to train" in second.stderr
    assert "0 run(s) done, 0 failed, 4 skipped" in second.stdout
    assert mtimes == {p: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}

    out = tmp_path / "report"
    rep = kdbench("report", "--results", str(results), "--out", str(out), "--format", "csv,md")
    assert rep.returncode == 0, rep.stderr
    assert (out / "tiny.md").read_text().split("\n", 1)[1] == board.split("\n", 1)[1]


def test_plugin_method_runs_in_grid_list_and_leaderboard(write_grid, loss_plugin, tmp_path):
    grid = write_grid(methods="[ce, cosine-logits]", students="[{model: mlp, width: 8}]")
    result = CliRunner().invoke(main, ["run", "--grid", str(grid), "--results", str(tmp_path / "r"), "--plugin", str(loss_plugin)])
    assert result.exit_code == 0, result.output
    assert "cosine-logits" in (tmp_path / "r" / "leaderboard" / "tiny.md").read_text()
    listed = CliRunner().invoke(main, ["list", "loss", "--plugin", str(loss_plugin)])
    assert "cosine-logits" in listed.output and str(loss_plugin) in listed.output


def test_failed_run_exit_code_and_rerun_failed(write_grid, tmp_path):
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        "import os\nfrom kdbench import hookimpl\nfrom kdbench.loss import DistillationLoss\n"
        "class Flaky(DistillationLoss):\n    '''Fails while FLAKY is set.'''\n    terms = ('flaky',)\n"
        "    def forward(self, s, t, b):\n"
        "        if os.environ.get('FLAKY'):\n            raise RuntimeError('flaky failure')\n"
        "        return {'flaky': (s.logits - t.logits).pow(2).mean()}\n"
        "@hookimpl\ndef kdbench_register_losses(registry):\n    registry.add('flaky', Flaky)\n"
    )
    grid = write_grid(methods="[ce, flaky]", students="[{model: mlp, width: 8}]", plugins=f"[{flaky.name}]")
    results = tmp_path / "r"
    env = {**os.environ, "FLAKY": "1"}
    first = subprocess.run([sys.executable, "-m", "kdbench.cli", "run", "--grid", str(grid), "--results", str(results)],
                           capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 1, first.stderr
    assert "RuntimeError: flaky failure" in first.stderr and "Traceback" not in first.stderr
    failed = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    assert sorted(d["status"] for d in failed) == ["done", "failed"]
    assert "1 failed" in (results / "leaderboard" / "tiny.md").read_text()
    again = kdbench("run", "--grid", str(grid), "--results", str(results))
    assert again.returncode == 0 and "nothing to train" in again.stderr  # failures are kept unless asked
    retry = kdbench("run", "--grid", str(grid), "--results", str(results), "--rerun-failed")
    assert retry.returncode == 0, retry.stderr
    assert all(json.loads(p.read_text())["status"] == "done" for p in (results / "runs").glob("*.json"))


def test_sigkill_mid_grid_loses_nothing(write_grid, tmp_path):
    grid = write_grid(seeds="[0, 1, 2]", train="{epochs: 3, batch_size: 16}")
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "kdbench.cli", "run", "--grid", str(grid), "--results", str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = results / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(runs.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.read_text() for p in runs.glob("*.json")}
    assert len(kept) >= 2
    for text in kept.values():
        assert json.loads(text)["status"] == "done"  # every result file is whole
    resume = kdbench("run", "--grid", str(grid), "--results", str(results))
    assert resume.returncode == 0, resume.stderr
    assert f"{len(kept)} skipped" in resume.stdout
    assert not list(runs.glob(".tmp-*"))
    for name, text in kept.items():
        assert (runs / name).read_text() == text  # finished runs untouched
    assert len(list(runs.glob("*.json"))) == 12


def test_two_cpu_workers(write_grid, tmp_path):
    grid = write_grid(seeds="[0, 1]")
    results = tmp_path / "r"
    res = kdbench("run", "--grid", str(grid), "--results", str(results), "--devices", "cpu,cpu")
    assert res.returncode == 0, res.stderr
    docs = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    assert len(docs) == 8 and all(d["status"] == "done" for d in docs)
    assert "teachers: 2 trained" in res.stdout


def test_workers_give_the_same_metrics_as_in_process(write_grid, tmp_path):
    grid = write_grid(students="[{model: mlp, width: 8}]", methods="[kd]")
    a, b = tmp_path / "a", tmp_path / "b"
    assert kdbench("run", "--grid", str(grid), "--results", str(a)).returncode == 0
    assert kdbench("run", "--grid", str(grid), "--results", str(b), "--devices", "cpu,cpu").returncode == 0
    (da,), (db,) = [[json.loads(p.read_text()) for p in (d / "runs").glob("*.json")] for d in (a, b)]
    assert da["run_id"] == db["run_id"]
    assert da["metrics"]["accuracy"] == db["metrics"]["accuracy"]
    assert da["metrics"]["f1_macro"] == db["metrics"]["f1_macro"]


def test_report_errors(tmp_path):
    res = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no results in" in res.output


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["list", "--help"], ["report", "--help"]])
def test_help(args):
    assert CliRunner().invoke(main, args).exit_code == 0

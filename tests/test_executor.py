"""The local executor's worker processes: crash isolation, packing, replacement."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from kdbench.executors.local import death_cause

CRASHY = '''
import os, signal
from kdbench import hookimpl
from kdbench.loss import DistillationLoss


class Crash(DistillationLoss):
    """Kills its own process in the first step: how={segv, kill, raise}."""

    terms = ("crash",)

    def __init__(self, how: str = "raise"):
        super().__init__()
        self.how = how

    def forward(self, s, t, b):
        if self.how == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("crash by request")


@hookimpl
def kdbench_register_losses(registry):
    registry.add("crash", Crash)
'''


def test_dying_workers_fail_only_their_runs(write_grid, tmp_path):
    (tmp_path / "crashy.py").write_text(CRASHY)
    grid = write_grid(
        methods="[ce, kd, {name: crash, how: segv, label: segv}, {name: crash, how: kill, label: kill}, "
                "{name: crash, how: raise, label: raise}]",
        students="[{model: mlp, width: 8}]", plugins="[crashy.py]",
    )
    results = tmp_path / "r"
    res = subprocess.run([sys.executable, "-m", "kdbench.cli", "run", "--grid", str(grid), "--results", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stderr
    docs = {d["spec"]["method"]["label"]: d for d in (json.loads(p.read_text()) for p in (results / "runs").glob("*.json"))}
    assert docs["ce"]["status"] == "done" and docs["kd"]["status"] == "done"
    assert "SIGSEGV" in docs["segv"]["error"] and "segmentation fault" in docs["segv"]["error"]
    assert "SIGKILL" in docs["kill"]["error"]
    assert docs["raise"]["error"] == "RuntimeError: crash by request"
    assert "2 run(s) done, 3 failed" in res.stdout
    # the rerun keeps the failures (and says so) unless asked
    again = subprocess.run([sys.executable, "-m", "kdbench.cli", "run", "--grid", str(grid), "--results", str(results)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to train" in again.stderr


def test_jobs_per_device_packs_workers(write_grid, tmp_path):
    grid = write_grid(seeds="[0, 1]", students="[{model: mlp, width: 8}]")
    results = tmp_path / "r"
    res = subprocess.run([sys.executable, "-m", "kdbench.cli", "run", "--grid", str(grid), "--results", str(results),
                          "--devices", "cpu", "--jobs-per-device", "2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert len(list((results / "runs").glob("*.json"))) == 4


def test_death_cause_in_words():
    assert death_cause(-signal.SIGKILL) == "worker died from SIGKILL (killed, e.g. by the out-of-memory killer)"
    assert death_cause(-signal.SIGSEGV).endswith("(segmentation fault)")
    assert death_cause(3) == "worker exited with code 3"

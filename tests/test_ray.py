"""The Ray executor against a real local Ray cluster (``ray start --head`` on loopback)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor is an extra: pip install 'kdbench[ray]'")

from tests.test_executor import CRASHY  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A loopback test cluster: no usage reports, no token authentication (the client and the
# cluster must agree on it; a real cluster sets up its token as Ray's docs say).
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray_cli = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = RAY_ENV
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, env=env, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_grid_on_a_ray_cluster_with_a_killed_worker(cluster, write_grid, tmp_path):
    (tmp_path / "crashy.py").write_text(CRASHY)
    grid = write_grid(methods="[ce, kd, {name: crash, how: kill, label: kill}]", students="[{model: mlp, width: 8}]",
                      plugins="[crashy.py]")
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "kdbench.cli", "run", "--grid", str(grid), "--results", str(results),
           "--executor", "ray", "--ray-address", cluster]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=RAY_ENV)
    assert res.returncode == 1, res.stderr[-3000:]
    docs = {d["spec"]["method"]["label"]: d for d in (json.loads(p.read_text()) for p in (results / "runs").glob("*.json"))}
    assert docs["ce"]["status"] == "done" and docs["kd"]["status"] == "done"
    assert docs["kd"]["teacher_metrics"]["accuracy"] > 0.25
    assert docs["kill"]["status"] == "failed" and "died" in docs["kill"]["error"]
    assert len(list((results / "teachers").glob("*.safetensors"))) == 1  # sent back by the task, cached by the driver
    assert (results / "leaderboard" / "tiny.md").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=RAY_ENV)
    assert again.returncode == 0 and "nothing to train" in again.stderr  # resume works as with the local executor


def test_missing_ray_says_how_to_install(monkeypatch, write_grid, tmp_path):
    from click.testing import CliRunner

    from kdbench.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    res = CliRunner().invoke(main, ["run", "--grid", str(write_grid()), "--results", str(tmp_path / "r"), "--executor", "ray"])
    assert res.exit_code == 2 and "pip install 'kdbench[ray]'" in res.output

"""Benchmark 5: peak memory of the quickstart (slow: deselect with ``-m "not slow"``).

What is run: ``kdbench run --grid <quickstart copy> --results <fresh dir> --devices
cpu`` in a subprocess. The copy is the shipped ``grids/quickstart.yaml`` with
``train.epochs`` and ``teacher_train.epochs`` cut to 2 (from 8 and 10): same data,
models, methods, seeds and metrics (latency on), so the same memory, in a third of
the time. ``KDBENCH_BENCH_FULL_QUICKSTART=1`` runs the shipped grid unchanged.

What is measured (Linux):

- ``largest_process_peak_mb``: the peak RSS of the largest single process of the
  run: ``ru_maxrss`` of the rusage that ``wait4`` returns for the ``kdbench``
  driver, which covers the driver and every descendant it waited for (its worker
  processes), the same number as ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in a
  process that ran nothing else. Exact, but the maximum of the processes, not
  their sum.
- ``total_peak_mb``: the peak of the *sum* of the RSS of the driver and all its
  descendants, sampled from ``/proc`` every 0.05 s, or the exact largest-process
  peak when that is higher: the sampling can miss a last spike, and does miss the
  driver's, which comes as it writes the leaderboards and exits, when the workers
  are already gone (so the sum then is the driver alone).
- ``total_pss_peak_mb``: the peak of the sum of their PSS (``/proc/<pid>/smaps_rollup``:
  a page shared by n processes, such as torch's libraries, counts 1/n in each),
  sampled every 0.5 s: the physical memory the run holds, shared pages counted once.
- ``per_process_peak_mb``: each process's own high-water mark (``VmHWM``) at the
  last sample before it exited, labelled driver / worker / other (so a lower bound).

The target (2 GB) is for ``total_peak_mb``. The ratio recorded is
``largest_process_peak_mb`` ÷ the peak RSS of ``python -c "import torch"``, the
floor of any process that trains with PyTorch.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TARGET = "<= 2 GB total"


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
    return out


def _descendants(root: int) -> list[int]:
    ppids = _ppids()
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in ppids.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in kB; zeros once it is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _label(pid: int, root: int) -> str:
    if pid == root:
        return "driver"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    if "spawn_main" in cmdline:
        return "worker"
    return "resource_tracker" if "resource_tracker" in cmdline else "other"


def measure(command: list[str], log: Path) -> dict:
    """Run ``command``; its exit code, exact largest-process peak and sampled total peak."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    total_peak, pss_peak, peaks, labels = 0, 0, {}, {}
    for tick in itertools.count():
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        pids = [proc.pid, *_descendants(proc.pid)]
        total = 0
        for p in pids:
            rss, hwm = _memory_kb(p)
            total += rss
            if hwm:
                peaks[p] = max(peaks.get(p, 0), hwm)
                labels.setdefault(p, _label(p, proc.pid))
        total_peak = max(total_peak, total)
        if tick % 10 == 0:  # reading smaps_rollup walks the page tables: ~10 ms a process
            pss_peak = max(pss_peak, sum(_pss_kb(p) for p in pids))
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return {
        "returncode": proc.returncode,
        "largest_kb": usage.ru_maxrss,  # kB on Linux
        "total_peak_kb": max(total_peak, usage.ru_maxrss),
        "sampled_total_peak_kb": total_peak,
        "total_pss_peak_kb": pss_peak,
        "per_process_kb": sorted(((labels[p], kb) for p, kb in peaks.items()), key=lambda x: -x[1]),
    }


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and wait4's rusage (Linux)")
def test_quickstart_peak_memory(benchmark, bench, tmp_path: Path):
    from kdbench.config import find_grid

    grid = yaml.safe_load(find_grid("quickstart").read_text())
    if os.environ.get("KDBENCH_BENCH_FULL_QUICKSTART") != "1":
        grid["train"]["epochs"] = 2
        grid.setdefault("teacher_train", {})["epochs"] = 2
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    command = [*bench.kdbench_command(), "run", "--grid", str(path), "--results", str(tmp_path / "results"),
               "--devices", "cpu"]
    found: dict = {}

    def run() -> None:
        found.update(measure(command, tmp_path / "kdbench.log"))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert found["returncode"] == 0, (tmp_path / "kdbench.log").read_text()[-2000:]
    floor = measure([sys.executable, "-c", "import torch"], tmp_path / "torch.log")["largest_kb"]
    mb = lambda kb: kb / 1024  # noqa: E731
    bench.report(
        benchmark, "5. quickstart peak RSS ÷ import torch", found["largest_kb"] / floor, TARGET,
        f"total {mb(found['total_peak_kb']):.0f} MB (PSS {mb(found['total_pss_peak_kb']):.0f} MB), "
        f"largest process {mb(found['largest_kb']):.0f} MB, import torch {mb(floor):.0f} MB",
        total_peak_mb=mb(found["total_peak_kb"]), sampled_total_peak_mb=mb(found["sampled_total_peak_kb"]),
        total_pss_peak_mb=mb(found["total_pss_peak_kb"]),
        largest_process_peak_mb=mb(found["largest_kb"]),
        import_torch_peak_mb=mb(floor),
        per_process_peak_mb=[(label, round(mb(kb))) for label, kb in found["per_process_kb"]],
        epochs={"train": grid["train"]["epochs"], "teacher_train": grid.get("teacher_train", {}).get("epochs")},
        load=bench.load_average(),
    )

"""Runs per hour of the quickstart on one CUDA device with 1, 2 and 4 workers on it.

For each N in ``--jobs`` (1, 2, 4 by default) this runs, in a fresh temporary
results directory (so every configuration trains everything: both teachers and
all 8 student runs)::

    kdbench run --grid quickstart --devices cuda:0 --jobs-per-device N --results <fresh tmp>

timed from launch to exit, then reads the result documents it wrote and prints a
Markdown table: wall time, student runs done, runs per hour (student runs ÷ wall
hours; the teacher jobs are inside the wall time), the speed-up over the first
configuration, the mean ``train_seconds`` of a run (it grows when workers share the
device), and the peak GPU memory in use on the device (sampled with ``nvidia-smi``
when it is installed; it includes other processes on that GPU).

Usage::

    python scripts/gpu_check.py                         # quickstart on cuda:0 with 1, 2, 4 jobs per device
    python scripts/gpu_check.py --device cuda:1 --jobs 1,2,4,8 --grid zoo --keep gpu-results

Exit codes: 0 every configuration finished with every run done; 1 some run or
configuration failed (its output is printed); 2 no usable CUDA device (with the
reason), or a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def kdbench_command() -> list[str]:
    """The ``kdbench`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("kdbench")
    if script.is_file():
        return [str(script)]
    found = shutil.which("kdbench")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from kdbench.cli import main; sys.exit(main())"]


def check_device(device: str) -> str:
    """The device's name; exits with code 2 and the reason when it cannot be used."""
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; pip install -e . first", file=sys.stderr)
        sys.exit(2)
    if not device.startswith("cuda:") or not device[5:].isdigit():
        print(f"gpu_check: --device must be cuda:N, got '{device}'", file=sys.stderr)
        sys.exit(2)
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        print(f"gpu_check: no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, CUDA "
              f"{built}). Run this on a machine with an NVIDIA GPU, its driver, and a CUDA build of torch.",
              file=sys.stderr)
        sys.exit(2)
    index, count = int(device[5:]), torch.cuda.device_count()
    if index >= count:
        print(f"gpu_check: {device} does not exist: this machine has {count} CUDA device(s) (cuda:0 .. "
              f"cuda:{count - 1})", file=sys.stderr)
        sys.exit(2)
    return torch.cuda.get_device_name(index)


class GpuMemory:
    """Samples the device's used memory (MiB) with ``nvidia-smi`` in a thread; the
    peak is None when nvidia-smi is missing or fails."""

    def __init__(self, index: int, interval: float = 0.5) -> None:
        self.index, self.interval = index, interval
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> GpuMemory:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        command = ["nvidia-smi", f"--id={self.index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                used = int(subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.split()[0])
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return
            self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(self.interval)


def run_once(grid: str, device: str, jobs: int, results: Path) -> dict[str, Any]:
    """One ``kdbench run`` with ``jobs`` workers on ``device``; what it took and did."""
    command = [*kdbench_command(), "run", "--grid", grid, "--devices", device, "--jobs-per-device", str(jobs),
               "--results", str(results)]
    with GpuMemory(int(device.partition(":")[2] or 0)) as memory:
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    docs = [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]
    done = [d for d in docs if d["status"] == "done"]
    teachers = list((results / "teachers").glob("*.json"))
    off_device = [d["run_id"] for d in done if not str(d.get("device", "")).startswith("cuda")]
    return {
        "jobs": jobs, "command": command, "returncode": proc.returncode, "output": proc.stdout + proc.stderr,
        "wall": wall, "runs": len(docs), "done": len(done), "teachers": len(teachers), "off_device": off_device,
        "train_s": sum(d["metrics"]["train_seconds"] for d in done) / len(done) if done else float("nan"),
        "gpu_peak_mib": memory.peak,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ["jobs/device", "wall (s)", "runs done", "teachers", "runs/hour", "speed-up", "mean train s/run",
            "peak GPU MiB", "exit"]
    base = rows[0]["done"] / rows[0]["wall"] if rows and rows[0]["done"] else None
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for r in rows:
        per_hour = r["done"] / r["wall"] * 3600
        speedup = f"{r['done'] / r['wall'] / base:.2f}x" if base else "-"
        peak = "-" if r["gpu_peak_mib"] is None else str(r["gpu_peak_mib"])
        lines.append(f"| {r['jobs']} | {r['wall']:.1f} | {r['done']}/{r['runs']} | {r['teachers']} | {per_hour:.0f} | "
                     f"{speedup} | {r['train_s']:.1f} | {peak} | {r['returncode']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0", help="the CUDA device [default: cuda:0]")
    parser.add_argument("--jobs", default="1,2,4", help="jobs per device to try, comma-separated [default: 1,2,4]")
    parser.add_argument("--grid", default="quickstart", help="grid file or shipped grid name [default: quickstart]")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep each configuration's results under DIR/jobs<N> [default: temporary, removed]")
    args = parser.parse_args(argv)
    try:
        jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    except ValueError:
        parser.error(f"--jobs must be integers separated by commas, got '{args.jobs}'")
    if not jobs or min(jobs) < 1:
        parser.error("--jobs needs at least one value, each >= 1")

    name = check_device(args.device)
    import torch

    import kdbench

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"# gpu_check: grid {args.grid} on {args.device} ({name}); kdbench {kdbench.__version__}, torch "
          f"{torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores; {stamp}\n", flush=True)
    rows = []
    for n in jobs:
        if args.keep is not None:
            results = args.keep / f"jobs{n}"
            if results.exists():
                print(f"gpu_check: {results} exists; pass an empty --keep directory (every run must train)",
                      file=sys.stderr)
                return 2
            row = run_once(args.grid, args.device, n, results)
        else:
            with tempfile.TemporaryDirectory(prefix=f"kdbench-gpu-jobs{n}-") as tmp:
                row = run_once(args.grid, args.device, n, Path(tmp) / "results")
        rows.append(row)
        print(f"jobs/device {n}: {row['done']}/{row['runs']} runs done in {row['wall']:.1f} s "
              f"(exit {row['returncode']})", flush=True)
        if row["returncode"] != 0 or row["done"] < row["runs"] or not row["runs"]:
            print(f"--- output of {' '.join(row['command'])} (last 3000 characters) ---\n{row['output'][-3000:]}",
                  file=sys.stderr)
        if row["off_device"]:
            print(f"gpu_check: runs not recorded on CUDA: {', '.join(row['off_device'])}", file=sys.stderr)
    print()
    print(table(rows))
    ok = all(r["returncode"] == 0 and r["runs"] and r["done"] == r["runs"] and not r["off_device"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

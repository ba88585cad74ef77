"""Shared pieces of the benchmarks: paired timing against a plain baseline, the
quickstart's models and data, and a summary of every ratio at the end of the run.

Every benchmark times kdbench and a plain baseline *in the same process, round by
round* (baseline, then kdbench, then the next round) and reports the ratio
kdbench ÷ baseline: on a noisy, shared machine both sides see the same load, so the
ratio means something even when the absolute times do not. Nothing here asserts a
time: targets are recorded next to the measurements and the reader judges.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["KDBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only kdbench's builtins, as in the tests

import torch  # noqa: E402

# The in-process benchmarks train tiny models: one thread is as fast and keeps both
# sides of a ratio off the other cores of a shared machine.
torch.set_num_threads(1)

ROUNDS = int(os.environ.get("KDBENCH_BENCH_ROUNDS", "5"))

_RESULTS: list[tuple[str, float | None, str, str]] = []  # (benchmark, ratio, headline, target)


def report(benchmark: Any, name: str, ratio: float | None, target: str, headline: str = "", **info: Any) -> None:
    """Record ``ratio`` (and ``info``) in the benchmark's ``extra_info``, print it,
    and list it in the summary at the end of the session."""
    benchmark.extra_info.update(info)
    benchmark.extra_info.update(ratio=ratio, target=target)
    _RESULTS.append((name, ratio, headline, target))
    shown = "n/a" if ratio is None else f"{ratio:.3f}"
    details = ", ".join(f"{k}={_fmt(v)}" for k, v in info.items())
    print(f"\n{name}: ratio {shown} {headline} (target {target}); {details}")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def paired(
    benchmark: Any,
    kdbench_fn: Callable[[], Any],
    plain_fn: Callable[[], Any],
    *,
    reset: Callable[[], None] = lambda: None,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Time ``kdbench_fn`` with pytest-benchmark and ``plain_fn`` alongside it.

    Each round runs ``reset(); plain_fn()`` in the (untimed by pytest-benchmark)
    setup, timed here, then ``reset(); kdbench_fn()`` as the benchmarked call. One
    warm-up of each comes first and is not counted. Returns the medians and the
    ratio: the median over rounds of kdbench_i ÷ plain_i (pairs taken seconds apart
    share the machine's load), the range of those per-round ratios (the noise) and
    the ratio of the minima.
    """
    plain: list[float] = []
    ours: list[float] = []
    reset()
    plain_fn()
    reset()
    kdbench_fn()

    def setup() -> None:
        reset()
        t0 = time.perf_counter()
        plain_fn()
        plain.append(time.perf_counter() - t0)
        reset()

    def target() -> None:
        t0 = time.perf_counter()
        kdbench_fn()
        ours.append(time.perf_counter() - t0)

    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)
    n = min(len(plain), len(ours))
    ratios = [o / p for o, p in zip(ours[:n], plain[:n])]
    return {
        "ratio": statistics.median(ratios),
        "ratio_of_minima": min(ours) / min(plain),
        "ratio_range": f"{min(ratios):.3f}..{max(ratios):.3f}",
        "kdbench_median_s": statistics.median(ours),
        "plain_median_s": statistics.median(plain),
        "rounds": n,
    }


def kdbench_command() -> list[str]:
    """The ``kdbench`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("kdbench")
    if script.is_file():
        return [str(script)]
    found = shutil.which("kdbench")
    if found is None:
        pytest.skip("the kdbench console script is not installed (pip install -e .)")
    return [found]


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
    except OSError:  # pragma: no cover - not on Unix
        return "unknown"


class Bench:
    """The helpers above, handed to the benchmarks as the ``bench`` fixture (a
    conftest is not imported by name)."""

    ROUNDS = ROUNDS
    paired = staticmethod(paired)
    report = staticmethod(report)
    kdbench_command = staticmethod(kdbench_command)
    load_average = staticmethod(load_average)


@pytest.fixture(scope="session")
def bench() -> type[Bench]:
    return Bench


@pytest.fixture(scope="session")
def registry():
    from kdbench import load_registry

    return load_registry()


@pytest.fixture(scope="session")
def quickstart(registry) -> dict[str, Any]:
    """The quickstart's KD run (tri-modal cnn(16,3) teacher → cnn(4,2) student) with
    its data, an (untrained: speed does not depend on the weights) frozen teacher, a
    student and its initial weights, and the kd loss set up as the runner does."""
    from kdbench import config
    from kdbench.grid import make_plan
    from kdbench.model import build_model
    from kdbench.runner import RunContext, _sample_batch, load_data, seed_everything
    from kdbench.store import ResultStore

    plan = make_plan(config.parse_grid("quickstart", registry), registry)
    spec = next(r for r in plan.runs if r.method.name == "kd" and r.student.name == "cnn" and r.seed == 0)
    ctx = RunContext(registry, ResultStore(Path(os.devnull)), "cpu", {"latency": False})
    data = load_data(ctx, spec.dataset)
    seed_everything(spec.seed)
    teacher = build_model(registry, spec.teacher, spec.fusion, data.info).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_model(registry, spec.student, spec.fusion, data.info)
    loss = registry.create("loss", spec.method.name, **spec.method.params)
    probe = _sample_batch(data.train, spec.train["batch_size"], torch.device("cpu"))
    with torch.no_grad():
        student.eval()
        s_probe = student(probe)
        student.train()
        t_probe = teacher(probe)
    loss.dataset_info = data.info
    loss.setup(s_probe, t_probe)
    return {
        "spec": spec, "data": data, "teacher": teacher, "student": student, "loss": loss,
        "init": {k: v.clone() for k, v in student.state_dict().items()},
        "one": _sample_batch(data.test, 1, torch.device("cpu")),
    }


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("kdbench ratios (kdbench ÷ plain baseline; lower is better)")
    tr.write_line(f"load average (1/5/15 min): {load_average()}")
    tr.write_line(f"{'benchmark':<44} {'ratio':>7}  {'target':<10} notes")
    for name, ratio, headline, target in _RESULTS:
        shown = "n/a" if ratio is None else f"{ratio:.3f}"
        tr.write_line(f"{name:<44} {shown:>7}  {target:<10} {headline}")

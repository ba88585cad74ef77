"""Benchmark 4: start-up of the ``kdbench`` command.

What is timed: ``kdbench --help`` and ``kdbench list`` as subprocesses (the
console script of this environment), launch to exit, output captured. The
baseline, timed alternately with them, is ``python -c pass`` with the same
interpreter: the ratio says how much kdbench adds to a bare interpreter, the
absolute median is what a user waits for (target for ``--help``: 0.5 s).

They run with the user's default environment (entry-point autoloading on, so
every installed distribution's entry points are scanned, as for a user). Whether
the command imported torch is recorded too (``imports_torch``): kdbench imports
it only when a job or a model needs it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TARGET_HELP_S = 0.5


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env.pop("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def _imports_torch(args: list[str]) -> bool:
    code = ("import sys\nfrom kdbench.cli import main\n"
            f"try:\n    main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    return proc.stderr.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("args", [["--help"], ["list"]], ids=["help", "list"])
def test_startup(benchmark, bench, args):
    command, env = [*bench.kdbench_command(), *args], _env()

    def ours() -> None:
        proc = subprocess.run(command, capture_output=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]

    def plain() -> None:
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, env=env)

    r = bench.paired(benchmark, ours, plain, rounds=max(bench.ROUNDS, 5))
    ratio = r.pop("ratio")
    bench.report(
        benchmark, f"4. kdbench {' '.join(args)} ÷ python -c pass", ratio,
        f"<= {TARGET_HELP_S} s" if args == ["--help"] else "-",
        f"median {r['kdbench_median_s']:.3f} s vs python -c pass {r['plain_median_s']:.3f} s",
        **r, imports_torch=_imports_torch(args), load=bench.load_average(),
    )

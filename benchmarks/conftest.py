"""Shared helpers of the benchmark suite: the machine's load beside every timing, and where files go.

Every figure here is a ratio of two timings taken in one run, and on a 2-core machine a second busy
process slows small 2-thread torch operations several-fold: so each timing records how busy the *other*
processes were while it ran (``other_cpu_cores``: machine busy time from /proc/stat minus this process's
own from /proc/self/stat, in cores, 0 .. n_cores) and the 1-minute load average, in ``extra_info``.

Nothing is written outside ``results/benchmarks/``: the JSON (``--benchmark-json``) goes there, training
runs and caches of the benchmarks go to ``results/benchmarks/scratch/`` (removed at the end).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from bench.sysutil import keep_freed_memory

keep_freed_memory()  # as the ``bench`` CLI does at start-up
RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
SCRATCH = RESULTS / "scratch"
_TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> int:
    """Busy jiffies of all CPUs together (user nice system irq softirq steal; guest is inside user)."""
    with open("/proc/stat") as fh:
        f = [int(v) for v in fh.readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)


def _self_busy() -> int:
    """Jiffies of this process (all threads) and of its waited-for children (DataLoader workers)."""
    with open("/proc/self/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in f[11:15])  # utime stime cutime cstime


class Load:
    """How busy the rest of the machine was between ``start()`` and ``stop()``."""

    def start(self) -> "Load":
        self.t, self.machine, self.own = time.perf_counter(), _machine_busy(), _self_busy()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t
        machine, own = _machine_busy() - self.machine, _self_busy() - self.own
        return {
            "other_cpu_cores": round(max(machine - own, 0) / _TICK / max(wall, 1e-9), 2),
            "own_cpu_cores": round(own / _TICK / max(wall, 1e-9), 2),
            "n_cores": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
        }


class Timed:
    """The ``timed`` fixture: pytest-benchmark's ``benchmark`` with the load recorded beside the timing."""

    def __init__(self, benchmark):
        self.benchmark = benchmark
        self.info = benchmark.extra_info

    def __call__(self, fn: Callable[[], Any], rounds: int, warmup: int = 1, **info: Any) -> float:
        """Time ``fn`` (warm-up rounds excluded from the timing and from the load), store ``info`` and the
        load of other processes during the timed rounds in ``extra_info``; return the median in seconds."""
        for _ in range(warmup):
            fn()
        load = Load().start()
        self.benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
        self.info.update(info, **load.stop())
        return self.benchmark.stats.stats.median

    @staticmethod
    def load() -> Load:
        """A started :class:`Load`, for a timing made outside pytest-benchmark (``.stop()`` gives the dict)."""
        return Load().start()

    def note(self, text: str) -> None:
        """Print a result with the load beside it (shown with ``-s``; the JSON's extra_info has it anyway)."""
        e = self.info
        print(f"\n{text} (other processes: {e.get('other_cpu_cores')} of {e.get('n_cores')} cores busy; "
              f"load average {e.get('load_avg_1min')})")


@pytest.fixture
def timed(benchmark) -> Timed:
    return Timed(benchmark)


@pytest.fixture(scope="session")
def scratch() -> Path:
    """A folder for training runs and caches, under results/benchmarks/, removed after the session."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(SCRATCH / "cache")
    yield SCRATCH
    if old is None:
        os.environ.pop("BENCH_CACHE", None)
    else:
        os.environ["BENCH_CACHE"] = old
    shutil.rmtree(SCRATCH, ignore_errors=True)


def pytest_configure(config) -> None:
    out = config.getoption("benchmark_json", None)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)

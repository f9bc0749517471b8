"""Progress of long work (training steps, evaluated images): a tqdm bar on a terminal, plain log lines
without one.

Batch jobs, ``nohup``, CI and cluster schedulers give a process no terminal; a bar there either prints
nothing or fills the log with carriage returns. So without a terminal, a line such as::

    train unet: step 1200/50000 (2%) | loss_main 0.0412 | 211.4 img/s | elapsed 0:03:02 | ETA 2:03:41

goes to stderr at the first report, then at most once every ``line_seconds()`` (default 30 s, or
``$BENCH_PROGRESS_SECONDS``), and at the end. Training reports every ``log_every`` steps, so its lines come
every ``log_every`` steps or every 30 s, whichever is rarer. Why 30 s: a scheduler's log then shows within
half a minute that a job is alive and how fast it goes, and a week-long run writes about 20,000 lines
(2 MB), not millions.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from typing import Any, Mapping

DEFAULT_LINE_SECONDS = 30.0


def line_seconds() -> float:
    """The least time between two plain progress lines: ``$BENCH_PROGRESS_SECONDS``, default 30."""
    text = os.environ.get("BENCH_PROGRESS_SECONDS")
    try:
        value = float(text) if text else DEFAULT_LINE_SECONDS
    except ValueError:
        raise ValueError(f"$BENCH_PROGRESS_SECONDS={text!r}: expected a number of seconds, e.g. 30") from None
    return max(value, 0.0)


def progress_mode(progress: bool | None, main_process: bool = True) -> str:
    """``bar``, ``lines`` or ``off``: ``--progress`` forces bars, ``--no-progress`` silences, the default is
    a bar on a terminal and lines without one. Only the main process of a torchrun job reports."""
    if not main_process or progress is False:
        return "off"
    if progress or sys.stderr.isatty():
        return "bar"
    return "lines"


def _clock(seconds: float) -> str:
    return str(_dt.timedelta(seconds=int(round(seconds))))


class Progress:
    """One task's progress: ``total`` units (steps or images), ``initial`` of them done by an earlier run.

    ``advance(n)`` counts finished units (it moves the bar); ``report(values)`` gives the latest figures
    (losses, images/s): the bar shows them, and in ``lines`` mode a line is printed when it is due."""

    def __init__(self, mode: str, total: int, initial: int, desc: str, unit: str):
        self.mode, self.total, self.initial, self.desc, self.unit = mode, total, initial, desc, unit
        self.done = initial
        self.ended = False  # the line of the finished task was printed
        self.t0 = time.perf_counter()
        self.every = line_seconds()
        self.last_line: float | None = None
        self.values: dict[str, Any] = {}
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.5)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def report(self, values: Mapping[str, Any] | None = None, *, force: bool = False) -> None:
        """New figures for the bar's postfix or the next line; in lines mode print one if it is due
        (the first report, ``line_seconds()`` after the last line, the end, or ``force``)."""
        if values is not None:
            self.values = dict(values)
        if self.bar is not None:
            if values:
                self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items()})
            return
        if self.mode != "lines":
            return
        now = time.perf_counter()
        end = self.done >= self.total
        due = self.last_line is None or now - self.last_line >= self.every or (end and not self.ended)
        if (due or force) and not (end and self.ended):
            self.last_line, self.ended = now, end
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float | None = None) -> str:
        """The plain progress line: done/total, the latest figures, rate, elapsed time and ETA."""
        elapsed = (now or time.perf_counter()) - self.t0
        pct = f" ({100 * self.done // max(self.total, 1)}%)"
        count = f"step {self.done}/{self.total}" if self.unit == "step" else f"{self.done}/{self.total} images"
        parts = [f"{self.desc}: {count}{pct}"]
        for key, value in self.values.items():
            if key != "img/s":
                parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        new = self.done - self.initial
        rate = new / elapsed if elapsed > 0 else 0.0
        if "img/s" in self.values:  # the caller's figure (training: images of the last log window)
            parts.append(f"{self.values['img/s']:.1f} img/s")
        elif self.unit == "img":
            parts.append(f"{rate:.1f} img/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.done < self.total:
            parts.append(f"ETA {_clock((self.total - self.done) / rate) if rate > 0 else '?'}")
        return " | ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

"""Plain progress lines without a terminal: the first report, then at most one per line_seconds(), and the end."""

import pytest

import bench.progress as progress
from bench.progress import Progress, line_seconds, progress_mode


def test_lines_come_every_log_point_or_every_n_seconds_whichever_is_rarer(monkeypatch, capsys):
    clock = {"t": 0.0}
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setenv("BENCH_PROGRESS_SECONDS", "30")
    bar = Progress("lines", 100, 0, "train m", "step")
    for step in range(1, 101):
        clock["t"] += 2.0  # 2 s a step; a report (a log point) every 10 steps = every 20 s
        bar.advance()
        if step % 10 == 0:
            bar.report({"loss_main": 0.5, "img/s": 8.0})
    lines = capsys.readouterr().err.splitlines()
    # step 10 (first), then the first log point at least 30 s after the last line: 30, 50, 70, 90, and the end
    assert [int(ln.split("step ")[1].split("/")[0]) for ln in lines] == [10, 30, 50, 70, 90, 100]
    assert lines[0] == "train m: step 10/100 (10%) | loss_main 0.5 | 8.0 img/s | elapsed 0:00:20 | ETA 0:03:00"
    assert lines[-1] == "train m: step 100/100 (100%) | loss_main 0.5 | 8.0 img/s | elapsed 0:03:20"
    # when log points are rarer than 30 s, every one prints
    bar = Progress("lines", 3, 0, "train m", "step")
    for _ in range(3):
        clock["t"] += 45.0
        bar.advance()
        bar.report({"loss_main": 0.5})
    assert len(capsys.readouterr().err.splitlines()) == 3


def test_mode_and_setting(monkeypatch):
    assert progress_mode(False) == "off" and progress_mode(True) == "bar" and progress_mode(None, main_process=False) == "off"
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    assert progress_mode(None) == "lines"
    monkeypatch.delenv("BENCH_PROGRESS_SECONDS", raising=False)
    assert line_seconds() == 30.0
    monkeypatch.setenv("BENCH_PROGRESS_SECONDS", "soon")
    with pytest.raises(ValueError, match="BENCH_PROGRESS_SECONDS"):
        line_seconds()

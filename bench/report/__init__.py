"""Leaderboards (Markdown, a self-contained HTML page) and pictures, from stored results only.

:mod:`.model` reads the result store into groups and tables, :mod:`.figures` draws grids, distributions and
loss curves (with :mod:`.plots`), :mod:`.markdown` and :mod:`.html` render the one model twice. A report
never recomputes a metric.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path
from typing import Sequence

from bench.report.figures import distribution_figure, grid_figure, losses_figure
from bench.report.model import (
    _PLOT_PREFIXES, DEFAULT_GRID_ROWS, PLOTS_DIR, Figure, Report, ReportError, Section, build_table, group_results,
    load_results,
)
from bench.store import write_text_atomic

__all__ = ["Report", "ReportError", "build_report", "load_results", "write_report"]


def build_report(root: Path, out: Path, datasets: Sequence[str] | None = None, images: Sequence[str] | None = None,
                 grid_rows: int = DEFAULT_GRID_ROWS, pictures: bool = True) -> Report:
    ok, failed = load_results(root, datasets)
    if not ok and not failed:
        raise ReportError(f"no results under {root / 'eval'}; run e.g. 'bench run --methods gray,kmeans32 --dataset samples' first")
    sections = []
    unmatched_everywhere: set[str] | None = None
    for group in group_results(ok):
        notes: list[str] = []
        figures: list[Figure] = []
        if pictures:
            grid, unmatched = grid_figure(group, out, images, grid_rows, notes)
            unmatched_everywhere = set(unmatched) if unmatched_everywhere is None else unmatched_everywhere & set(unmatched)
            if grid is not None:
                figures.append(grid)
            for fig in (distribution_figure(group, out, notes), losses_figure(group, root, out, notes)):
                if fig is not None:
                    figures.append(fig)
        sections.append(Section(group, build_table(group), figures, notes))
    if images and unmatched_everywhere:
        raise ReportError(f"--images: {', '.join(sorted(unmatched_everywhere))} matched no stored sample (give stored ids or 0-based indexes)")
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return Report(root, sections, failed, created)


def write_report(root: Path, out: Path, formats: Sequence[str] = ("md", "html"), datasets: Sequence[str] | None = None,
                 images: Sequence[str] | None = None, grid_rows: int = DEFAULT_GRID_ROWS) -> Report:
    """Build the report and write ``leaderboard.md`` and/or ``index.html`` (+ ``plots/``) into ``out``."""
    from bench.report.html import render_html
    from bench.report.markdown import render_markdown

    bad = [f for f in formats if f not in ("md", "html")]
    if bad or not formats:
        raise ReportError(f"--format: unknown {', '.join(bad) or '(empty)'}; choose from md, html")
    created = None  # the outermost folder this call creates: removed again if no report can be made
    if not out.exists():
        created = out
        while not created.parent.exists():
            created = created.parent
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = build_report(root, out, datasets, images, grid_rows)
    except BaseException:
        if created is not None:  # e.g. no results yet: leave no empty reports/ folder behind
            shutil.rmtree(created, ignore_errors=True)
        raise
    written = {out / f.path for s in report.sections for f in s.figures}
    plots_dir = out / PLOTS_DIR
    if plots_dir.is_dir():  # drop our own pictures of earlier reports that this one no longer has
        for p in plots_dir.glob("*.png"):
            if p.name.startswith(_PLOT_PREFIXES) and p not in written:
                p.unlink()
    if "md" in formats:
        write_text_atomic(out / "leaderboard.md", render_markdown(report))
        report.files.append(out / "leaderboard.md")
    if "html" in formats:
        write_text_atomic(out / "index.html", render_html(report))
        report.files.append(out / "index.html")
    report.files += sorted(written)
    return report

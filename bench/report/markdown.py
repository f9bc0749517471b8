"""A :class:`~bench.report.model.Report` as Markdown (``leaderboard.md``). Every string from a result or a
file name goes through :func:`md` (escaping)."""

from __future__ import annotations

import re
from typing import Any

from bench.report.model import Report, TableModel, describe_group, warnings_of

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}<>|#~!&$])")

LEGEND = ("± is half the width of the stored 95% confidence interval; bold is the best value of a column "
          "(among rows scored on the whole set: a row that says n of N images is not ranked).")
SEEDS_LEGEND = ("A row whose seed reads \"mean ± sd of ...\" is one setting over several seeds: its value is the mean of "
                "the seeds' stored means and ± their sample standard deviation (n-1); each seed's own row is in the "
                "table of seeds below.")
OVERVIEW_TEXT = ("PSNR and SSIM of every table side by side. A row is one setting of a method; a value is the one its "
                 "table shows (the mean over seeds where it has several: the table gives the spread and each seed). "
                 "Values compare within a column only: each column is another test set. Bold is the best of a column.")


def md(text: Any) -> str:
    """Escape a string from a result for a Markdown table cell (CommonMark backslash escapes; no newlines)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _table(t: TableModel) -> list[str]:
    """A table and its numbered notes."""
    head = [f"[{md(h.text)}](#{h.link})" if h.link else md(h.text) for h in t.headers]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h.numeric else "---" for h in t.headers) + "|"]
    for row in t.rows:
        cells = []
        for c in row:
            text = md(c.text) + (f" [{c.note}]" if c.note else "")
            cells.append(f"**{text}**" if c.bold else text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if t.notes:
        lines += [f"[{i}] {md(n)}  " for i, n in enumerate(t.notes, 1)] + [""]
    return lines


def render_markdown(report: Report) -> str:
    lines = ["# colorbench leaderboard", "",
             f"Generated {report.created} from the results under {md(report.root)}; "
             "values are read from stored results, never recomputed.", ""]
    if report.overview is not None:
        links = ", ".join(f"[{md(s.group.title)}](#section-{i})" for i, s in enumerate(report.sections))
        lines += ["## Overview", "", f"{OVERVIEW_TEXT} Full tables: {links}.", ""]
        lines += [f"> **Warning:** {md(w)}" for w in report.overview.warnings]
        if report.overview.warnings:
            lines.append("")
        lines += _table(report.overview.table)
    for i, s in enumerate(report.sections):
        if report.overview is not None:
            lines += [f'<a id="section-{i}"></a>', ""]  # the overview's links land here
        lines += [f"## {md(s.group.title)}", ""]
        lines += [f"> **Warning:** {md(w)}" for w in warnings_of(s)]
        if warnings_of(s):
            lines.append("")
        lines += [md(describe_group(s.group)), ""]
        lines += _table(s.table)
        lines += [LEGEND + (" " + SEEDS_LEGEND if s.seeds is not None else ""), ""]
        if s.seeds is not None:
            lines += [f"### {md(s.group.title)}: each seed", "",
                      "Each seed's own result, for the settings the table above shows as a mean over seeds.", ""]
            lines += _table(s.seeds)
        for f in s.figures:
            lines += [f"![{md(f.caption)}]({f.path.as_posix()})", "", f"*{md(f.caption)}*", ""]
        lines += [f"- {md(n)}" for n in s.notes]
        if s.notes:
            lines.append("")
    if report.failed:
        lines += ["## Failed runs", "", "| method | dataset | split | seed | stage | error |", "|---|---|---|---:|---|---|"]
        for r in report.failed:
            err = str(r.data.get("error", "unknown error"))[:300]
            lines.append(f"| {md(r.method)} | {md(r.dataset)} | {md(r.split)} | {md(r.seed)} | {md(r.data.get('stage', 'evaluate'))} | {md(err)} |")
        lines.append("")
    return "\n".join(lines)

"""A :class:`~bench.report.model.Report` as Markdown (``leaderboard.md``). Every string from a result or a
file name goes through :func:`md` (escaping)."""

from __future__ import annotations

import re
from typing import Any

from bench.report.model import Report, describe_group, warnings_of

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}<>|#~!&$])")


def md(text: Any) -> str:
    """Escape a string from a result for a Markdown table cell (CommonMark backslash escapes; no newlines)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def render_markdown(report: Report) -> str:
    lines = ["# colorbench leaderboard", "",
             f"Generated {report.created} from the results under {md(report.root)}; "
             "values are read from stored results, never recomputed.", ""]
    for s in report.sections:
        lines += [f"## {md(s.group.title)}", ""]
        lines += [f"> **Warning:** {md(w)}" for w in warnings_of(s)]
        if warnings_of(s):
            lines.append("")
        lines += [md(describe_group(s.group)), ""]
        t = s.table
        lines.append("| " + " | ".join(md(h.text) for h in t.headers) + " |")
        lines.append("|" + "|".join("---:" if h.numeric else "---" for h in t.headers) + "|")
        for row in t.rows:
            cells = []
            for c in row:
                text = md(c.text) + (f" [{c.note}]" if c.note else "")
                cells.append(f"**{text}**" if c.bold else text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if t.notes:
            lines += [f"[{i}] {md(n)}  " for i, n in enumerate(t.notes, 1)] + [""]
        lines.append("± is half the width of the stored 95% confidence interval; bold is the best value of a column.")
        lines.append("")
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

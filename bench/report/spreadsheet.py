"""A :class:`~bench.report.model.Report`'s leaderboard rows as CSV (``leaderboard.csv``), for spreadsheets.

The rows are those the Markdown tables show, table by table: a setting of one seed (``row`` = ``single``),
a setting over several seeds (``mean``: each metric's mean over seeds and its sample standard deviation
``<metric>_sd``), then that setting's seeds (``seed``), and the gray placeholder where gray was not run
(``not run``). Numbers are the stored ones, unrounded; ``<metric>_lo``/``_hi`` are a result's stored 95%
interval. Text from results that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or
a carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterator

from bench.identity import result_id, source_text
from bench.report.model import (
    BASELINE_METHOD, Entry, Report, Section, Stored, stored_mean, predicted_text, ci_bounds, metric_columns, seeds_text,
    trained_on_text,
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: never a formula (OWASP's advice for CSV exports)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _recipe(d: dict[str, Any]) -> str:
    recipe = d.get("recipe")
    return str(recipe.get("size")) if isinstance(recipe, dict) else ""


def _rows(report: Report, metrics: list[str]) -> Iterator[dict[str, Any]]:
    for s in report.sections:
        base = {"dataset": s.group.dataset, "split": s.group.split, "table": s.group.title}
        for e in s.entries:
            if e.aggregated:
                yield {**base, **_mean_row(e, metrics)}
                yield from ({**base, **_result_row(r, e.label, "seed", metrics)} for r in e.results)
            else:
                yield {**base, **_result_row(e.first, e.label, "single", metrics)}
        if not any(e.method == BASELINE_METHOD for e in s.entries):
            yield {**base, "row": "not run", "label": BASELINE_METHOD, "method": BASELINE_METHOD}


def _common(r: Stored) -> dict[str, Any]:
    d = r.data
    train = d.get("train") or {}
    trained = trained_on_text(d)[0]
    return {"method": r.method, "trained_on": "" if trained == "—" else trained, "source": source_text(d), "recipe": _recipe(d),
            "predicted": predicted_text(d), "images": d.get("n_images"), "train_seconds": train.get("seconds")}


def _result_row(r: Stored, label: str, kind: str, metrics: list[str]) -> dict[str, Any]:
    d = r.data
    row = {"row": kind, "label": label, "seeds": r.seed, **_common(r), "created": d.get("created"),
           "commit": (d.get("environment") or {}).get("git_commit"), "result_ids": result_id(d), "files": r.path.name}
    for m in metrics:
        entry = (d.get("metrics") or {}).get(m)
        row[m] = stored_mean(entry)
        row[f"{m}_lo"], row[f"{m}_hi"] = ci_bounds(entry)
    return row


def _mean_row(e: Entry, metrics: list[str]) -> dict[str, Any]:
    secs = [s for s in ((r.data.get("train") or {}).get("seconds") for r in e.results) if isinstance(s, (int, float))]
    row = {"row": "mean", "label": e.label, "seeds": seeds_text(e.seeds), **_common(e.first),
           "train_seconds": sum(secs) / len(secs) if secs else None,
           "created": max(str(r.data.get("created") or "") for r in e.results),
           "result_ids": " ".join(result_id(r.data) for r in e.results), "files": " ".join(r.path.name for r in e.results)}
    commits = {(r.data.get("environment") or {}).get("git_commit") for r in e.results}
    row["commit"] = commits.pop() if len(commits) == 1 else " ".join(sorted(str(c) for c in commits))
    images = {r.data.get("n_images") for r in e.results}
    row["images"] = images.pop() if len(images) == 1 else None
    for m in metrics:
        row[m], row[f"{m}_sd"] = e.mean(m), e.sd(m)
    return row


def csv_columns(sections: list[Section]) -> tuple[list[str], list[str]]:
    """(metric names, every column) of the CSV of ``sections``."""
    metrics = [m for m, _ in metric_columns([r for s in sections for r in s.group.results])]
    columns = ["dataset", "split", "table", "row", "label", "method", "seeds", "trained_on", "source"]
    for m in metrics:
        columns += [m, f"{m}_lo", f"{m}_hi", f"{m}_sd"]
    return metrics, columns + ["images", "train_seconds", "recipe", "predicted", "created", "commit", "result_ids", "files"]


def render_csv(report: Report) -> str:
    metrics, columns = csv_columns(report.sections)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for row in _rows(report, metrics):
        writer.writerow({k: _text(v) for k, v in row.items()})
    return buf.getvalue()

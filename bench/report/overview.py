"""The overview that opens a report of several tables: methods x datasets, PSNR and SSIM side by side (as
the NTIRE 2019 colourisation report and recent colourisation papers tabulate them), each dataset's
heading linking its full table.

A row is one setting of a method across the tables. Its cells are the values the tables show (the mean
over seeds where a setting has several; never recomputed from images). Rows are matched across tables by
the setting's readable parts (recipe, parameters, prediction, source), not by training identity, which
differs from dataset to dataset by construction; what a row was trained on is its own column:

* a setting trained on each dataset's own train split everywhere is one row ("own train split");
* otherwise one row per training set (``unet`` trained on div2k, scored on div2k and on landscape);
* two settings of one table that read alike here (other code, say) stay two rows, each with its table label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from bench.identity import describe_setting, setting_features, trained_on
from bench.report.model import (
    BASELINE_METHOD, Cell, Entry, Header, Section, TableModel, _arrow, finish_metric_column, metric_columns, skipped_images,
    source_cell, trained_on_text, training_data,
)

OVERVIEW_METRICS = ("psnr", "ssim")
OWN = ("own",)
# Settings that do not make two rows of the overview: they differ between datasets by construction (the
# training identity, the training data: a column of its own), or do not change the values shown.
_NOT_MATCHED = ("trained_on", "trained_on_data", "training", "code", "metrics", "schema")


@dataclass
class Overview:
    table: TableModel
    sections: list[int | None]  # per column: the section its values come from (None: the first three)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Row:
    method: str
    features: dict[str, Any]
    trained: tuple | None
    own_label: str | None  # a setting that collided with another of its table: its table label
    cells: dict[int, Entry] = field(default_factory=dict)

    @property
    def first(self) -> Entry:
        return next(iter(self.cells.values()))


def _matched(e: Entry) -> tuple[dict[str, Any], tuple]:
    feats = {k: v for k, v in setting_features(e.first.data).items() if k not in _NOT_MATCHED}
    return feats, (e.method, e.first.data.get("tag"), json.dumps(feats, sort_keys=True, default=str))


def _rows(sections: Sequence[Section]) -> list[_Row]:
    by_setting: dict[tuple, list[tuple[int, Entry, dict[str, Any]]]] = {}
    for i, s in enumerate(sections):
        for e in s.entries:
            feats, key = _matched(e)
            by_setting.setdefault(key, []).append((i, e, feats))
    rows: dict[tuple, _Row] = {}
    for key, members in by_setting.items():
        trained = [(i, trained_on(e.first.data)) for i, e, _ in members]
        own = any(t is not None for _, t in trained) and all(
            t is None or t.get("name") == sections[i].group.dataset for i, t in trained)
        contents: dict[str, set[str]] = {}  # a name with several recorded contents is several training sets
        for _, t in trained:
            if t is not None and t.get("content_hash"):
                contents.setdefault(str(t.get("name")), set()).add(str(t["content_hash"]))
        for i, e, feats in members:
            t = trained_on(e.first.data)
            if t is None or own:
                tkey = None if t is None else OWN
            else:
                name = str(t.get("name"))
                tkey = (name, t.get("content_hash")) if len(contents.get(name, ())) > 1 else (name,)
            row_key: tuple = (key, tkey)
            if row_key in rows and i in rows[row_key].cells:  # alike here, told apart in their table
                row_key = (key, tkey, e.label)
            row = rows.setdefault(row_key, _Row(e.method, feats, tkey, e.label if len(row_key) == 3 else None))
            row.cells[i] = e
    return list(rows.values())


def _labels(rows: Sequence[_Row]) -> list[str]:
    """Method, tag and the readable settings in which rows of one method differ; rows that still read alike
    name their training data."""
    texts = []
    for row in rows:
        if row.own_label:
            texts.append(row.own_label)
            continue
        same = [r for r in rows if r.method == row.method and not r.own_label]
        keys = [k for k in row.features if len({json.dumps(r.features.get(k), sort_keys=True, default=str) for r in same}) > 1]
        parts = [row.method, str(row.first.first.data.get("tag") or "")]
        parts += [describe_setting(k, row.features.get(k)) for k in keys if not (k == "prediction" and row.features.get(k) is None)]
        texts.append(" · ".join(p for p in parts if p))
    out = []
    for text, row in zip(texts, rows):
        if texts.count(text) > 1 and row.trained not in (None, OWN):
            text += " · " + describe_setting("trained_on", row.trained[0])
        out.append(text)
    return out


def _trained_cell(row: _Row) -> Cell:
    if row.trained == OWN:
        names = ", ".join(sorted({str((trained_on(e.first.data) or {}).get("name")) for e in row.cells.values()}))
        return Cell("own train split", "own train split", title=f"each column's model was trained on that dataset's train split ({names})")
    text, detail = trained_on_text(row.first.first.data)
    return Cell(text, text, title=detail)


def build_overview(sections: Sequence[Section]) -> Overview | None:
    """Methods x datasets (PSNR and SSIM of each table side by side), or None for a report of one table."""
    if len(sections) < 2:
        return None
    columns: list[tuple[int, str, dict[str, Any]]] = []
    for i, s in enumerate(sections):
        present = dict(metric_columns(s.group.results))
        columns += [(i, m, present[m]) for m in OVERVIEW_METRICS if m in present]
    if not columns:
        return None
    headers = [Header("method", "method"), Header("trained_on", "trained on", title="the data each model was trained on"),
               Header("source", "source", title="trained here, no training, a checkpoint file, published weights, or outputs made elsewhere")]
    for i, m, entry in columns:
        unit = entry.get("unit") or ""
        text = f"{sections[i].group.title}: {m} {_arrow(entry.get('higher_is_better'))}".strip() + (f" ({unit})" if unit else "")
        headers.append(Header(f"s{i}:{m}", text, numeric=True, link=f"section-{i}",
                              title=f"{m} of the {sections[i].group.title} table (mean over seeds where there are several); "
                                    f"{entry.get('convention', '')}".strip()))
    table = TableModel(headers, [])
    rows = _rows(sections)
    for row, label in zip(rows, _labels(rows)):
        cells = [Cell(label, row.method, title=f"as labelled in its tables: {', '.join(sorted({e.label for e in row.cells.values()}))}"),
                 _trained_cell(row), source_cell(row.first.first, table, label, counts=False)]
        for i, m, _ in columns:
            e = row.cells.get(i)
            value = e.mean(m) if e is not None else None
            if e is None:
                cells.append(Cell("not run" if row.method == BASELINE_METHOD else "—", None,
                                  title=f"no result in the {sections[i].group.title} table"))
            elif value is None:
                cells.append(Cell("—", None, title=f"{m} not stored for this result"))
            else:
                sd = e.sd(m)
                how = (f"mean over seeds {', '.join(map(str, e.seeds))}; sample standard deviation (n-1) {sd:.4g}" if sd is not None
                       else f"seed {e.seeds[0]}")
                skipped = skipped_images(e.first.data)
                note = table.add_note(f"{label} on {sections[i].group.title}: {skipped}") if skipped else None
                cells.append(Cell("", value, title=f"{value:.6g} ({how})", note=note, unranked=bool(skipped)))
        table.rows.append(cells)
    if not any(r.method == BASELINE_METHOD for r in rows):
        note = table.add_note(f"the {BASELINE_METHOD} baseline has no result in any table; run: bench run --methods {BASELINE_METHOD} ...")
        table.rows.append([Cell(BASELINE_METHOD, BASELINE_METHOD, note=note)] + [Cell("not run") for _ in headers[1:]])
    for k, (_, _, entry) in enumerate(columns):
        finish_metric_column(table, 3 + k, entry.get("higher_is_better"))
    table.rows.sort(key=lambda cells: _order(cells, columns))
    mixed = [s.group.title for s in sections if len(training_data(s.group.results)) > 1]
    warnings = []
    if mixed:
        warnings.append(f"Some tables mix rows trained on different data ({', '.join(mixed)}): within their columns a gap "
                        "between rows is a difference of method and of training data together; see the warning above each.")
    return Overview(table, [None, None, None] + [i for i, _, _ in columns], warnings)


def _order(cells: list[Cell], columns: list[tuple[int, str, dict[str, Any]]]) -> tuple:
    """By the first table's first metric with a direction, best first; then the next, for rows without it."""
    key: list[Any] = []
    for k, (_, _, entry) in enumerate(columns):
        hib = entry.get("higher_is_better")
        if hib not in (True, False):
            continue
        v = cells[3 + k].sort
        present = isinstance(v, float)
        key += [not present, (-v if hib else v) if present else 0.0]
    return (*key, str(cells[0].text))

"""The report model: stored results read into comparable groups, tables (cells, notes) and sections.

A report reads the result store (result JSONs, their per-image CSVs, the sample PNGs beside them and
each training run's ``losses.csv``); it never recomputes a metric. Results are grouped into tables by
what makes numbers comparable: dataset, split, content hash, evaluation protocol, the scale images were
predicted at (work size) and schema version. Results of one dataset that differ in any of those get
separate tables under a heading that says so. Within a table, a row is one result: several settings of
one method are several rows, each labelled with how it differs (``unet · gpu · lr=0.0003``), and a
column says how the network ran over the images (whole, or in tiles).

The model of a table (:class:`TableModel`: headers, cells, notes) is built here once and rendered twice
(:mod:`.markdown`, :mod:`.html`), so the Markdown and HTML pages can never disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.identity import labels, result_id
from bench.store import iter_results, short_hash

BASELINE_METHOD = "gray"
FIRST_METRICS = ("psnr", "ssim", "is")  # NTIRE's order; the rest follow as stored
DEFAULT_GRID_ROWS = 4
GRID_SEED = 0
PLOTS_DIR = "plots"
_PLOT_PREFIXES = ("grid-", "dist-", "losses-")


class ReportError(Exception):
    """A report that cannot be made as asked; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# Reading the store


@dataclass(frozen=True)
class Stored:
    """One result file and its contents."""

    path: Path
    data: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.data.get("method", self.path.stem.rsplit("-s", 1)[0]))

    @property
    def dataset(self) -> str:
        return str((self.data.get("dataset") or {}).get("name", self.path.parent.parent.name))

    @property
    def split(self) -> str:
        return str(self.data.get("split", self.path.parent.name))

    @property
    def seed(self) -> int | None:
        return self.data.get("seed")

    @property
    def ok(self) -> bool:
        return self.data.get("status") == "ok"

    @property
    def work_size(self) -> int | None:
        """The shorter side images were predicted at (None: their own resolution, or not recorded)."""
        prediction = self.data.get("prediction")
        if isinstance(prediction, dict):
            return prediction.get("short_side")
        # schema 1: full images recorded the work size; fixed-size views were cut at the protocol's resize
        protocol = (self.data.get("dataset") or {}).get("eval_protocol") or {}
        return self.data.get("work_size") or protocol.get("resize_short")

    def identity(self) -> tuple[str, str, str, str, str, str]:
        """What two results must share to sit in one table."""
        ds = self.data.get("dataset") or {}
        protocol = json.dumps(ds.get("eval_protocol"), sort_keys=True)
        return (self.dataset, self.split, str(ds.get("content_hash")), protocol, str(self.data.get("schema_version")),
                str(self.work_size))


def load_results(root: Path, datasets: Sequence[str] | None = None) -> tuple[list[Stored], list[Stored]]:
    """(successful, failed) results under ``root``, optionally only those of ``datasets``."""
    try:
        stored = [Stored(p, d) for p, d in iter_results(root)]
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    if datasets:
        known = sorted({s.dataset for s in stored})
        missing = [d for d in datasets if d not in known]
        if missing:
            raise ReportError(f"no results for dataset {', '.join(missing)} under {root}; results exist for: {', '.join(known) or 'none'}")
        stored = [s for s in stored if s.dataset in datasets]
    return [s for s in stored if s.ok], [s for s in stored if not s.ok]


# --------------------------------------------------------------------------------------------------
# Tables


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # what the HTML sorts by; None sorts last
    bold: bool = False
    title: str | None = None  # tooltip (HTML) with detail: CI bounds, full recipe
    note: int | None = None  # footnote number
    half: float | None = None  # metric cells: half-width of the stored 95% CI


@dataclass
class Header:
    key: str
    text: str
    numeric: bool = False
    title: str | None = None


@dataclass
class TableModel:
    headers: list[Header]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)

    def add_note(self, text: str) -> int:
        if text not in self.notes:
            self.notes.append(text)
        return self.notes.index(text) + 1


@dataclass
class Group:
    """Results that can be compared: one dataset split, one content hash, protocol and schema."""

    results: list[Stored]
    variant: int = 1  # 1-based among the groups of the same dataset and split
    variants: int = 1
    differs: tuple[str, ...] = ()  # what differs between the variants (content, protocol, schema)

    @property
    def first(self) -> Stored:
        return self.results[0]

    @property
    def dataset(self) -> str:
        return self.first.dataset

    @property
    def split(self) -> str:
        return self.first.split

    @property
    def info(self) -> dict[str, Any]:
        return self.first.data.get("dataset") or {}

    @property
    def official(self) -> bool:
        return all((r.data.get("dataset") or {}).get("official", True) is not False for r in self.results)

    @property
    def slug(self) -> str:
        return f"{_safe(self.dataset)}-{_safe(self.split)}-{short_hash(list(self.first.identity()), 8)}"

    @property
    def title(self) -> str:
        text = f"{self.dataset} · {self.split}"
        if self.variants > 1:
            text += f" — variant {self.variant} of {self.variants}"
        return text


def group_results(results: Iterable[Stored]) -> list[Group]:
    """Split results into comparable groups, ordered by dataset, split, then newest variant first."""
    by_key: dict[tuple, list[Stored]] = {}
    for r in results:
        by_key.setdefault(r.identity(), []).append(r)
    by_split: dict[tuple[str, str], list[list[Stored]]] = {}
    for key, members in by_key.items():
        members.sort(key=lambda s: (s.method != BASELINE_METHOD, s.method, s.seed if s.seed is not None else -1))
        by_split.setdefault(key[:2], []).append(members)
    groups = []
    for (name, split), variants in sorted(by_split.items(), key=lambda kv: (kv[0][0], kv[0][1] != "test", kv[0][1])):
        variants.sort(key=lambda ms: max(str(m.data.get("created", "")) for m in ms), reverse=True)
        ids = [v[0].identity() for v in variants]
        differs = tuple(
            label for i, label in ((2, "content hash"), (3, "evaluation protocol"), (4, "schema version"),
                                   (5, "work size (the scale predicted at)"))
            if len({k[i] for k in ids}) > 1
        )
        for n, members in enumerate(variants, 1):
            groups.append(Group(members, n, len(variants), differs))
    return groups


def metric_columns(results: Sequence[Stored]) -> list[tuple[str, dict[str, Any]]]:
    """(name, a stored entry describing it) for every metric any result has, NTIRE's first."""
    seen: dict[str, dict[str, Any]] = {}
    for r in results:
        for name, entry in (r.data.get("metrics") or {}).items():
            if isinstance(entry, dict) and (name not in seen or "higher_is_better" not in seen[name]):
                seen[name] = entry
    first = [m for m in FIRST_METRICS if m in seen]
    return [(m, seen[m]) for m in first + [m for m in seen if m not in first]]


def _decimals(values: Sequence[float]) -> int:
    top = max((abs(v) for v in values), default=0.0)
    return 2 if top >= 10 else 3 if top >= 1 else 4


def _arrow(higher: Any) -> str:
    return "↑" if higher is True else "↓" if higher is False else ""


def _seconds(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "—"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _mean(entry: Any) -> float | None:
    if not isinstance(entry, dict) or entry.get("available") is False:
        return None
    v = entry.get("mean")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def build_table(group: Group) -> TableModel:
    """The leaderboard of one group: a row per result (one per method, setting and seed), the gray baseline
    always present."""
    columns = metric_columns(group.results)
    headers = [Header("method", "method"), Header("seed", "seed", numeric=True)]
    for name, entry in columns:
        unit = entry.get("unit") or ""
        hib = entry.get("higher_is_better")
        # the registered name, as typed in --metrics and shown by bench run and compare: one case style
        text = f"{name} {_arrow(hib)}".strip() + (f" ({unit})" if unit else "")
        way = "higher is better" if hib is True else "lower is better" if hib is False else "no better direction"
        headers.append(Header(f"metric:{name}", text, numeric=True, title=f"{way}. {entry.get('convention', '')}".strip()))
    headers += [
        Header("images", "images", numeric=True), Header("train", "train time", numeric=True),
        Header("recipe", "recipe"), Header("predicted", "predicted", title="how the network ran over each image: whole, "
                                                                              "or in overlapping tiles (size/overlap in px)"),
        Header("date", "date"), Header("commit", "commit"),
    ]
    table = TableModel(headers, [])
    ordered = leaderboard_order(group)
    for r, label in zip(ordered, row_labels(ordered)):
        table.rows.append(_row(r, columns, table, label))
    if not any(r.method == BASELINE_METHOD for r in group.results):
        note = table.add_note(
            f"the {BASELINE_METHOD} baseline has no result here; run: bench run --methods {BASELINE_METHOD} "
            f"--dataset {group.dataset} --split {group.split}"
        )
        table.rows.append([Cell(BASELINE_METHOD, BASELINE_METHOD, note=note)] + [Cell("not run") for _ in headers[1:]])
    for k, (name, entry) in enumerate(columns):
        _finish_metric_column(table, 2 + k, entry.get("higher_is_better"))
    conventions = {name: {str((r.data.get("metrics") or {}).get(name, {}).get("convention")) for r in group.results
                          if isinstance((r.data.get("metrics") or {}).get(name), dict)} for name, _ in columns}
    for name, convs in conventions.items():
        convs.discard("None")
        if len(convs) > 1:
            table.add_note(f"{name}: the results state different conventions; compare with care: " + " | ".join(sorted(convs)))
    return table


def leaderboard_order(group: Group) -> list[Stored]:
    """The group's results as the table lists them (pictures use the same order)."""
    columns = metric_columns(group.results)
    return sorted(group.results, key=lambda r: _row_order(r, columns))


def _row_order(r: Stored, columns: list[tuple[str, dict]]) -> tuple:
    """Best first by the first metric with a direction; rows without it last."""
    for name, entry in columns:
        hib = entry.get("higher_is_better")
        if hib is None:
            continue
        v = _mean((r.data.get("metrics") or {}).get(name))
        return (v is None, -(v or 0.0) if hib else (v or 0.0), r.method, r.seed or 0)
    return (False, 0.0, r.method, r.seed or 0)


def row_labels(results: Sequence[Stored]) -> list[str]:
    """Each row's label: the method, and where a table holds several settings of it, how they differ."""
    return labels([r.data for r in results])


def _predicted(d: dict[str, Any]) -> str:
    prediction = d.get("prediction")
    if not isinstance(prediction, dict):
        return "whole (schema 1)"
    if prediction.get("tile"):
        return f"tiles {prediction['tile']}/{prediction.get('tile_overlap') or 0}"
    return "whole"


def _row(r: Stored, columns: list[tuple[str, dict]], table: TableModel, label: str | None = None) -> list[Cell]:
    d = r.data
    title = f"result {r.method}@{result_id(d)} ({r.path.name})"
    cells = [Cell(label or r.method, r.method, title=title), Cell(str(r.seed), r.seed)]
    metrics = d.get("metrics") or {}
    for name, _ in columns:
        entry = metrics.get(name)
        value = _mean(entry)
        if entry is None:
            cells.append(Cell("—", None, title="not computed in this run"))
        elif value is None:
            reason = (entry.get("reason") if isinstance(entry, dict) else None) or "no value stored"
            cells.append(Cell("n/a", None, title=str(reason), note=table.add_note(f"{name}: {reason}")))
        else:
            ci = entry.get("ci95")
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
                cells.append(Cell("", value, title=f"mean {value:.6g}; 95% CI [{ci[0]:.6g}, {ci[1]:.6g}]", half=(ci[1] - ci[0]) / 2))
            else:
                cells.append(Cell("", value, title=f"mean {value:.6g}; no confidence interval stored"))
    train = d.get("train") or {}
    recipe = d.get("recipe") or {}
    rtrain = recipe.get("train") or {}
    if recipe.get("training"):
        recipe_text = f"{recipe.get('size', '?')} · {rtrain.get('steps', '?')} steps × {rtrain.get('batch_size', '?')}"
    else:
        recipe_text = f"{recipe.get('size', '?')} · no training"
    env = d.get("environment") or {}
    commit = str(env.get("git_commit") or "")
    commit_text = (commit[:8] + ("-dirty" if commit.endswith("-dirty") else "")) if commit else "—"
    created = str(d.get("created") or "")
    cells += [
        Cell(str(d.get("n_images", "—")), d.get("n_images")),
        Cell(_seconds(train.get("seconds")) if train else "no training", train.get("seconds") if train else None),
        Cell(recipe_text, recipe_text, title=json.dumps({"params": recipe.get("params"), "train": rtrain}, sort_keys=True)),
        Cell(_predicted(d), _predicted(d)),
        Cell(created[:10] or "—", created or None, title=created or None),
        Cell(commit_text, commit or None, title=commit or None),
    ]
    return cells


def _finish_metric_column(table: TableModel, col: int, higher: Any) -> None:
    """Format a metric column with shared decimals; bold its best value (if the column has a direction)."""
    cells = [row[col] for row in table.rows]
    values = [c.sort for c in cells if isinstance(c.sort, float)]
    places = _decimals(values)
    for c in cells:
        if isinstance(c.sort, float):
            c.text = f"{c.sort:.{places}f}" + (f" ± {c.half:.{places}f}" if c.half is not None else "")
    if higher not in (True, False) or len(set(values)) < 2:
        return
    best = max(values) if higher else min(values)
    for c in cells:
        if c.sort == best:
            c.bold = True


def describe_group(group: Group) -> str:
    """One line of what the numbers in a table were computed on."""
    info = group.info
    protocol = info.get("eval_protocol") or {}
    mode = protocol.get("mode", "full")
    short = group.first.work_size
    if mode == "tiles":
        proto = f"{protocol.get('tile')} px tiles of the centre square after resizing the shorter side to {short}"
    elif mode == "center_crop":
        resized = f" after resizing the shorter side to {short}" if short else " of the images as they are"
        proto = f"centre crop {protocol.get('size')} px{resized}"
    elif short:
        proto = f"full images, colour predicted at a shorter side of {short} px and upsampled onto the full-resolution L"
    else:
        proto = "full images, predicted at their own resolution"
    n = info.get("n_images")
    h = str(info.get("content_hash") or "unknown")
    return (f"{n if n is not None else '?'} images in the split, evaluated as {proto}; data content hash {h[:12]}, "
            f"schema version {group.first.data.get('schema_version')}")


# --------------------------------------------------------------------------------------------------
# The report model


@dataclass
class Figure:
    kind: str  # grid | dist | losses
    path: Path  # relative to the report folder
    caption: str
    rows: list[str] = field(default_factory=list)  # grid: the image ids, in order
    columns: list[str] = field(default_factory=list)  # grid: column titles


@dataclass
class Section:
    group: Group
    table: TableModel
    figures: list[Figure]
    notes: list[str]  # about pictures and data (not footnotes of the table)


@dataclass
class Report:
    root: Path
    sections: list[Section]
    failed: list[Stored]
    created: str
    files: list[Path] = field(default_factory=list)




def _safe(text: str) -> str:
    """A file-name-safe form of a name from a result (the hash in the slug keeps it unique)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:40] or "x"


def warnings_of(section: Section) -> list[str]:
    """What a reader must know before comparing the numbers of a section (shown above its table)."""
    g = section.group
    out = []
    if g.variants > 1:
        out.append(f"{g.dataset}/{g.split} has results on {g.variants} different versions ({', '.join(g.differs)} differ); "
                   "each is a separate table and numbers must not be compared across them.")
    if str(g.first.data.get("schema_version") or 1) == "1":
        out.append("Results of schema 1: written before results were keyed by their settings; their prediction scale and "
                   "tiling were not recorded in full.")
    if not g.official:
        out.append("Not the official dataset: the data differ from the published files, so these numbers are not comparable to published ones.")
    skipped = g.info.get("skipped")
    if skipped:
        out.append(f"Images skipped while loading: {skipped if not isinstance(skipped, (list, dict)) else len(skipped)}.")
    return out

"""The report model: stored results read into comparable groups, tables (cells, notes) and sections.

A report reads the result store (result JSONs, their per-image CSVs, the sample PNGs beside them and
each training run's ``losses.csv``); it never recomputes a metric. Results are grouped into tables by
what makes numbers comparable: dataset, split, content hash, evaluation protocol, the scale images were
predicted at (work size) and schema version. Results of one dataset that differ in any of those get
separate tables under a heading that says so. Within a table, a row is one setting of a method: several
settings are several rows, each labelled with how it differs (``unet · gpu · lr=0.0003``); several seeds
of one setting are one row of their mean ± sample standard deviation (n - 1), each seed's own row kept in
a table of seeds below. Columns say what each model was trained on, where it came from (trained here,
a checkpoint, published weights, outputs made elsewhere) and how the network ran over the images.

The model of a table (:class:`TableModel`: headers, cells, notes) is built here once and rendered twice
(:mod:`.markdown`, :mod:`.html`), so the Markdown and HTML pages can never disagree.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.identity import Found, labels, source_of, source_text, trained_on
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


class Stored(Found):
    """One result file and its contents, with what a report groups and labels it by."""

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
        protocol = (self.data.get("dataset") or {}).get("eval_protocol") or {}
        if source_of(self.data).get("kind") == "external":  # outputs made elsewhere, scored at the protocol's scale
            return protocol.get("short_side")
        # schema 1: full images recorded the work size; fixed-size views were cut at the protocol's resize
        return self.data.get("work_size") or protocol.get("resize_short")

    def identity(self) -> tuple[str, str, str, str, str, str]:
        """What two results must share to sit in one table."""
        ds = self.data.get("dataset") or {}
        protocol = json.dumps(ds.get("eval_protocol"), sort_keys=True)
        return (self.dataset, self.split, str(ds.get("content_hash")), protocol, str(self.data.get("schema_version")),
                str(self.work_size))


def read_results(root: Path, datasets: Sequence[str] | None = None) -> tuple[list[Stored], list[Stored]]:
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
    sd: float | None = None  # metric cells over several seeds: sample standard deviation (n - 1) of their means
    unranked: bool = False  # scored on part of the set (outputs made elsewhere, some skipped): never bolded as best


@dataclass
class Header:
    key: str
    text: str
    numeric: bool = False
    title: str | None = None
    link: str | None = None  # the overview: the id of the section whose full table a heading opens


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


def stored_mean(entry: Any) -> float | None:
    """A metric entry's stored mean, or None where the metric was unavailable or holds no number."""
    if not isinstance(entry, dict) or entry.get("available") is False:
        return None
    v = entry.get("mean")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# --------------------------------------------------------------------------------------------------
# Settings: one row per setting of a method, its seeds folded into one


@dataclass
class Entry:
    """One setting of a method in a table (one label) with its results, one per seed. Several seeds make
    one row of their mean and sample standard deviation; each seed's own row is in the table of seeds."""

    label: str
    results: list[Stored]  # ordered by seed

    @property
    def first(self) -> Stored:
        return self.results[0]

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def aggregated(self) -> bool:
        return len(self.results) > 1

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.results]

    def values(self, metric: str) -> list[float]:
        """The stored means of ``metric``, one per seed that has it."""
        values = (stored_mean((r.data.get("metrics") or {}).get(metric)) for r in self.results)
        return [v for v in values if v is not None]

    def mean(self, metric: str) -> float | None:
        """The mean over seeds of the stored means (a single result: its stored mean)."""
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def sd(self, metric: str) -> float | None:
        """The sample standard deviation (n - 1) over seeds of the stored means; None for fewer than two."""
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else None


def entries_of(group: Group) -> list[Entry]:
    """The settings of a group in leaderboard order: best first by the first metric with a direction (the
    mean over seeds), settings without it last. Results whose labels read alike are seeds of one setting
    (:func:`bench.identity.labels` tells every other difference apart)."""
    by_label: dict[str, list[Stored]] = {}
    for r, label in zip(group.results, row_labels(group.results)):
        by_label.setdefault(label, []).append(r)
    out = [Entry(label, sorted(rs, key=lambda r: (r.seed is None, r.seed or 0))) for label, rs in by_label.items()]
    columns = metric_columns(group.results)
    return sorted(out, key=lambda e: _entry_order(e, columns))


def _entry_order(e: Entry, columns: list[tuple[str, dict]]) -> tuple:
    tail = (e.method, e.label, e.seeds[0] or 0)
    for name, entry in columns:
        hib = entry.get("higher_is_better")
        if hib is None:
            continue
        v = e.mean(name)
        return (v is None, -(v or 0.0) if hib else (v or 0.0), *tail)
    return (False, 0.0, *tail)


def leaderboard_order(group: Group) -> list[Stored]:
    """The group's results as the tables list them, seeds of one setting together (pictures use it too)."""
    return [r for e in entries_of(group) for r in e.results]


def row_labels(results: Sequence[Stored]) -> list[str]:
    """Each row's label: the method, and where a table holds several settings of it, how they differ."""
    return labels([r.data for r in results])


def _headers(columns: list[tuple[str, dict[str, Any]]]) -> list[Header]:
    headers = [Header("method", "method"), Header("seed", "seed", numeric=True)]
    for name, entry in columns:
        unit = entry.get("unit") or ""
        hib = entry.get("higher_is_better")
        # the registered name, as typed in --metrics and shown by bench run and compare: one case style
        text = f"{name} {_arrow(hib)}".strip() + (f" ({unit})" if unit else "")
        way = "higher is better" if hib is True else "lower is better" if hib is False else "no better direction"
        headers.append(Header(f"metric:{name}", text, numeric=True, title=f"{way}. {entry.get('convention', '')}".strip()))
    return headers + [
        Header("trained_on", "trained on", title="the data the model was trained on (a train split), where it is known"),
        Header("source", "source", title="trained here, no training, a checkpoint file, published weights, or outputs "
                                         "made elsewhere (external)"),
        Header("images", "images", numeric=True), Header("train", "train time", numeric=True),
        Header("recipe", "recipe"), Header("predicted", "predicted", title="how the network ran over each image: whole, "
                                                                              "or in overlapping tiles (size/overlap in px)"),
        Header("date", "date"), Header("commit", "commit"),
    ]


def build_table(group: Group, entries: Sequence[Entry] | None = None) -> TableModel:
    """The leaderboard of one group: a row per setting of a method (the mean ± sample standard deviation
    over its seeds where it has several), the gray baseline always present."""
    entries = entries_of(group) if entries is None else entries
    columns = metric_columns(group.results)
    headers = _headers(columns)
    table = TableModel(headers, [])
    for e in entries:
        table.rows.append(_aggregate_row(e, columns, table) if e.aggregated else _row(e.first, columns, table, e.label))
    if not any(r.method == BASELINE_METHOD for r in group.results):
        root = (group.first.data.get("dataset") or {}).get("root")  # where the scored images were read from
        note = table.add_note(
            f"the {BASELINE_METHOD} baseline has no result here; run: bench run --methods {BASELINE_METHOD} "
            f"--dataset {group.dataset}" + (f" --root {root}" if root else "") + f" --split {group.split}"
        )
        table.rows.append([Cell(BASELINE_METHOD, BASELINE_METHOD, note=note)] + [Cell("not run") for _ in headers[1:]])
    for k, (name, entry) in enumerate(columns):
        finish_metric_column(table, 2 + k, entry.get("higher_is_better"))
    conventions = {name: {str((r.data.get("metrics") or {}).get(name, {}).get("convention")) for r in group.results
                          if isinstance((r.data.get("metrics") or {}).get(name), dict)} for name, _ in columns}
    for name, convs in conventions.items():
        convs.discard("None")
        if len(convs) > 1:
            table.add_note(f"{name}: the results state different conventions; compare with care: " + " | ".join(sorted(convs)))
    return table


def build_seed_table(group: Group, entries: Sequence[Entry] | None = None) -> TableModel | None:
    """Each seed's own row, for the settings the leaderboard shows as a mean over seeds (None: there are none)."""
    entries = entries_of(group) if entries is None else entries
    folded = [e for e in entries if e.aggregated]
    if not folded:
        return None
    columns = metric_columns(group.results)
    table = TableModel(_headers(columns), [])
    for e in folded:
        table.rows += [_row(r, columns, table, e.label) for r in e.results]
    for k, (name, entry) in enumerate(columns):
        finish_metric_column(table, 2 + k, entry.get("higher_is_better"), bold=False)
    return table


def predicted_text(d: dict[str, Any]) -> str:
    prediction = d.get("prediction")
    if source_of(d).get("kind") == "external":
        return "elsewhere"
    if not isinstance(prediction, dict):
        return "whole (schema 1)"
    if prediction.get("tile"):
        return f"tiles {prediction['tile']}/{prediction.get('tile_overlap') or 0}"
    return "whole"


def _metric_cell(entry: Any, name: str, table: TableModel) -> Cell:
    value = stored_mean(entry)
    if entry is None:
        return Cell("—", None, title="not computed in this run")
    if value is None:
        reason = (entry.get("reason") if isinstance(entry, dict) else None) or "no value stored"
        return Cell("n/a", None, title=str(reason), note=table.add_note(f"{name}: {reason}"))
    ci = entry.get("ci95")
    if _is_ci(ci):
        return Cell("", value, title=f"mean {value:.6g}; 95% CI [{ci[0]:.6g}, {ci[1]:.6g}]", half=(ci[1] - ci[0]) / 2)
    return Cell("", value, title=f"mean {value:.6g}; no confidence interval stored")


def _is_ci(ci: Any) -> bool:
    return isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ci)


def ci_bounds(entry: Any) -> tuple[float | None, float | None]:
    """The stored 95% interval of a metric entry, or (None, None)."""
    ci = entry.get("ci95") if isinstance(entry, dict) else None
    return (float(ci[0]), float(ci[1])) if _is_ci(ci) else (None, None)


def trained_on_text(d: dict[str, Any]) -> tuple[str, str]:
    """(cell text, detail) of what a result's model was trained on."""
    t = trained_on(d)
    if t is not None:
        name = str(t.get("name"))
        h, short = t.get("content_hash"), t.get("short_side")
        detail = f"{name}, {t.get('split') or 'train'} split" + (f", content hash {str(h)[:12]}" if h else "") \
            + (f", crops at shorter side {short}" if short else "")
        if t.get("inferred"):
            detail += ("; inferred: the result predates recorded training data, and colorbench then always trained on "
                       "the evaluated dataset's train split")
        return name, detail
    text = source_text(d)
    if text == "external":
        return "unknown", "outputs made elsewhere: their training data is not recorded here"
    if text.startswith("published weights"):
        return "authors' data", "published weights, trained by the paper's authors on their own data"
    return "—", "needs no training"


def source_cell(r: Stored, table: TableModel, label: str, counts: bool = True) -> Cell:
    """Where a row's model came from; external outputs and published weights with a note of their provenance
    (``counts``: with how many images an external result scored, where it skipped some)."""
    d = r.data
    text, src = source_text(d), source_of(d)
    sha = str(src.get("sha256") or "")
    if src.get("kind") == "external":
        about = external_provenance(d, counts)
        return Cell(text, text, title=about, note=table.add_note(f"{label}: {about}"))
    if text.startswith("published weights"):
        check = ("its SHA-256 matches the prefix in the published file's name" if src.get("weights") != "unverified" else
                 "its SHA-256 does not match the published file's: other or altered weights, imported with --unverified")
        detail = f"published weights from {src.get('path') or 'a file'} (SHA-256 {sha[:12] or 'not recorded'}); {check}"
        return Cell(text, text, title=detail, note=table.add_note(f"{label}: {detail}"))
    if src.get("kind") == "checkpoint":
        return Cell(text, text, title=f"checkpoint {src.get('path')} (SHA-256 {sha[:12] or 'not recorded'})")
    return Cell(text, text)


def external_provenance(d: dict[str, Any], counts: bool = True) -> str:
    """Where an external result's outputs came from, as its leaderboard note says it."""
    src = source_of(d)
    about = str(src.get("about") or "").strip()
    if src.get("callable") and not src.get("predictions"):  # bench.score(fn): outputs of a Python callable
        where = f"the Python callable {src['callable']} ({'L -> ab' if src.get('input') == 'lab' else 'RGB -> RGB'})"
        text, no_about = f"external: outputs of {where}, scored here", "no about text given"
    else:
        text = f"external: outputs made elsewhere, scored here from {src.get('predictions') or 'a folder'}"
        no_about = "no --about text given"
    text += f"; about: {about}" if about else f"; {no_about}"
    light = d.get("lightness") or {}
    if light.get("n_flagged"):  # bench score's lightness check: a colouriser must keep the L it is given
        text += (f"; {light['n_flagged']} output(s) change the input's lightness (PSNR of L below "
                 f"{light.get('threshold_db', 30):g} dB, lowest {light.get('min_db', float('nan')):.1f} dB)")
    skipped = skipped_images(d)
    return text + (f"; {skipped}" if skipped and counts else "")


def skipped_images(d: dict[str, Any]) -> str | None:
    """"n of N images scored (k skipped)" for an external result that skipped images, else None."""
    src = source_of(d)
    scored, expected = src.get("n_scored"), src.get("n_expected")
    if src.get("kind") == "external" and isinstance(scored, int) and isinstance(expected, int) and scored < expected:
        return f"{scored} of {expected} images scored ({expected - scored} skipped)"
    return None


def _images_cell(d: dict[str, Any]) -> Cell:
    src = source_of(d)
    scored, expected = src.get("n_scored"), src.get("n_expected")
    if src.get("kind") == "external" and isinstance(scored, int) and isinstance(expected, int) and scored < expected:
        n = d.get("n_images")  # what was scored (tiles, for a tiled protocol); n_scored and n_expected count images
        text = f"{scored} of {expected}" if n == scored else f"{n} ({scored} of {expected} images)"
        return Cell(text, n, title=f"{expected - scored} of the split's {expected} images skipped")
    return Cell(str(d.get("n_images", "—")), d.get("n_images"))


def _recipe_text(d: dict[str, Any]) -> str:
    recipe = d.get("recipe")
    if not isinstance(recipe, dict):
        return "—"  # outputs made elsewhere: no recipe of ours
    rtrain = recipe.get("train") or {}
    if source_text(d).startswith("published weights"):
        return f"{recipe.get('size', '?')} · published weights"
    if recipe.get("training"):
        return f"{recipe.get('size', '?')} · {rtrain.get('steps', '?')} steps × {rtrain.get('batch_size', '?')}"
    return f"{recipe.get('size', '?')} · no training"


def _train_cell(d: dict[str, Any]) -> Cell:
    train = d.get("train") or {}
    if train:
        return Cell(_seconds(train.get("seconds")), train.get("seconds"))
    return Cell("no training" if source_of(d).get("kind") == "untrained" else "—", None)


def _row(r: Stored, columns: list[tuple[str, dict]], table: TableModel, label: str | None = None) -> list[Cell]:
    d = r.data
    label = label or r.method
    title = f"result {r.method}@{r.id} ({r.path.name})"
    cells = [Cell(label, r.method, title=title), Cell("—" if r.seed is None else str(r.seed), r.seed)]  # None: outputs made elsewhere
    metrics = d.get("metrics") or {}
    part = skipped_images(d) is not None
    cells += [dataclasses.replace(_metric_cell(metrics.get(name), name, table), unranked=part) for name, _ in columns]
    recipe = d.get("recipe") if isinstance(d.get("recipe"), dict) else {}
    env = d.get("environment") or {}
    commit = str(env.get("git_commit") or "")
    created = str(d.get("created") or "")
    trained_text, trained_detail = trained_on_text(d)
    recipe_text = _recipe_text(d)
    cells += [
        Cell(trained_text, trained_text, title=trained_detail),
        source_cell(r, table, label),
        _images_cell(d),
        _train_cell(d),
        Cell(recipe_text, recipe_text, title=json.dumps({"params": recipe.get("params"), "train": recipe.get("train") or {}}, sort_keys=True)),
        Cell(predicted_text(d), predicted_text(d)),
        Cell(created[:10] or "—", created or None, title=created or None),
        Cell(_commit_text(commit), commit or None, title=commit or None),
    ]
    return cells


def _commit_text(commit: str) -> str:
    return (commit[:8] + ("-dirty" if commit.endswith("-dirty") else "")) if commit else "—"


def seeds_text(seeds: Sequence[int | None]) -> str:
    return "mean ± sd of " + ", ".join(str(s) for s in seeds)


def _aggregate_row(e: Entry, columns: list[tuple[str, dict]], table: TableModel) -> list[Cell]:
    """A setting over several seeds: each metric's mean over seeds ± their sample standard deviation (n - 1);
    the other cells are the seeds' common value (or say how they vary)."""
    files = ", ".join(f"{r.method}@{r.id} ({r.path.name})" for r in e.results)
    cells = [Cell(e.label, e.method, title=f"{len(e.results)} results, one per seed: {files}"),
             Cell(seeds_text(e.seeds), e.seeds[0])]
    for name, _ in columns:
        stored = [(r, (r.data.get("metrics") or {}).get(name)) for r in e.results]
        values = e.values(name)
        if not values:  # no seed has a value: say why, as a single result would
            cells.append(_metric_cell(next((m for _, m in stored if m is not None), None), name, table))
            continue
        mean, sd = e.mean(name), e.sd(name)
        per_seed = "; ".join(f"seed {r.seed}: " + (f"{v:.6g}" if (v := stored_mean(m)) is not None else "none") for r, m in stored)
        spread = f"sample standard deviation (n-1) {sd:.6g}" if sd is not None else "one seed only: no standard deviation"
        title = f"mean over {len(values)} seeds of the stored means {mean:.6g}; {spread}; {per_seed}"
        note = None
        if len(values) < len(e.results):
            note = table.add_note(f"{e.label}: {name} is stored for {len(values)} of its {len(e.results)} seeds; the mean is over those")
        cells.append(Cell("", mean, title=title, sd=sd, note=note))
    d = e.first.data
    trained_text, trained_detail = trained_on_text(d)
    recipe = d.get("recipe") if isinstance(d.get("recipe"), dict) else {}
    n = sorted({r.data.get("n_images") for r in e.results if isinstance(r.data.get("n_images"), int)})
    secs = [s for s in ((r.data.get("train") or {}).get("seconds") for r in e.results) if isinstance(s, (int, float))]
    created = max(str(r.data.get("created") or "") for r in e.results)
    commits = sorted({str((r.data.get("environment") or {}).get("git_commit") or "") for r in e.results})
    recipe_text = _recipe_text(d)
    if secs:
        train = Cell(_seconds(statistics.fmean(secs)), statistics.fmean(secs),
                     title="mean over seeds: " + ", ".join(_seconds(s) for s in secs))
    else:
        train = _train_cell(d)
    cells += [
        Cell(trained_text, trained_text, title=trained_detail),
        source_cell(e.first, table, e.label),
        _images_cell(d) if len(n) <= 1 else Cell(f"{n[0]}–{n[-1]}", n[0], title="the seeds scored different numbers of images"),
        train,
        Cell(recipe_text, recipe_text, title=json.dumps({"params": recipe.get("params"), "train": recipe.get("train") or {}}, sort_keys=True)),
        Cell(predicted_text(d), predicted_text(d)),
        Cell(created[:10] or "—", created or None, title=f"the newest of the seeds' results: {created}" if created else None),
        Cell(_commit_text(commits[0]), commits[0] or None, title=commits[0] or None) if len(commits) == 1 else
        Cell("several", None, title=", ".join(c or "unknown" for c in commits)),
    ]
    return cells


def finish_metric_column(table: TableModel, col: int, higher: Any, bold: bool = True) -> None:
    """Format a metric column with shared decimals; bold its best value (if the column has a direction)."""
    cells = [row[col] for row in table.rows]
    values = [c.sort for c in cells if isinstance(c.sort, float)]
    places = _decimals(values)
    ranked = [c.sort for c in cells if isinstance(c.sort, float) and not c.unranked]
    for c in cells:
        if isinstance(c.sort, float):
            spread = c.sd if c.sd is not None else c.half
            c.text = f"{c.sort:.{places}f}" + (f" ± {spread:.{places}f}" if spread is not None else "")
    if not bold or higher not in (True, False) or len(set(ranked)) < 2:
        return
    best = max(ranked) if higher else min(ranked)
    for c in cells:
        if c.sort == best and not c.unranked:
            c.bold = True


def training_data(results: Iterable[Stored]) -> list[str]:
    """What the models behind ``results`` were trained on, one description per distinct training set
    (results that need no training left out): a table with more than one mixes training data."""
    names: dict[str, set[str]] = {}
    other: set[str] = set()
    for r in results:
        t = trained_on(r.data)
        text = source_text(r.data)
        if t is not None:
            names.setdefault(str(t.get("name")), set()).update([str(t["content_hash"])] if t.get("content_hash") else [])
        elif text == "external":
            other.add("unknown data (outputs made elsewhere)")
        elif text.startswith("published weights"):
            other.add("the authors' data (published weights)")
    out = []
    for name, hashes in sorted(names.items()):
        if len(hashes) > 1:  # one name, other content: other data
            out += [f"{name}'s train split (content {h[:8]})" for h in sorted(hashes)]
        else:
            out.append(f"{name}'s train split")
    return out + sorted(other)


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
    table: TableModel  # a row per setting: several seeds as their mean ± sample standard deviation
    figures: list[Figure]
    notes: list[str]  # about pictures and data (not footnotes of the table)
    entries: list[Entry] = field(default_factory=list)  # the settings behind the rows, in order
    seeds: TableModel | None = None  # each seed's row of the settings shown over several seeds


@dataclass
class Report:
    root: Path
    sections: list[Section]
    failed: list[Stored]
    created: str
    files: list[Path] = field(default_factory=list)
    overview: Any = None  # bench.report.overview.Overview: methods x datasets, where there are several tables




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
    data = training_data(g.results)
    if len(data) > 1:
        out.append(f"The rows of this table were trained on different data ({'; '.join(data)}): a gap between two rows "
                   "is a difference of method and of training data together. Compare rows of one 'trained on' value, "
                   "or read the gap with that in mind.")
    fits = {}  # a result's own warnings (scored on the images it was trained on), once per method and text
    for r in g.results:
        for w in r.data.get("warnings") or []:
            fits.setdefault(f"{r.method}: {w}", None)
    out += list(fits)
    skipped = g.info.get("skipped")
    if skipped:
        out.append(f"Images skipped while loading: {skipped if not isinstance(skipped, (list, dict)) else len(skipped)}.")
    return out

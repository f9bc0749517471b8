"""Stored results as pandas DataFrames, for notebooks: ``bench.load_results("results")``.

One row per result file (failed runs too, with status ``failed``): who and what (method, the setting
label the report shows, what it was trained on, dataset, split, seed, status, source), then each metric's
stored mean and 95% interval (``psnr``, ``psnr_lo``, ``psnr_hi``), then where it is. Values are read from
the result files, never recomputed; group and average them as you need (``std`` in pandas is the sample
standard deviation, n - 1, as in the report's rows over seeds).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from bench.identity import labels, result_id, source_of, trained_on
from bench.report.model import Stored, stored_mean, ci_bounds, entries_of, group_results, metric_columns, read_results

if TYPE_CHECKING:
    import pandas as pd

ID_COLUMNS = ["method", "label", "trained_on", "dataset", "split", "seed", "status", "source"]
TAIL_COLUMNS = ["weights", "n_images", "tag", "result_id", "content_hash", "created", "file"]
IMAGE_KEYS = ["file", "method", "label", "dataset", "split", "seed"]


def _labels(ok: list[Stored], failed: list[Stored]) -> dict[Path, str]:
    """Each result's label as the report's table shows it (failed runs: among the failed of their split)."""
    out = {r.path: e.label for g in group_results(ok) for e in entries_of(g) for r in e.results}
    places: dict[tuple[str, str], list[Stored]] = {}
    for r in failed:
        places.setdefault((r.dataset, r.split), []).append(r)
    for rs in places.values():
        out.update(zip((r.path for r in rs), labels([r.data for r in rs])))
    return out


def load_results(results: str | os.PathLike = "results", per_image: bool = False,
                 datasets: Sequence[str] | None = None) -> "pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]":
    """The results under ``results`` (the folder ``bench run`` wrote) as a tidy DataFrame, one row per result.

    Columns: ``method``, ``label`` (the setting, as the report labels it), ``trained_on`` (the training
    dataset's name; None where the model needs no training, or came as published weights or outputs made
    elsewhere), ``dataset``, ``split``, ``seed``, ``status`` (``ok`` / ``failed``), ``source`` (``trained``,
    ``untrained``, ``checkpoint``, ``published``, ``external``), then per metric its mean, ``<metric>_lo`` and
    ``<metric>_hi`` (the stored 95% interval; NaN where none is stored or the metric was unavailable), then
    ``weights``, ``n_images``, ``tag``, ``result_id``, ``content_hash`` (of the evaluated data) , ``created``
    and ``file`` (the result JSON, relative to ``results``).

    With ``per_image=True`` returns ``(results, images)``: ``images`` has a row per evaluated image of each
    result (``file``, ``method``, ``label``, ``dataset``, ``split``, ``seed``, then the per-image CSV's own
    columns: ``id`` and one column per per-image metric); join the two on ``file``. ``datasets`` keeps only
    those datasets' results.
    """
    import pandas as pd

    root = Path(results)
    if not (root / "eval").is_dir():
        raise FileNotFoundError(f"no results under {root} (no {root / 'eval'} folder): pass the folder 'bench run' wrote "
                                "(its --results, $BENCH_RESULTS, or ./results)")
    ok, failed = read_results(root, datasets)
    label = _labels(ok, failed)
    stored = sorted(ok + failed, key=lambda r: r.path)
    metrics = [m for m, _ in metric_columns(stored)]
    rows = []
    for r in stored:
        d = r.data
        t, src = trained_on(d), source_of(d)
        row = {"method": r.method, "label": label[r.path], "trained_on": None if t is None else t.get("name"),
               "dataset": r.dataset, "split": r.split, "seed": r.seed, "status": d.get("status"), "source": src.get("kind")}
        for m in metrics:
            entry = (d.get("metrics") or {}).get(m)
            row[m] = stored_mean(entry)
            row[f"{m}_lo"], row[f"{m}_hi"] = ci_bounds(entry)
        row.update(weights=src.get("weights"), n_images=d.get("n_images"), tag=d.get("tag"), result_id=result_id(d),
                   content_hash=(d.get("dataset") or {}).get("content_hash"), created=d.get("created"),
                   file=r.path.relative_to(root).as_posix())
        rows.append(row)
    columns = ID_COLUMNS + [c for m in metrics for c in (m, f"{m}_lo", f"{m}_hi")] + TAIL_COLUMNS
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = frame["seed"].astype("Int64")
    frame["n_images"] = frame["n_images"].astype("Int64")
    for c in columns[len(ID_COLUMNS):len(columns) - len(TAIL_COLUMNS)]:
        frame[c] = frame[c].astype(float)
    if not per_image:
        return frame
    return frame, _per_image(root, [r for r in stored if r.ok], frame)


def _per_image(root: Path, stored: list[Stored], frame: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    keys = frame.set_index("file")[IMAGE_KEYS[1:]]
    parts = []
    for r in stored:
        name = r.data.get("per_image_file")
        path = r.path.parent / name if name else None
        if path is None or not path.is_file():
            warnings.warn(f"{r.path}: its per-image file {path or '(none recorded)'} is missing; its images are left out "
                          "of the per-image frame", stacklevel=3)
            continue
        try:
            part = pd.read_csv(path, dtype={"id": str})
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the per-image results ({exc}); re-run the evaluation") from None
        file = r.path.relative_to(root).as_posix()
        for k, column in enumerate(IMAGE_KEYS):
            part.insert(k, column, file if column == "file" else keys.at[file, column])
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*IMAGE_KEYS, "id"])
    images = pd.concat(parts, ignore_index=True)
    images["seed"] = images["seed"].astype("Int64")
    return images

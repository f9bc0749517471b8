"""What every way of scoring shares: the result files, the lightness check, and saving every output.

A method trained here, a checkpoint file, a folder of outputs made elsewhere (``bench score``) and a Python
callable (``bench.score``) all go through :func:`bench.evaluate.evaluate` and end in the same files,
written here: ``<stem>.json`` (aggregates, identity, provenance), ``<stem>.csv`` (one row per image) and a
few sample outputs beside a shared ``_reference/`` folder of ground truths.

Outputs made elsewhere are matched to the dataset's images by name: :func:`output_key` is an image id
without its image suffix (``a/img001.png`` -> ``a/img001``), and ``bench run --save-outputs`` writes
``<key>.png`` at the resolution ``bench score`` reads back (:class:`OutputWriter`).
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor

from bench.datasets.io import IMAGE_SUFFIXES, write_png
from bench.evaluate import EvalJournal, Evaluation
from bench.metrics.pixel import PSNRL
from bench.store import ResultPaths, short_hash, write_csv_atomic, write_json_atomic

LIGHTNESS = "lightness_psnr"
# 30 dB is an RMS difference of 3.2 units of L (of 100): a visible change. Measured on the samples test
# tiles: an L-preserving output saved as PNG scores 55-100 dB (ab = 0: 54.9 dB at worst), JPEG quality 75
# 31.6-50.8 dB; outputs brightened by 10 RGB levels score 26.7-30.5 dB, a gamma of 1.2 23-33 dB, a 3x3
# blur 22.6-36.4 dB. Colours far out of the sRGB gamut also change L when they are clipped (twice the
# true saturation: 21.8-100 dB): that output's lightness did change, and the flag says so.
LIGHTNESS_THRESHOLD_DB = 30.0


class LightnessCheck(PSNRL):
    """The ``psnr_l`` metric, per image, as a check: a colouriser must keep the lightness it was given. Run
    for outputs made elsewhere and for Python callables that return RGB; its numbers go to the result's
    ``lightness`` (not to the aggregates, so it is there even when ``psnr_l`` is not among the metrics)."""

    name = LIGHTNESS
    convention = f"{PSNRL.convention}; per image, flagged below {LIGHTNESS_THRESHOLD_DB:g} dB"


def lightness_section(result: Evaluation, limit: int = 100) -> dict[str, Any]:
    """The lightness check's summary, taken out of the aggregates (the per-image values stay in the CSV)."""
    entry = result.aggregates.pop(LIGHTNESS, {})
    values = result.rows[LIGHTNESS] if LIGHTNESS in result.rows else None
    if values is None or not len(values):
        return {"available": False, "threshold_db": LIGHTNESS_THRESHOLD_DB}
    flagged = result.rows.loc[values < LIGHTNESS_THRESHOLD_DB, "id"].tolist()
    return {
        "convention": LightnessCheck.convention, "threshold_db": LIGHTNESS_THRESHOLD_DB,
        "mean_db": float(values.mean()), "min_db": float(values.min()), "ci95": entry.get("ci95"),
        "n_flagged": len(flagged), "flagged": flagged[:limit],  # the CSV has every value
    }


def warn_lightness(label: str, section: dict[str, Any]) -> None:
    n = section.get("n_flagged", 0)
    if n:
        names = ", ".join(section["flagged"][:10]) + (f", ... ({n - 10} more in the result file)" if n > 10 else "")
        print(f"WARNING {label}: {n} output(s) change the input's lightness (PSNR of L below "
              f"{section['threshold_db']:g} dB; lowest {section['min_db']:.1f} dB): {names}. A colouriser must keep "
              "the L it is given; these outputs were not made by adding colour to it (or their colours were clipped "
              "far out of gamut)", file=sys.stderr)


def ok_fields(result: Evaluation) -> dict[str, Any]:
    """What a finished evaluation adds to its result: status, aggregates, counts, statistics, timings."""
    return {
        "status": "ok",
        "metrics": result.aggregates,
        "n_images": len(result.rows),
        "statistics": result.statistics,
        "timings": {"eval_seconds": round(result.seconds, 3),
                    "images_per_s": round((len(result.rows) - result.resumed_from) / max(result.seconds, 1e-9), 2),
                    "resumed_from": result.resumed_from},
    }


def write_result_files(paths: ResultPaths, base: dict[str, Any], result: Evaluation) -> dict[str, Any]:
    """Write the per-image CSV, the sample outputs (and their shared ground truths) and the result JSON;
    remove a superseded failure record and the evaluation's journal. Returns ``base`` as written."""
    base["per_image_file"] = paths.csv.name
    write_csv_atomic(paths.csv, result.rows)
    for k, (item, pred, _) in enumerate(result.samples):
        write_png(paths.samples / f"{k:02d}.png", pred)
    # Ground truths are shared by every method evaluated on the same data and protocol; the folder is
    # named by both so a report never pairs a sample with the ground truth of another dataset version.
    ref_name = f"_reference/{short_hash([base['dataset'].get('content_hash'), base['dataset'].get('eval_protocol')], 10)}"
    for k, (item, _, truth) in enumerate(result.samples):
        if not (paths.folder / ref_name / f"{k:02d}.png").exists():
            write_png(paths.folder / ref_name / f"{k:02d}.png", truth)
    base["samples"] = [{"file": f"{paths.samples.name}/{k:02d}.png", "id": item, "reference": f"{ref_name}/{k:02d}.png"}
                       for k, (item, _, _) in enumerate(result.samples)]
    write_json_atomic(paths.json, base)
    paths.failed.unlink(missing_ok=True)  # an earlier failure of these settings is superseded
    EvalJournal(paths.partial, {}).remove()  # the final files are written: the journal of the run is done
    return base


# --------------------------------------------------------------------------------------------------
# Outputs by name


def output_key(image_id: str) -> str:
    """The name an output of image ``image_id`` goes by: the id without its image suffix."""
    path = PurePosixPath(image_id)
    return path.with_suffix("").as_posix() if path.suffix.lower() in IMAGE_SUFFIXES else image_id


def region_size(view: Any) -> tuple[int, int] | None:
    """The size of what a fixed-size protocol scores of one image: the square its tiles cover (tiles) or the
    crop (center_crop). None for protocol ``full`` (the image at its own size)."""
    if view.mode == "tiles":
        side = (view.short // view.tile) * view.tile
        return side, side
    if view.mode == "center_crop":
        return view.crop, view.crop
    return None


class OutputWriter:
    """``bench run --save-outputs``: every output of an evaluation as ``<folder>/<output_key(id)>.png``, at the
    resolution ``bench score`` reads back exactly: the scored region for fixed-size protocols (tiles put back
    in place), the image's own size for protocol ``full``."""

    def __init__(self, folder: Path, view: Any):
        self.folder, self.view = Path(folder), view
        self.written = 0
        self._open: dict[int, tuple[Tensor, int]] = {}  # image index -> (region so far, tiles placed)

    def path(self, i: int) -> Path:
        return self.folder / f"{output_key(self.view.images.image_id(i))}.png"

    def __call__(self, items: list[int], outputs: Tensor) -> None:
        view = self.view
        for k, out in zip(items, outputs.cpu()):
            i, t = divmod(k, view.per_image)
            if view.mode != "tiles":
                write_png(self.path(i), out)
                self.written += 1
                continue
            n, tile = view.short // view.tile, view.tile
            region, placed = self._open.get(i) or (torch.zeros(3, n * tile, n * tile, dtype=torch.uint8), 0)
            r, c = divmod(t, n)
            region[:, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = out
            if placed + 1 == view.per_image:
                self._open.pop(i, None)
                write_png(self.path(i), region)
                self.written += 1
            else:
                self._open[i] = (region, placed + 1)

    def close(self) -> None:
        if self._open:
            raise RuntimeError(f"--save-outputs: {len(self._open)} image(s) were scored only in part; their outputs "
                               f"in {self.folder} are missing")

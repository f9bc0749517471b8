"""Scoring outputs made elsewhere: a folder of colourised images (``bench score``) or a Python callable
(``bench.score``), with the evaluation code, protocol and result files of a method run here.

**Matching.** An output belongs to the image whose id, without its image suffix, is the output's path
under the folder without its suffix (``a/img001.png`` <- ``a/img001.jpg``); a flat folder may also name
outputs by the bare stem when that stem is unique in the split. Missing, extra, unreadable and wrongly
sized outputs are named in one error, or left out with ``--on-bad-image skip`` (counted: the result says
n of N).

**Resolution.** Under protocol ``full`` an output has its image's own size and is scored as it is (as a
method's output is). Under ``tiles`` and ``center_crop`` an output at its image's own size goes through
the same view as the ground truth (shorter side resized to the card's ``short_side``, antialiased; centre
square; tiles or the centre crop), so a full-resolution output is compared exactly as the ground truth is
cut; an output the size of the scored region (``short_side`` square for tiles, the crop for
``center_crop``: what ``bench run --save-outputs`` writes) is cut as it is.

**Lightness.** Every output's L is compared with its input's (:class:`bench.scoring.LightnessCheck`):
the result's ``lightness`` holds the mean, the minimum and the outputs below the threshold, and the CSV a
``lightness_psnr`` column.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from bench.datasets._files import list_files
from bench.datasets.base import DatasetError, SplitPart
from bench.datasets.io import decode_image, read_image
from bench.datasets.views import EvalView, resize_short
from bench.evaluate import Predictor, evaluate
from bench.identity import code_hash, identity_hash, result_identity, source_closure
from bench.metrics import MetricOptions, build_metrics
from bench.metrics.stats import Bootstrap
from bench.scoring import (
    LIGHTNESS,
    LightnessCheck,
    lightness_section,
    ok_fields,
    output_key,
    region_size,
    warn_lightness,
    write_result_files,
)
from bench.store import SCHEMA_VERSION, ResultPaths, code_version, environment, file_sha256, now, result_stem, short_hash, write_json_atomic



class OutputsError(DatasetError):
    """A folder of outputs that does not fit the dataset split; the message names the files and the fix."""


@dataclass
class OutputCheck:
    """What a folder of outputs holds for a split: the usable output of each image, and what is wrong."""

    folder: Path
    n_expected: int
    files: dict[int, Path] = field(default_factory=dict)  # image index -> its output
    original_size: dict[int, bool] = field(default_factory=dict)  # True: at the image's own size (goes through the view)
    problems: list[dict[str, str]] = field(default_factory=list)  # {"id", "file", "problem"}
    extra: list[str] = field(default_factory=list)  # outputs that belong to no image of the split

    @property
    def kept(self) -> list[int]:
        return sorted(self.files)

    def content_hash(self) -> str:
        """SHA-256 over each scored output's name and bytes: what the result is keyed by."""
        return short_hash([[output_key(p.relative_to(self.folder).as_posix()), file_sha256(p)]
                           for _, p in sorted(self.files.items())], 64)

    def describe(self, limit: int = 20) -> str:
        lines = [f"{p['id']}: {p['problem']}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        if self.extra:
            shown = ", ".join(self.extra[:limit]) + (f", ... and {len(self.extra) - limit} more" if len(self.extra) > limit else "")
            lines.append(f"{len(self.extra)} output(s) match no image of the split: {shown}")
        return "\n  ".join(lines)


def _sizes_text(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def check_outputs(folder: Path, images: Any, view: EvalView, on_bad_image: str = "error") -> OutputCheck:
    """Match the outputs under ``folder`` to the images of ``images`` (one split) and check each: readable,
    and of a size the protocol accepts (see the module docstring). Every output and ground truth is decoded
    once here. ``on_bad_image='error'`` raises :class:`OutputsError` naming every problem; ``'skip'`` leaves
    those images out (and ignores extra outputs), naming them in the check."""
    folder = Path(folder)
    check = OutputCheck(folder, len(images))
    found, _ = list_files(folder)
    by_key: dict[str, list[Path]] = {}
    for p in found:
        by_key.setdefault(output_key(p.relative_to(folder).as_posix()), []).append(p)
    keys = [output_key(images.image_id(i)) for i in range(len(images))]
    stems: dict[str, int] = {}
    for k in keys:
        stem = k.rsplit("/", 1)[-1]
        stems[stem] = stems.get(stem, 0) + 1
    used: set[str] = set()
    region = region_size(view)
    for i, key in enumerate(keys):
        image_id = images.image_id(i)
        name = key if key in by_key else key.rsplit("/", 1)[-1]
        if name not in by_key or (name != key and stems[name] > 1):
            check.problems.append({"id": image_id, "file": "", "problem": f"missing: no output named {key}.png (or another image suffix)"})
            continue
        used.add(name)
        if len(by_key[name]) > 1:
            names = ", ".join(p.relative_to(folder).as_posix() for p in by_key[name])
            check.problems.append({"id": image_id, "file": names, "problem": f"ambiguous: several outputs ({names}); keep one"})
            continue
        path = by_key[name][0]
        rel = path.relative_to(folder).as_posix()
        try:
            out, _ = decode_image(path)
        except DatasetError as exc:
            check.problems.append({"id": image_id, "file": rel, "problem": f"unreadable: {str(exc).removeprefix(f'{path}: ')}"})
            continue
        size = tuple(out.shape[-2:])
        original = tuple(images.load(i).shape[-2:])
        if size == original:
            check.files[i], check.original_size[i] = path, True
        elif region is not None and size == region:
            check.files[i], check.original_size[i] = path, False
        else:
            accepted = _sizes_text(original) + (f" (the image's size) or {_sizes_text(region)} (the scored region)" if region else
                                                " (the image's size)")
            check.problems.append({"id": image_id, "file": rel, "problem": f"wrong size: {_sizes_text(size)}, expected {accepted}"})
    check.extra = sorted(p.relative_to(folder).as_posix() for k, ps in by_key.items() if k not in used for p in ps)
    if on_bad_image == "error" and (check.problems or check.extra):
        n = len(check.problems) + len(check.extra)
        raise OutputsError(f"{folder}: {n} problem(s) with the outputs for {images.name}/{images.split} "
                           f"({len(images)} images):\n  {check.describe()}\nGive one output per image, named by the image's "
                           "id without its suffix (the ids are in the per-image CSV of any result on this split), at the "
                           "image's size, or pass --on-bad-image skip to score the images that have a good output "
                           "(the result then says n of N)")
    if not check.files:
        raise OutputsError(f"{folder}: no usable output for any of the {len(images)} images of {images.name}/{images.split}:"
                           f"\n  {check.describe()}")
    return check


def to_region(view: EvalView, image: Tensor) -> Tensor:
    """An image at its own size as the protocol scores it: the same steps as :class:`EvalView` takes for the
    ground truth (resize the shorter side, centre square; then the tiles' square or the centre crop)."""
    if view.mode == "full":
        return image
    if view.short is not None:
        image = TF.center_crop(resize_short(image, view.short), [view.short, view.short])
    if view.mode == "tiles":
        side = (view.short // view.tile) * view.tile
        return image[:, :side, :side]
    return TF.center_crop(image, [view.crop, view.crop])


def cut(view: EvalView, region: Tensor, t: int) -> Tensor:
    """Item ``t`` of one image's scored region (a tile, or the region itself)."""
    if view.mode != "tiles":
        return region
    n = view.short // view.tile
    r, c = divmod(t, n)
    return region[:, r * view.tile : (r + 1) * view.tile, c * view.tile : (c + 1) * view.tile]


class OutputReader:
    """A :data:`~bench.evaluate.Predictor` that reads the checked outputs instead of running a model."""

    def __init__(self, check: OutputCheck, view: EvalView):
        self.check, self.view = check, view
        self.kept = check.kept
        self._last: tuple[int, Tensor] | None = None  # tiles of one image come in a row: decode once

    def region(self, i: int) -> Tensor:
        if self._last is None or self._last[0] != i:
            out = read_image(self.check.files[i])
            self._last = (i, to_region(self.view, out) if self.check.original_size[i] else out)
        return self._last[1]

    def __call__(self, rgb: Tensor, items: list[int]) -> Tensor:
        per = self.view.per_image
        outs = [cut(self.view, self.region(self.kept[k // per]), k % per) for k in items]
        return torch.stack(outs).to(rgb.device)


def scoring_code() -> dict[str, Any]:
    """The code identity of scoring outputs made elsewhere (the evaluation and matching code)."""
    modules = source_closure("bench.external")
    return {"colorbench": code_version(), "source_sha256": code_hash(modules), "modules": len(modules)}


@dataclass(frozen=True)
class ScoreSettings:
    """How outputs made elsewhere are scored (the options ``bench score`` shares with ``bench run``)."""

    metrics: tuple[str, ...]
    results: Path | None = None  # None: return the result, write nothing
    device: str = "cpu"
    batch_size: int = 16
    bootstrap: int = 1000
    inception_weights: str | None = None
    progress: bool | None = None
    lightness: bool = True


def score_external(predict: Predictor, *, images: Any, view: EvalView, name: str, source: dict[str, Any],
                   source_hash: Callable[[], str], settings: ScoreSettings) -> dict[str, Any]:
    """Score the outputs ``predict`` gives for ``view`` (the images of ``images`` that have one) and build
    the result of ``name``; written under ``settings.results`` when it is set. ``source_hash`` (called after
    scoring) is the content hash the result is keyed by."""
    device = torch.device(settings.device)
    metrics = build_metrics(list(settings.metrics), MetricOptions(inception_weights=settings.inception_weights))
    if settings.lightness:
        metrics[LIGHTNESS] = LightnessCheck()
    split = images.split
    prediction = {"short_side": images.card.short_side, "tile": None, "tile_overlap": None}
    base: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "method": name, "adapter": None}

    def identify() -> tuple[dict[str, Any], ResultPaths | None]:
        # seed None: outputs made elsewhere have no seed of ours, and the result says so (file <name>-<rid>)
        identity = result_identity(method=name, recipe=None, seed=None, training=None, data=images.identity(),
                                   prediction=prediction, conventions={n: m.convention for n, m in metrics.items()},
                                   code=scoring_code(), source={"kind": "external", "content_hash": source_hash()})
        rid = identity_hash(identity)[:10]
        paths = ResultPaths(settings.results, images.name, split, result_stem(name, None, rid)) if settings.results else None
        base.update({
            "result_id": rid, "tag": None, "identity_hash": identity_hash(identity), "dataset": images.identity(),
            "split": split, "seed": None, "trained_on": None, "source": source, "recipe": None,
            "prediction": prediction, "identity": identity, "environment": environment(str(device)), "created": now(),
            "train": None,
        })
        return identity, paths

    t0 = time.perf_counter()
    try:
        result = evaluate(None, view, metrics, device=device, batch_size=settings.batch_size, progress=settings.progress,
                          bootstrap=Bootstrap(resamples=settings.bootstrap, seed=0), work_size=view.work_size,
                          label=f"{name} on {images.name}/{split}", predict=predict)
    except Exception as exc:
        if settings.results is not None:
            _, paths = identify()
            base.update(status="failed", stage="evaluate", error=f"{type(exc).__name__}: {exc}",
                        traceback=traceback.format_exc(limit=8), seconds=round(time.perf_counter() - t0, 3))
            write_json_atomic(paths.failed, base)
        raise
    _, paths = identify()
    lightness = lightness_section(result) if settings.lightness else None  # out of the aggregates, before they are stored
    base.update(ok_fields(result))
    if lightness is not None:
        base["lightness"] = lightness
        warn_lightness(f"{name} on {images.name}/{split}", lightness)
    base["eval_batch_size"] = settings.batch_size if view.fixed_size else 1
    if view.work_size is not None:
        base["work_size"] = view.work_size
    if paths is None:
        base["samples"] = []
        return base
    return write_result_files(paths, base, result)


def score_folder(folder: Path, *, images: Any, name: str, about: str | None, on_bad_image: str,
                 settings: ScoreSettings, check: OutputCheck | None = None) -> dict[str, Any]:
    """``bench score``: the outputs under ``folder`` for the split ``images``, checked (unless ``check`` is
    that check, made already), then scored."""
    full_view = EvalView(images)
    check = check or check_outputs(folder, images, full_view, on_bad_image)
    view = EvalView(SplitPart(images, check.kept, "scored"), full_view.protocol)
    if check.problems or check.extra:
        print(f"{name}: left out {len(check.problems)} of {len(images)} image(s) for bad or missing outputs"
              + (f", ignored {len(check.extra)} extra output(s)" if check.extra else "") + f":\n  {check.describe(10)}",
              file=sys.stderr)
    source = {"kind": "external", "name": name, "about": about, "predictions": str(Path(folder).resolve()),
              "n_expected": len(images), "n_scored": len(check.kept),
              "left_out": check.problems, "extra": check.extra}
    return score_external(OutputReader(check, view), images=images, view=view, name=name, source=source,
                          source_hash=check.content_hash, settings=settings)


def hashing(predict: Predictor) -> tuple[Predictor, Callable[[], str]]:
    """``predict`` that also hashes every output it gives, in order, and the function that returns the hash."""
    digest = hashlib.sha256()

    def wrapped(rgb: Tensor, items: list[int]) -> Tensor:
        out = predict(rgb, items)
        digest.update(out.detach().cpu().contiguous().numpy().tobytes())
        return out

    return wrapped, lambda: digest.hexdigest()

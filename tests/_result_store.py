"""A fixed, hand-written result store for the report and drift-check tests.

Result files are written here directly (not by running methods) so every value in a table is known in
advance: golden rows can be checked exactly. The files follow the layout and schema bench/runner.py writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from bench.identity import identity_hash

HASH_A = "a" * 64
HASH_B = "b" * 64
EVIL = "<script>alert(1)</script>"
IDS = ["img0", "img1", "img2", "img3", "img4"]

# method -> (psnr per image, ssim per image, psnr ci95 or None, trained?)
METHODS = {
    "gray": ([20.0, 22.0, 24.0, 23.0, 23.5], [0.95, 0.93, 0.94, 0.94, 0.94], [22.0, 23.0], False),
    "kmeans32": ([23.0, 23.5, 22.5, 24.0, 23.25], [0.91, 0.92, 0.90, 0.915, 0.9065], [22.75, 23.75], True),
    EVIL: ([10.0, 11.0, 12.0, 13.0, 14.0], [0.5, 0.5, 0.5, 0.5, 0.5], None, False),
}


def _png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def _image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def result(method: str, *, dataset: str = "toy", content_hash: str = HASH_A, schema: int = 2, seed: int = 0,
           psnr: list[float], ssim: list[float], ci: list[float] | None, run_dir: str | None, file_stem: str,
           extra_metrics: dict | None = None, official: bool | None = None, tag: str | None = None,
           prediction: dict | None = None, recipe_size: str = "cpu", train: dict | None = None) -> dict:
    """A result as the runner writes it (schema 2; ``schema=1``: as it wrote before results had identities)."""
    metrics = {
        "psnr": {"mean": float(np.mean(psnr)), "n": len(psnr), "higher_is_better": True, "convention": "RGB, data range 255",
                 "per_image": True, "unit": "dB"},
        "ssim": {"mean": float(np.mean(ssim)), "n": len(ssim), "higher_is_better": True, "convention": "skimage gaussian",
                 "per_image": True, "unit": ""},
    }
    if ci is not None:
        metrics["psnr"]["ci95"] = ci
    metrics.update(extra_metrics or {})
    protocol = {"mode": "full"} if schema < 2 else {"mode": "full", "short_side": None}
    ds = {"name": dataset, "split": "test", "n_images": len(psnr), "content_hash": content_hash, "root": None,
          "eval_protocol": protocol}
    if official is not None:
        ds["official"] = official
    recipe = {"name": method, "adapter": method, "training": "supervised" if run_dir else None, "size": recipe_size,
              "params": {}, "train": {"steps": 40, "batch_size": 8, **(train or {})}}
    out = {
        "schema_version": schema, "status": "ok", "method": method, "adapter": method, "dataset": ds, "split": "test",
        "seed": seed, "recipe": recipe,
        "environment": {"git_commit": "0123456789abcdef0123", "torch": "2.14.1", "device": "cpu"},
        "created": "2026-01-02T03:04:05+00:00",
        "train": {"run_dir": run_dir, "steps": 40, "seconds": 75.0} if run_dir else None,
        "metrics": metrics, "n_images": len(psnr), "per_image_file": f"{file_stem}.csv",
        "samples": [{"file": f"{file_stem}-samples/{k:02d}.png", "id": i, "reference": f"_reference/{content_hash[:6]}/{k:02d}.png"}
                    for k, i in enumerate(IDS)],
    }
    if schema >= 2:
        prediction = prediction or {"short_side": None, "tile": None, "tile_overlap": None}
        identity = {"method": method, "recipe": recipe, "seed": seed, "training": "t" * 64 if run_dir else None,
                    "data": {"name": dataset, "split": "test", "content_hash": content_hash, "eval_protocol": protocol},
                    "prediction": prediction, "metrics": {m: e.get("convention") for m, e in metrics.items()},
                    "code": {"colorbench": "0.1.0", "source_sha256": "c" * 64}}
        out.update(identity=identity, identity_hash=identity_hash(identity), tag=tag, prediction=prediction)
        out["result_id"] = tag or out["identity_hash"][:10]
    return out


def stem_of(stem: str, data: dict) -> str:
    """The file stem the runner gives a result: ``<method>-s<seed>`` + ``-<tag or hash10>`` from schema 2 on."""
    return stem if data["schema_version"] < 2 else f"{stem}-{data['result_id']}"


def write_result(root: Path, data: dict, file_stem: str, psnr: list[float], ssim: list[float]) -> Path:
    """Write a result JSON, its per-image CSV and sample PNGs (+ shared ground truths) like the runner does."""
    base = root / "eval" / data["dataset"]["name"] / data["split"]
    base.mkdir(parents=True, exist_ok=True)
    rows = ["id,psnr,ssim"] + [f"{i},{p:.6f},{s:.6f}" for i, p, s in zip(IDS, psnr, ssim)]
    (base / f"{file_stem}.csv").write_text("\n".join(rows) + "\n")
    salt = sum(map(ord, data["method"])) % 1000
    for k, s in enumerate(data["samples"]):
        _png(base / s["file"], _image(salt * 100 + k))
        ref = base / s["reference"]
        if not ref.exists():
            _png(ref, _image(10_000 + k))
    path = base / f"{file_stem}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def write_losses(root: Path, method: str) -> str:
    run = root / "train" / method / "toy-s0-0123456789"
    run.mkdir(parents=True, exist_ok=True)
    lines = ["step,loss_main,images_per_s"] + [f"{s},{3.0 / (1 + s / 10):.6f},12.5" for s in range(5, 45, 5)]
    (run / "losses.csv").write_text("\n".join(lines) + "\n")
    return str(run)


def make_store(root: Path, methods: tuple[str, ...] = ("gray", "kmeans32", EVIL), **kw) -> dict[str, Path]:
    """The fixed store: each method of ``methods`` on dataset ``toy`` (or ``kw['dataset']``). Returns paths by method."""
    paths = {}
    for k, method in enumerate(methods):
        psnr, ssim, ci, trained = METHODS[method]
        run_dir = write_losses(root, method) if trained else None
        base = f"{method}-s0" if method != EVIL else "evil-s0"
        data = result(method, psnr=psnr, ssim=ssim, ci=ci, run_dir=run_dir, file_stem=base, **kw)
        stem = stem_of(base, data)
        data = result(method, psnr=psnr, ssim=ssim, ci=ci, run_dir=run_dir, file_stem=stem, **kw)
        paths[method] = write_result(root, data, stem, psnr, ssim)
    return paths

"""Miniature datasets in the real on-disk formats of DIV2K, STL-10 and Landscape Pictures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from conftest import smooth_image

REPO = Path(__file__).resolve().parent.parent


def write_stl10(root: Path, n_train: int = 6, n_test: int = 4, n_unlabeled: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/stl10_binary/<split>_X.bin`` (+ ``_y.bin``): uint8, (3, 96, 96) per image, each channel
    column-major. Returns the images per split as (N, 96, 96, 3) arrays the way they should be shown."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        if not n:
            continue
        imgs = np.stack([smooth_image(rng, 96, 96) for _ in range(n)])  # (N, H, W, 3)
        imgs[:, :8, :20] = [255, 0, 0]  # a red bar at the top left: a transposed reader would put it at the left edge
        imgs.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")  # (N, 3, W, H): column-major channels
        if split != "unlabeled":
            (rng.integers(1, 11, n).astype(np.uint8)).tofile(folder / f"{split}_y.bin")
        out[split] = imgs
    return out


def write_div2k(root: Path, n_train: int = 4, n_test: int = 3, size: tuple[int, int] = (40, 56), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for folder, first, n in (("DIV2K_train_HR", 1, n_train), ("DIV2K_valid_HR", 801, n_test)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(first, first + n):
            Image.fromarray(smooth_image(rng, *size)).save(root / folder / f"{k:04d}.png")
    return root


def write_landscape(root: Path, names: list[str], size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(smooth_image(rng, *size)).save(root / name, quality=92)
    return root


def landscape_names(start: int, n: int) -> list[str]:
    return [f"{i:08d}.jpg" if i % 3 else f"{i:08d}_(2).jpg" for i in range(start, start + n)]


def cards_with(tmp: Path, name: str, **changes) -> Path:
    """A copy of the repository's dataset cards with ``name``'s card changed (for BENCH_CARDS)."""
    cards = tmp / "cards"
    if not cards.exists():
        shutil.copytree(REPO / "bench" / "datasets" / "cards", cards)
    data = yaml.safe_load((cards / f"{name}.yaml").read_text())
    for key, value in changes.items():
        section, _, leaf = key.rpartition(".")
        (data[section] if section else data)[leaf] = value
    (cards / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return cards

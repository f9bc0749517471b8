"""Shared fixtures: tiny datasets in real on-disk formats, an isolated results folder, the test device."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DEVICE = os.environ.get("BENCH_DEVICE", "cpu")

# Small recipe for contract tests: every method must fit in seconds on 2 CPU cores.
TINY = {"train.steps": "2", "train.batch_size": "2", "train.image_size": "32", "train.prepare_images": "4",
        "train.log_every": "1", "train.ckpt_every": "1"}


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random but photo-like (smooth, colourful) uint8 HxWx3 image."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(1, 4, 3)
        out[..., c] = 0.5 + 0.45 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph * 3)
    return (out * 255).round().astype(np.uint8)


def result_file(folder: Path, method: str, seed: int | None = 0, failed: bool = False) -> Path:
    """The one result file of ``method`` in ``folder`` (``eval/<dataset>/<split>``): result names carry a hash
    of their settings (``<method>-s<seed>-<hash10>.json``; ``<name>-<hash10>.json`` for outputs made elsewhere,
    ``seed=None``); ``failed``: the ``.failed.json`` beside it."""
    pattern = f"{method}-{'[0-9a-f]' * 10}" if seed is None else f"{method}-s{seed}-*"
    found = [p for p in Path(folder).glob(f"{pattern}.json") if p.name.endswith(".failed.json") == failed]
    assert len(found) == 1, f"expected one {'failed ' if failed else ''}result of {method} in {folder}: {found}"
    return found[0]


def write_folder_dataset(root: Path, n: int = 12, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(smooth_image(rng, *size)).save(sub / f"img{i:03d}.png")
    return root


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Scan and digest caches go to a temporary folder, never to the user's ~/.cache."""
    old = os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield
    if old is None:
        os.environ.pop("BENCH_CACHE", None)
    else:
        os.environ["BENCH_CACHE"] = old


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "photos")


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "results"
    monkeypatch.setenv("BENCH_RESULTS", str(out))
    return out


@pytest.fixture
def interrupt_training(monkeypatch: pytest.MonkeyPatch):
    """``arm(recipe, step)``: the recipe's method raises KeyboardInterrupt (a Ctrl-C) when it reaches
    ``step``; ``arm`` returns the function that disarms it again."""
    from bench.methods import METHODS

    def arm(recipe, step: int):
        cls = METHODS.get(recipe.adapter)
        original = cls.training_step

        def stopping(self, L, ab, at):
            if at == step:
                raise KeyboardInterrupt
            yield from original(self, L, ab, at)

        monkeypatch.setattr(cls, "training_step", stopping)
        return lambda: monkeypatch.setattr(cls, "training_step", original)

    return arm

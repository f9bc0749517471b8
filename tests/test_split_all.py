"""Split ``all``: every image of a dataset as one set (test-only sets such as a folder of Kodak photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from dataset_fixtures import write_stl10
from PIL import Image

from bench.datasets import DATASETS, DatasetNotFound
from bench.datasets.base import hash_split, open_split


def small_folder(root: Path, n: int = 3) -> Path:
    """``n`` photos whose names all hash into the train split: a folder whose test split is empty."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    k = 0
    while len(list(root.iterdir())) < n:
        name = f"kodim{k:02d}.png"
        if hash_split(name, 0.2) == "train":
            Image.fromarray(smooth_image(rng, 40, 48)).save(root / name)
        k += 1
    return root


def test_a_folder_split_all_is_every_image_even_when_its_test_split_is_empty(tmp_path):
    root = small_folder(tmp_path / "kodak")
    folder = DATASETS.get("folder")
    with pytest.raises(DatasetNotFound, match="the test split .* is empty"):
        open_split(folder, "test", root)
    whole = open_split(folder, "all", root)
    assert len(whole) == 3 and whole.split == "all"
    assert [whole.image_id(i) for i in range(3)] == sorted(p.name for p in root.iterdir())
    assert whole.identity()["split"] == "all" and whole.identity()["n_images"] == 3
    assert whole.load(0).shape == (3, 40, 48)


def test_other_loaders_join_train_and_test(tmp_path):
    samples = DATASETS.get("samples")
    train, test, whole = (open_split(samples, s) for s in ("train", "test", "all"))
    assert len(whole) == len(train) + len(test) == 9
    ids = [whole.image_id(i) for i in range(len(whole))]
    assert ids == [train.image_id(i) for i in range(len(train))] + [test.image_id(i) for i in range(len(test))]
    assert whole.identity()["content_hash"] not in (train.identity()["content_hash"], test.identity()["content_hash"])
    assert whole.identity()["split"] == "all"
    # STL-10's ids carry their file's stem (train/00000, test/00000): unique as they are
    write_stl10(tmp_path / "stl", n_train=2, n_test=3)
    stl = open_split(DATASETS.get("stl10"), "all", tmp_path / "stl")
    stl_ids = [stl.image_id(i) for i in range(len(stl))]
    assert len(stl) == 5 and len(set(stl_ids)) == 5
    assert stl.official()[0] is False  # a fixture, not the official files: the joined set says so too


class Numbered(DATASETS.base):
    """A plugin-style loader whose ids (0, 1, ...) repeat in every split."""

    name = "numbered"
    needs_root = False
    card_data = {"short_side": None, "eval": {"mode": "full"}}

    def __len__(self) -> int:
        return 2 if self.split == "train" else 1

    def image_id(self, i: int) -> str:
        return str(i)

    def load(self, i: int):
        import torch

        return torch.full((3, 8, 8), i, dtype=torch.uint8)


def test_joined_ids_that_repeat_across_splits_get_the_split_as_prefix():
    whole = open_split(Numbered, "all")
    assert [whole.image_id(i) for i in range(len(whole))] == ["train/0", "train/1", "test/0"]

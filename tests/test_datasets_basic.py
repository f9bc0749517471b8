import torch
import pytest

from bench.datasets import DATASETS, BadImage, DatasetNotFound
from bench.datasets.base import hash_split
from bench.datasets.views import EvalView, TrainCrops


def test_samples_split_by_photo_and_loads():
    train, test = DATASETS.get("samples")("train"), DATASETS.get("samples")("test")
    assert len(train) >= 5 and len(test) >= 3
    assert not set(train.names) & set(test.names)
    img = test.load(0)
    assert img.dtype == torch.uint8 and img.ndim == 3 and img.shape[0] == 3
    ident = test.identity()
    assert ident["n_images"] == len(test) and len(ident["content_hash"]) == 64
    assert ident["eval_protocol"]["mode"] == "tiles"


def test_samples_eval_tiles():
    view = EvalView(DATASETS.get("samples")("test"), {"mode": "tiles", "short_side": 128, "tile": 32})
    assert len(view) == 16 * len(view.images)
    img, k = view[5]
    assert img.shape == (3, 32, 32) and k == 5
    assert view.item_id(5).endswith("#r1c1")


def test_train_crops_are_a_function_of_seed_and_index(folder_dataset):
    ds = DATASETS.get("folder")("train", folder_dataset)
    a, b = TrainCrops(ds, 32, seed=1), TrainCrops(ds, 32, seed=1)
    assert torch.equal(a[7], b[7])
    assert not torch.equal(a[7], TrainCrops(ds, 32, seed=2)[7])
    assert a[3].shape == (3, 32, 32)


def test_crops_upscale_small_images(folder_dataset):
    ds = DATASETS.get("folder")("train", folder_dataset)
    assert TrainCrops(ds, 96, seed=0)[0].shape == (3, 96, 96)


def test_folder_split_is_deterministic_and_disjoint(folder_dataset):
    tr, te = DATASETS.get("folder")("train", folder_dataset), DATASETS.get("folder")("test", folder_dataset)
    assert len(tr) + len(te) == 12
    ids_tr = {tr.image_id(i) for i in range(len(tr))}
    ids_te = {te.image_id(i) for i in range(len(te))}
    assert not ids_tr & ids_te
    assert ids_te == {DATASETS.get("folder")("test", folder_dataset).image_id(i) for i in range(len(te))}


def test_folder_missing_root_names_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFound, match=str(missing)):
        DATASETS.get("folder")("train", missing)
    with pytest.raises(DatasetNotFound, match="--root"):
        DATASETS.get("folder")("train", None)


def test_corrupt_image_is_skipped_and_named_or_refused(folder_dataset):
    bad = folder_dataset / "a" / "img001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    split = "test" if hash_split("a/img001.png", 0.2) == "test" else "train"
    ds = DATASETS.get("folder")(split, folder_dataset)
    assert "a/img001.png" not in {ds.image_id(i) for i in range(len(ds))}
    assert [s["id"] for s in ds.identity()["skipped"]] == ["a/img001.png"]
    assert "cannot decode" in ds.identity()["skipped"][0]["reason"]
    with pytest.raises(BadImage, match="img001.png"):
        DATASETS.get("folder")(split, folder_dataset, on_bad_image="error")


class _Blank(torch.utils.data.Dataset):
    """A split of many large images that costs nothing to load: the crop draws are all this test needs."""

    name, card = "blank", None

    def __init__(self, n: int, side: int):
        self.n, self.img = n, torch.zeros(3, side, side, dtype=torch.uint8)

    def __len__(self):
        return self.n

    def load(self, i):
        return self.img


def test_seeds_draw_independent_crop_streams():
    """Sample k of seed 1 used to be sample k + 1,000,003 of seed 0 (a linear seed): runs of millions of
    samples shared most of their crops. Now the first 10,000 (image, crop, flip) of seeds 0 and 1 share none
    beyond chance (10,000 images of 1024 px, 32-px crops: ~2e10 choices, so a chance match has odds ~1e-2),
    neither at the same sample number nor at the old offset, and the stream of one seed is reproducible."""
    images = _Blank(10_000, 1024)
    s0, s1 = TrainCrops(images, 32, seed=0), TrainCrops(images, 32, seed=1)
    n = 10_000
    first0 = [s0.draw(k) for k in range(n)]
    first1 = [s1.draw(k) for k in range(n)]
    shifted0 = [s0.draw(k + 1_000_003) for k in range(n)]
    assert not set(first1) & (set(first0) | set(shifted0))
    assert len(set(first0)) == n  # no repeats within a stream either
    assert [TrainCrops(images, 32, seed=0).draw(k) for k in (0, 7, 123_456_789)] == [first0[0], first0[7], s0.draw(123_456_789)]
    # the preparation stream (negative sample numbers) is its own, not the training stream mirrored
    assert not {s0.draw(-1 - k) for k in range(1000)} & set(first0[:1000])

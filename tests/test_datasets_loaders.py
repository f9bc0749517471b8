"""DIV2K, STL-10 and Landscape loaders on fixtures written in each dataset's real on-disk format."""

import hashlib

import numpy as np
import pytest
import torch

from bench.datasets import DATASETS, DatasetError, DatasetNotFound
from bench.datasets.views import EvalView, TrainCrops
from dataset_fixtures import cards_with, landscape_names, write_div2k, write_landscape, write_stl10


def ids(ds):
    return [ds.image_id(i) for i in range(len(ds))]


# ---------------------------------------------------------------------------------------------- STL-10


def test_stl10_reads_the_binary_format(tmp_path):
    truth = write_stl10(tmp_path, n_train=5, n_test=3)
    train, test = DATASETS.get("stl10")("train", tmp_path), DATASETS.get("stl10")("test", tmp_path)
    assert (len(train), len(test)) == (5, 3)
    assert ids(test) == ["test/00000", "test/00001", "test/00002"]
    for ds, split in ((train, "train"), (test, "test")):
        for i in range(len(ds)):
            img = ds.load(i)
            assert img.dtype == torch.uint8 and img.shape == (3, 96, 96)
            assert np.array_equal(img.permute(1, 2, 0).numpy(), truth[split][i])
    assert test.load(0)[:, 0, 0].tolist() == [255, 0, 0] and test.load(0)[:, 0, 50].tolist() != [255, 0, 0]


def test_stl10_matches_torchvision_reader(tmp_path):
    from torchvision.datasets import STL10 as TVSTL10

    write_stl10(tmp_path, n_train=2, n_test=3)
    folder = tmp_path / "stl10_binary"
    md5 = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")}
    (folder / "unlabeled_X.bin").write_bytes(b"")

    class FixtureSTL10(TVSTL10):  # torchvision refuses files whose MD5 is not the official one: pin the fixture's
        train_list = [["train_X.bin", md5["train_X.bin"]], ["train_y.bin", md5["train_y.bin"]],
                      ["unlabeled_X.bin", hashlib.md5(b"").hexdigest()]]
        test_list = [["test_X.bin", md5["test_X.bin"]], ["test_y.bin", md5["test_y.bin"]]]

    theirs = FixtureSTL10(str(tmp_path), split="test")
    ours = DATASETS.get("stl10")("test", tmp_path)
    for i in range(3):
        assert np.array_equal(ours.load(i).permute(1, 2, 0).numpy(), np.asarray(theirs[i][0]))


def test_stl10_fixture_is_marked_not_official_and_unlabeled_is_optional(tmp_path):
    write_stl10(tmp_path, n_train=4, n_test=2, n_unlabeled=3)
    test = DATASETS.get("stl10")("test", tmp_path)
    ident = test.identity()
    assert ident["official"] is False and "MD5 of test_X.bin differs" in ident["official_note"]
    assert any("not the official dataset" in line for line in test.report())
    plus = DATASETS.get("stl10_unlabeled")("train", tmp_path)
    assert len(plus) == 7 and ids(plus)[-1] == "unlabeled/00002" and plus.root == test.root
    assert len(DATASETS.get("stl10_unlabeled")("test", tmp_path)) == 2


def test_stl10_official_when_md5_and_count_match_the_card(tmp_path, monkeypatch):
    write_stl10(tmp_path / "data", n_train=2, n_test=3)
    md5 = hashlib.md5((tmp_path / "data" / "stl10_binary" / "test_X.bin").read_bytes()).hexdigest()
    monkeypatch.setenv("BENCH_CARDS", str(cards_with(tmp_path, "stl10", **{"extra.file_md5": {"test_X.bin": md5},
                                                                           "images.test": 3})))
    ds = DATASETS.get("stl10")("test", tmp_path / "data")
    assert ds.official()[0] is True and ds.identity()["official"] is True
    assert not any("WARNING" in line for line in ds.report())


def test_stl10_card_pins_torchvision_checksums():
    from torchvision.datasets import STL10 as TVSTL10

    from bench.config import DatasetCard

    card = DatasetCard.load("stl10")
    pinned = dict(TVSTL10.train_list + TVSTL10.test_list)
    assert card.extra["file_md5"] == {k: pinned[k] for k in card.extra["file_md5"]}
    assert card.downloads[0]["md5"] == TVSTL10.tgz_md5 and card.downloads[0]["url"] == TVSTL10.url
    assert (card.images["train"], card.images["test"], card.images["unlabeled"]) == (5000, 8000, 100000)


def test_stl10_truncated_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFound, match="bench data fetch stl10"):
        DATASETS.get("stl10")("test", tmp_path)
    write_stl10(tmp_path, n_train=2, n_test=2)
    path = tmp_path / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"test_X\.bin.*not a whole number"):
        DATASETS.get("stl10")("test", tmp_path)


def test_stl10_gray_images_reported(tmp_path):
    truth = write_stl10(tmp_path, n_train=2, n_test=3)
    truth["test"][1] = truth["test"][1].mean(axis=2, keepdims=True).astype(np.uint8)  # R = G = B
    truth["test"].transpose(0, 3, 2, 1).tofile(tmp_path / "stl10_binary" / "test_X.bin")
    ds = DATASETS.get("stl10")("test", tmp_path)
    assert ds.identity()["gray"] == ["test/00001"]
    assert any("grayscale" in line and "test/00001" in line for line in ds.report())


def test_stl10_eval_protocol_is_the_full_image_in_batches(tmp_path):
    truth = write_stl10(tmp_path, n_train=2, n_test=2)
    view = EvalView(DATASETS.get("stl10")("test", tmp_path))
    assert view.fixed_size and len(view) == 2
    assert np.array_equal(view[1][0].permute(1, 2, 0).numpy(), truth["test"][1])


# ---------------------------------------------------------------------------------------------- DIV2K


def test_div2k_layout_counts_and_disjoint_splits(tmp_path):
    write_div2k(tmp_path, n_train=4, n_test=3)
    train, test = DATASETS.get("div2k")("train", tmp_path), DATASETS.get("div2k")("test", tmp_path)
    assert ids(train) == [f"DIV2K_train_HR/{k:04d}.png" for k in range(1, 5)]
    assert ids(test) == [f"DIV2K_valid_HR/{k:04d}.png" for k in range(801, 804)]
    assert train.load(0).shape == (3, 40, 56) and train.load(0).dtype == torch.uint8
    assert test.identity()["eval_protocol"] == {"mode": "full", "short_side": 256}
    view = EvalView(test)
    assert len(view) == 3 and view[2][0].shape == (3, 40, 56)
    assert TrainCrops(train, 32, seed=0)[5].shape == (3, 32, 32)
    ident = test.identity()
    assert ident["official"] is False and "not installed by 'bench data fetch'" in ident["official_note"]
    assert ident["skipped"] == [] and ident["n_images"] == 3


def test_div2k_missing_names_root_and_fix(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"DIV2K_valid_HR/.*bench data fetch div2k"):
        DATASETS.get("div2k")("test", tmp_path / "nowhere")


def test_div2k_root_from_env(tmp_path, monkeypatch):
    write_div2k(tmp_path / "div2k", n_train=2, n_test=2)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    ds = DATASETS.get("div2k")("test")
    assert ds.root == tmp_path / "div2k" and len(ds) == 2


def test_content_hash_follows_the_files(tmp_path):
    write_div2k(tmp_path, n_train=2, n_test=2)
    h0 = DATASETS.get("div2k")("test", tmp_path).identity()["content_hash"]
    assert DATASETS.get("div2k")("test", tmp_path).identity()["content_hash"] == h0
    write_div2k(tmp_path, n_train=2, n_test=2, size=(40, 60), seed=1)  # same names, other content and size
    assert DATASETS.get("div2k")("test", tmp_path).identity()["content_hash"] != h0


# ---------------------------------------------------------------------------------------------- Landscape


def test_landscape_split_by_name_is_stable_and_disjoint(tmp_path):
    write_landscape(tmp_path / "a", landscape_names(0, 60))
    train, test = DATASETS.get("landscape")("train", tmp_path / "a"), DATASETS.get("landscape")("test", tmp_path / "a")
    assert len(train) + len(test) == 60 and not set(ids(train)) & set(ids(test))
    assert 1 <= len(test) <= 15  # 10% of 60, give or take
    test_names = set(ids(test))
    # More files, fewer files, another folder, subfolders: a file's split never changes.
    names = landscape_names(0, 60)
    b = tmp_path / "b"
    write_landscape(b / "sub", names[10:] + landscape_names(1000, 40))
    test_b = {n.split("/")[-1] for n in ids(DATASETS.get("landscape")("test", b))}
    assert test_b & set(names) == test_names - set(names[:10])
    assert not test_b & {n.split("/")[-1] for n in ids(DATASETS.get("landscape")("train", b))}


def test_landscape_is_not_official_unless_4319_files(tmp_path):
    write_landscape(tmp_path, landscape_names(0, 20))
    ds = DATASETS.get("landscape")("train", tmp_path)
    official, note = ds.official()
    assert official is False and "20 image files" in note and "4319" in note
    img = ds.load(0)
    assert img.shape == (3, 40, 48)
    crops = TrainCrops(ds, 32, seed=0, resize_to=ds.card.short_side)
    assert crops[0].shape == (3, 32, 32)
    assert any("below the 256-px training size" in line for line in ds.report(crop=32))


def test_landscape_missing_points_at_fetch_instructions(tmp_path):
    with pytest.raises(DatasetNotFound, match="bench data fetch landscape"):
        DATASETS.get("landscape")("train", tmp_path / "none")

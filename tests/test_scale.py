"""One scale from training to scoring (every dataset card states it; training and prediction use it), and
tiled prediction (overlapping feathered tiles; exact for a network whose receptive field fits the overlap)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bench.config import ConfigError, DatasetCard
from bench.datasets import DATASETS
from bench.datasets.views import EvalView, train_crops
from bench.evaluate import evaluate, feather, predict_ab_tiled, predict_lab_tiled
from bench.methods.base import Method
from bench.metrics import build_metrics
from bench.recipes import load_recipe
from conftest import write_folder_dataset
from dataset_fixtures import cards_with, landscape_names, write_div2k, write_landscape, write_stl10


class Probe(Method):
    """Predicts ab = 0 and records the shape of every L it is given."""

    needs_training = False

    def __init__(self):
        super().__init__(None, None)
        self.seen: list[tuple[int, ...]] = []

    def predict_ab(self, L):
        self.seen.append(tuple(L.shape))
        return torch.zeros(L.shape[0], 2, *L.shape[2:], dtype=L.dtype)


def dataset_root(name: str, tmp_path):
    if name == "samples":
        return None
    if name == "folder":
        return write_folder_dataset(tmp_path / "photos", n=20)
    if name in ("stl10", "stl10_unlabeled"):
        write_stl10(tmp_path, n_train=3, n_test=2, n_unlabeled=2)
        return tmp_path
    if name == "div2k":
        return write_div2k(tmp_path, n_train=2, n_test=2)
    if name == "landscape":
        return write_landscape(tmp_path, landscape_names(0, 30))
    pytest.fail(f"no fixture for dataset {name!r}: add one here so its scale is checked")


@pytest.mark.parametrize("name", DATASETS.names())
def test_training_and_prediction_use_the_cards_one_scale(name, tmp_path):
    """For every registered dataset: training crops are cut from images at the shorter side the card states,
    and evaluation predicts at that same shorter side (full images: the L the network is given; fixed-size
    views: the image the crops and tiles are cut from). ``short_side: null`` means the images' own size."""
    cls = DATASETS.get(name)
    card = DatasetCard.load(cls.data_name or cls.name)
    root = dataset_root(name, tmp_path)
    train, test = cls("train", root), cls("test", root)
    crops = train_crops(train, 32, seed=0)
    i, *_ = crops.draw(0)
    train_short = min(crops._prepared(i).shape[-2:])
    view = EvalView(test)
    if view.fixed_size:
        pred_short = min(view.scaled_image(0).shape[-2:])
    else:
        probe = Probe()
        evaluate(probe, view, build_metrics(["psnr"]), device=torch.device("cpu"), progress=False,
                 work_size=view.work_size)
        pred_short = min(probe.seen[0][-2:])
    if card.short_side is None:  # the images' own resolution, on both sides
        assert train_short == min(train.load(i).shape[-2:]) and pred_short == min(test.load(0).shape[-2:])
    else:
        assert train_short == pred_short == card.short_side, (train_short, pred_short, card.short_side)


def test_a_card_must_state_its_scale(tmp_path, monkeypatch):
    cards = cards_with(tmp_path, "samples")
    text = (cards / "samples.yaml").read_text()
    (cards / "samples.yaml").write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("short_side")))
    monkeypatch.setenv("BENCH_CARDS", str(cards))
    with pytest.raises(ConfigError, match=r"samples\.yaml: no short_side"):
        DatasetCard.load("samples")
    (cards / "samples.yaml").write_text(text.replace("  tile: 64", "  tile: 64\n  resize_short: 128"))
    with pytest.raises(ConfigError, match="eval.resize_short is gone"):
        DatasetCard.load("samples")


def test_div2k_is_predicted_at_the_scale_it_is_trained_at(tmp_path):
    """The bug this fixes: crops came from the full-resolution photos while ab was predicted at the recipe's
    crop size. Now a 2040x1356 photo is trained on and predicted at a shorter side of 256; the output and
    the metrics keep its full resolution."""
    write_div2k(tmp_path, n_train=1, n_test=1, size=(1356 // 4, 2040 // 4))
    test = DATASETS.get("div2k")("test", tmp_path)
    probe = Probe()
    view = EvalView(test)
    result = evaluate(probe, view, build_metrics(["psnr"]), device=torch.device("cpu"), progress=False, work_size=view.work_size)
    assert probe.seen == [(1, 1, 256, 385)] and result.samples[0][1].shape == (3, 1356 // 4, 2040 // 4)
    crops = train_crops(DATASETS.get("div2k")("train", tmp_path), 64, seed=0)
    assert crops._prepared(0).shape[-2:] == (256, 385)


# --------------------------------------------------------------------------------------------------
# Tiled prediction


class Conv(Method):
    """A fully convolutional stand-in whose receptive field reaches ``reach`` pixels from its centre."""

    needs_training = False

    def __init__(self, reach: int):
        super().__init__(None, None)
        torch.manual_seed(0)
        self.net = nn.Sequential(*[nn.Conv2d(1 if k == 0 else 2, 2, 3, padding=1) for k in range(reach)]).double()

    def predict_ab(self, L):
        return self.net(L.double())


@pytest.mark.parametrize("size", [(45, 70), (16, 100), (64, 64), (33, 17)])
def test_overlapping_tiles_reproduce_the_whole_image_prediction(size):
    L = torch.rand(2, 1, *size, dtype=torch.float64) * 100
    near = Conv(reach=2)  # 5x5 receptive field: 2 px from its centre, = overlap // 4 for overlap 8
    with torch.no_grad():
        whole = near.predict_ab(L)
        tiled = predict_ab_tiled(near, L, tile=16, overlap=8, max_tiles=5)  # several chunks of tiles too
        assert tiled.shape == whole.shape and torch.allclose(tiled, whole.float(), atol=1e-4, rtol=0)
        if max(size) > 16:
            # the overlap is what makes it exact: abutting tiles (no overlap) show their seams ...
            assert not torch.allclose(predict_ab_tiled(near, L, tile=16, overlap=0), whole.float(), atol=1e-4)
            # ... and so does a network that sees beyond the overlap's margin
            far = Conv(reach=4)
            assert not torch.allclose(predict_ab_tiled(far, L, tile=16, overlap=8), far.predict_ab(L).float(), atol=1e-4)


class OwnLightness(Conv):
    """A stand-in that outputs all of Lab, its own lightness included (as ``autoencoder-rgb``)."""

    predicts_lightness = True

    def __init__(self, reach: int):
        super().__init__(reach)
        self.lightness = nn.Conv2d(1, 1, 5, padding=2).double()

    def predict_lab(self, L):
        return torch.cat([self.lightness(L.double()), self.predict_ab(L)], 1)


def test_a_method_with_its_own_lightness_is_tiled_on_all_three_channels():
    """Its L is blended from the tiles like its ab (not replaced by the input's), and the tiles reproduce the
    whole-image output; a method that keeps the input's L gets exactly that L back."""
    L = torch.rand(1, 1, 45, 70, dtype=torch.float64) * 100
    own, keep = OwnLightness(reach=2), Conv(reach=2)
    with torch.no_grad():
        whole = own.predict_lab(L)
        tiled = predict_lab_tiled(own, L, tile=16, overlap=8)
        assert tiled.shape == (1, 3, 45, 70) and torch.allclose(tiled, whole.float(), atol=1e-4, rtol=0)
        assert not torch.allclose(tiled[:, :1], L.float(), atol=1)
        kept = predict_lab_tiled(keep, L, tile=16, overlap=8)
        assert torch.equal(kept[:, :1], L) and torch.equal(kept[:, 1:], predict_ab_tiled(keep, L, tile=16, overlap=8).to(L.dtype))


def test_feathered_weights_cover_every_pixel_and_cross_fade():
    class Ones(Probe):
        def predict_ab(self, L):
            return torch.ones(L.shape[0], 2, *L.shape[2:])

    for h, w, tile, overlap in [(100, 37, 16, 8), (65, 65, 32, 16), (50, 50, 16, 0), (70, 20, 24, 1), (40, 41, 20, 10)]:
        out = predict_ab_tiled(Ones(), torch.zeros(1, 1, h, w), tile=tile, overlap=overlap)
        assert torch.allclose(out, torch.ones_like(out)), (h, w, tile, overlap)  # weights normalised everywhere
    ramp = feather(16, True, True, 8)
    # 0 over the outer quarter of the overlap (2 px), a linear rise over its middle half (4 px), then 1
    assert ramp[:2].tolist() == [0, 0] and ramp[-2:].tolist() == [0, 0] and ramp[6:10].eq(1).all()
    assert ramp[2:6].tolist() == pytest.approx([0.125, 0.375, 0.625, 0.875])
    assert (ramp[1:9].diff() >= 0).all() and feather(16, False, False, 8).eq(1).all()


def test_tiling_defaults_per_recipe_and_options():
    assert load_recipe("unet", "cpu").prediction() == {"tile": 64, "tile_overlap": 16}  # trained on 64-px crops
    assert load_recipe("unet", "gpu").prediction() == {"tile": None, "tile_overlap": None}  # 256-px crops: whole
    assert load_recipe("gray", "cpu").prediction() == {"tile": None, "tile_overlap": None}  # nothing learned from crops
    assert load_recipe("kmeans32", "cpu", {"train.image_size": "32"}).prediction() == {"tile": 32, "tile_overlap": 8}
    assert load_recipe("unet", "cpu", {"predict.tile": "null"}).prediction()["tile"] is None
    assert load_recipe("unet", "gpu", {"predict.tile": "96", "predict.overlap": "24"}).prediction() == {"tile": 96, "tile_overlap": 24}
    with pytest.raises(ConfigError, match="more than half"):
        load_recipe("unet", "gpu", {"predict.tile": "32", "predict.overlap": "20"}).prediction()
    with pytest.raises(ConfigError, match="tile must be"):
        load_recipe("unet", "gpu", {"predict.tile": "big"})


def test_tiles_are_recorded_in_the_result(tmp_path, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))
    photos = write_folder_dataset(tmp_path / "photos", n=10)
    args = ["run", "--methods", "gray", "--dataset", "folder", "--root", str(photos), "--metrics", "psnr", "--no-progress",
            "--bootstrap", "0"]
    r = CliRunner().invoke(main, [*args, "--tile", "32", "--tile-overlap", "8"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "results/eval/folder/test").glob("gray-s0-*.json"))]
    assert {(r["prediction"]["tile"], r["prediction"]["tile_overlap"]) for r in results} == {(None, None), (32, 8)}
    assert {r["prediction"]["short_side"] for r in results} == {256}


def test_colorize_too_large_for_memory_is_a_clear_error(tmp_path, monkeypatch):
    from PIL import Image

    from bench.cli import main
    from bench.methods.gray import Gray

    def greedy(self, L):  # what a photo too large for memory does: the allocator refuses
        return torch.empty(2**45) if L.numel() else L

    monkeypatch.setattr(Gray, "predict_ab", greedy)
    photo = tmp_path / "big.png"
    Image.new("RGB", (120, 80), (200, 100, 50)).save(photo)
    r = CliRunner().invoke(main, ["--results", str(tmp_path / "r"), "colorize", "--method", "gray", "--dataset", "samples",
                                  str(photo), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception  # a clean exit, not a crash
    assert "big.png: a 120x80 photo does not fit in cpu memory" in r.output and "--work-size" in r.output
    assert "Traceback" not in r.output


def test_colorize_tiles_and_work_size(tmp_path):
    """colorize predicts at the card's scale (and in tiles when asked); the output keeps the photo's size."""
    from PIL import Image

    from bench.cli import main

    photo = tmp_path / "p.png"
    Image.new("RGB", (90, 60), (10, 200, 30)).save(photo)
    base = ["--results", str(tmp_path / "r"), "colorize", "--method", "gray", "--dataset", "samples", str(photo), "--out"]
    r = CliRunner().invoke(main, [*base, str(tmp_path / "a"), "--tile", "64"], catch_exceptions=False)
    assert r.exit_code == 0 and "ab at shorter side 256, in 64-px tiles" in r.output
    with Image.open(tmp_path / "a" / "p.png") as im:
        assert im.size == (90, 60)
    r = CliRunner().invoke(main, [*base, str(tmp_path / "b"), "--work-size", "0"], catch_exceptions=False)
    assert r.exit_code == 0 and "ab at shorter side full" in r.output


def test_a_report_never_mixes_work_sizes_in_one_table(tmp_path):
    from _result_store import make_store
    from bench.report import build_report
    from bench.report.markdown import render_markdown

    root = tmp_path / "results"
    make_store(root, methods=("gray",), prediction={"short_side": 256, "tile": None, "tile_overlap": None})
    make_store(root, methods=("kmeans32",), prediction={"short_side": 512, "tile": 64, "tile_overlap": 16})
    rep = build_report(root, tmp_path / "out", pictures=False)
    assert len(rep.sections) == 2 and all(s.group.variants == 2 for s in rep.sections)
    md = render_markdown(rep)
    assert md.count("work size (the scale predicted at) differ") == 2
    assert "colour predicted at a shorter side of 256 px" in md and "colour predicted at a shorter side of 512 px" in md
    assert "| tiles 64/16 |" in md

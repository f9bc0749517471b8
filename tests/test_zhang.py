"""zhang: the in-gamut bins, the plain grid of the Q = 361 classifier, bin tables from files, soft targets,
class rebalancing and its per-split cache, the decodings against closed forms, the VGG19 trunk and its
ImageNet weights, and overfitting 4 tiny images through the shared loop (zhang-small, the grid classifier
with both decodings, the VGG19 trunk)."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import test_learned_methods
import torch
import torch.nn.functional as F
import torchvision
from scipy.spatial.distance import cdist
from test_learned_methods import TinySet, psnr_with_ab

from bench.checkpoint import load_trained
from bench.color import rgb_to_lab
from bench.config import ConfigError
from bench.evaluate import colorize
from bench.methods._nets import PretrainedWeightsMissing
from bench.methods._vgg import IMAGENET_MEAN, IMAGENET_STD, fold_gray_conv1, vgg19_features, vgg19_file
from bench.methods.zhang import (
    ZhangParams, count_split_ab, decode_annealed, decode_centroid, decode_topk, prior_cache_file, rebalance_weights,
    smooth_prior,
)
from bench.metrics.functional import psnr
from bench.quantize import AB_GRID, _cache_file, gamut_bins, grid_bins, load_bin_table, nearest_bin, soft_encode
from bench.recipes import build_method, load_recipe
from bench.train import train

tiny = test_learned_methods.tiny  # the 4-image fixture, shared with the other learners' tests


def random_srgb_ab(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (3, n, 1), dtype=torch.uint8, generator=g)
    return rgb_to_lab(rgb)[1:].reshape(2, -1).T


def small_method(**params) -> torch.nn.Module:
    overrides = {f"params.{k}": str(v) for k, v in params.items()}
    return build_method(load_recipe("zhang-small", "cpu", overrides))


# --------------------------------------------------------------------------------------------------
# Bins


def test_gamut_bins_rules_and_q():
    soft, near = gamut_bins("soft5"), gamut_bins("nearest")
    assert (len(soft), len(near)) == (322, 261)  # the Q documented in bench/quantize.py and the README
    assert _cache_file("soft5", AB_GRID).is_file() and _cache_file("nearest", AB_GRID).is_file()
    for table in (soft, near):
        assert torch.equal(table, table.round()) and torch.all(table % AB_GRID == 0)
        assert len(torch.unique(table, dim=0)) == len(table)
    assert {tuple(r) for r in near.tolist()} <= {tuple(r) for r in soft.tolist()}

    ab = random_srgb_ab(20000)
    # "nearest": every colour's nearest bin of the table is its nearest grid point (within half a bin)
    assert (ab - near[nearest_bin(ab, near)]).abs().max() <= AB_GRID / 2 + 1e-4
    # "soft5": every colour's 5 nearest bins of the table are its 5 nearest points of the unbounded grid
    cell = torch.round(ab / AB_GRID)
    offsets = torch.stack(torch.meshgrid(torch.arange(-2, 3), torch.arange(-2, 3), indexing="ij"), -1).reshape(-1, 2)
    grid = (cell[:, None, :] + offsets) * AB_GRID  # (N, 25, 2): holds the 5 nearest grid points
    five = grid.gather(1, (grid - ab[:, None]).norm(dim=2).topk(5, largest=False).indices[..., None].expand(-1, -1, 2))
    idx, _ = soft_encode(ab, soft)
    assert torch.equal(soft[idx].sort(1).values, five.sort(1).values)


def test_grid_of_12_over_the_study_range_has_361_bins():
    bins = grid_bins(12.0, -110.0, 118.0)
    assert len(bins) == 361 == 19**2  # (118 - (-110)) / 12 = 19 cells per axis
    centres = [-104.0 + 12 * i for i in range(19)]
    assert bins[:, 0].unique().tolist() == centres and bins[:, 1].unique().tolist() == centres
    ab = torch.rand(20000, 2, generator=torch.Generator().manual_seed(0)) * 228 - 110  # anywhere in the range
    assert (ab - bins[nearest_bin(ab, bins)]).abs().max() <= 6 + 1e-4  # within half a cell on each axis
    assert (random_srgb_ab(20000).abs() < 110).all()  # the range holds every sRGB colour
    for name, decode in (("grid361-centroid", "centroid"), ("grid361-topk", "topk")):
        method = build_method(load_recipe(name, "cpu"))
        info = method.extra_info()
        assert info["n_bins"] == 361 and info["bins"] == "grid:12 over [-110, 118]" and method.params.decode == decode
        assert method.net(torch.rand(1, 1, 32, 32) * 100).shape == (1, 361, 8, 8)
    with pytest.raises(ConfigError, match=r"grid361-centroid\.yaml: params: .*not a whole number of cells of 10"):
        load_recipe("grid361-centroid", "cpu", {"params.bin_size": "10"})


def test_bin_table_from_file(tmp_path):
    table = gamut_bins("nearest")[::3].numpy()  # any (Q, 2) table, e.g. Zhang's pts_in_hull.npy
    path = tmp_path / "bins.npy"
    np.save(path, table)
    method = small_method(bins_file=path)
    assert torch.equal(method.bins, torch.from_numpy(table)) and method.extra_info()["n_bins"] == len(table)
    assert method.net(torch.rand(1, 1, 32, 32) * 100).shape == (1, len(table), 8, 8)

    np.save(tmp_path / "wrong.npy", np.zeros((10, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"wrong\.npy: shape \(10, 3\).*\(Q, 2\)"):
        load_recipe("zhang-small", "cpu", {"params.bins_file": str(tmp_path / "wrong.npy")})
    with pytest.raises(ConfigError, match=r"missing\.npy: no such bin table file"):
        load_recipe("zhang", "cpu", {"params.bins_file": str(tmp_path / "missing.npy")})
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(ValueError, match=r"junk\.npy: not a readable \.npy"):
        load_bin_table(tmp_path / "junk.npy")


# --------------------------------------------------------------------------------------------------
# Targets and rebalancing


def test_soft_encoding_closed_form():
    bins = gamut_bins()
    ab = random_srgb_ab(500, seed=1)
    idx, w = soft_encode(ab, bins)
    d = cdist(ab.double().numpy(), bins.double().numpy())
    nearest5 = np.argsort(d, axis=1)[:, :5]
    assert torch.equal(idx, torch.from_numpy(nearest5))
    g = np.exp(-np.take_along_axis(d, nearest5, 1) ** 2 / (2 * 5.0**2))
    assert np.allclose(w.numpy(), g / g.sum(1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("targets", ["soft", "onehot"])
def test_training_loss_is_rebalanced_cross_entropy(targets):
    """The loss against torch's own cross-entropy with probability targets, weighted per pixel."""
    torch.manual_seed(0)
    method = small_method(targets=targets)
    q = len(method.bins)
    method.prior.copy_(torch.distributions.Dirichlet(torch.ones(q)).sample())
    L, ab = torch.rand(2, 1, 32, 32) * 100, random_srgb_ab(2 * 32 * 32, seed=2).T.reshape(2, 2, 32, 32)
    loss = next(method.training_step(L, ab, 0)).loss
    with torch.no_grad():
        logits = method.net(L).permute(0, 2, 3, 1).reshape(-1, q)
    ab_small = F.interpolate(ab, size=(8, 8), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(-1, 2)
    near = nearest_bin(ab_small, method.bins)
    if targets == "soft":
        idx, w = soft_encode(ab_small, method.bins)
        target = torch.zeros(len(ab_small), q).scatter_(1, idx, w)
    else:
        target = F.one_hot(near, q).float()
    weights = rebalance_weights(method.prior, 0.5)[near]
    expected = (weights * F.cross_entropy(logits, target, reduction="none")).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rebalancing_weights():
    torch.manual_seed(0)
    q, lam = 40, 0.5
    p = torch.distributions.Dirichlet(torch.full((q,), 0.3)).sample().double()
    w = rebalance_weights(p.float(), lam).double()
    assert (p * w).sum().item() == pytest.approx(1.0, abs=1e-6)  # expectation 1 under the prior
    inv = 1 / ((1 - lam) * p + lam / q)
    assert torch.allclose(w / w[0], inv / inv[0], rtol=1e-5)  # proportional to the inverted mixture
    assert torch.allclose(rebalance_weights(torch.full((q,), 1 / q), lam), torch.ones(q))  # uniform: all 1

    bins = gamut_bins()
    raw = torch.zeros(len(bins)).index_fill_(0, torch.tensor([3, 50, 200]), 1.0) / 3
    k = np.exp(-cdist(bins.numpy(), bins.numpy()) ** 2 / (2 * 5.0**2)) @ raw.double().numpy()
    assert np.allclose(smooth_prior(raw, bins, 5.0).numpy(), k / k.sum(), atol=1e-7)


def test_prior_of_the_split_is_cached(tiny, monkeypatch):
    loads = []
    monkeypatch.setattr(TinySet, "load", lambda self, i: loads.append(i) or self.images[i])
    method = small_method()
    prior_cache_file(tiny, method.bins, 10000, 65536).unlink(missing_ok=True)  # (the session's cache folder)
    method.prepare_split(tiny)
    assert sorted(loads) == [0, 1, 2, 3] and method.extra_info()["prior_from_cache"] is False
    path = prior_cache_file(tiny, method.bins, 10000, 65536)
    assert method.extra_info()["prior_cache"] == str(path) and path.is_file()
    # the prior is the smoothed empirical distribution of the split's pixels (48x48: all of them kept)
    lab = rgb_to_lab(torch.stack(tiny.images))
    counts = torch.bincount(nearest_bin(lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2), method.bins), minlength=len(method.bins))
    assert int(method.prior_pixels) == 4 * 48 * 48
    assert torch.allclose(method.prior, smooth_prior(counts / counts.sum(), method.bins, 5.0), atol=1e-7)
    w = method.class_weights()
    assert (method.prior.double() * w.double()).sum().item() == pytest.approx(1.0, abs=1e-5)

    again = small_method()
    again.prepare_split(tiny)  # a second run on the same split reads the file: no image is loaded
    assert len(loads) == 4 and again.extra_info()["prior_from_cache"] is True
    assert torch.equal(again.prior, method.prior)
    other = TinySet([im.flip(-1) for im in tiny.images[:3]])  # other content: another cache entry
    assert prior_cache_file(other, method.bins, 10000, 65536) != path
    assert count_split_ab(other, method.bins).sum() == 3 * 48 * 48


# --------------------------------------------------------------------------------------------------
# Decoding


def test_annealed_mean_limits_and_topk():
    torch.manual_seed(0)
    bins = gamut_bins()
    logits = torch.randn(2, len(bins), 3, 4) * 3
    p = torch.softmax(logits, 1).double()
    mean = torch.einsum("bqhw,qc->bchw", p, bins.double())
    assert torch.allclose(decode_annealed(logits, bins, 1.0).double(), mean, atol=1e-4)  # T = 1: the mean
    mode = bins[logits.argmax(1)].permute(0, 3, 1, 2)
    assert torch.allclose(decode_annealed(logits, bins, 1e-4), mode, atol=1e-3)  # T -> 0: the mode
    assert torch.allclose(decode_topk(logits, bins, 1, 0.38), mode)
    assert torch.allclose(decode_topk(logits, bins, len(bins), 0.38), decode_annealed(logits, bins, 0.38), atol=1e-4)
    top, idx = logits.topk(3, dim=1)
    w = torch.softmax(top / 0.38, 1)
    manual = (w.unsqueeze(-1) * bins[idx]).sum(1).permute(0, 3, 1, 2)
    assert torch.allclose(decode_topk(logits, bins, 3, 0.38), manual, atol=1e-4)
    assert torch.equal(decode_centroid(logits, bins), mode)  # the arg-max bin's centre


@pytest.mark.parametrize("decode", ["annealed", "topk", "centroid"])
def test_one_hot_nearest_bin_decodes_within_half_a_bin(decode):
    method = small_method(decode=decode)
    rgb = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8))
    ab = rgb_to_lab(rgb)[:, 1:]
    near = nearest_bin(ab.permute(0, 2, 3, 1).reshape(-1, 2), method.bins).view(2, 16, 16)
    logits = torch.full((2, len(method.bins), 16, 16), -torch.inf).scatter_(1, near.unsqueeze(1), 0.0)
    decoded = method.decode(logits)
    assert (decoded - ab).abs().max() <= AB_GRID / 2 + 1e-4


def test_params_are_checked():
    with pytest.raises(ConfigError, match="targets must be one of soft, onehot"):
        load_recipe("zhang-small", "cpu", {"params.targets": "hard"})
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ZhangParams(temperature=0)


# --------------------------------------------------------------------------------------------------
# The VGG19 trunk and torchvision's ImageNet weights (never downloaded: a stand-in file is written)


def vgg19_like_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's vgg19 state_dict layout (key names and shapes, read off the model built on the meta
    device) with random values. The classifier's 124M numbers, which the loader drops, are one broadcast
    zero each (shape kept), so the file stays small."""
    with torch.device("meta"):
        reference = torchvision.models.vgg19().state_dict()
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 if k.startswith("features.") else torch.zeros(1).expand(v.shape)
            for k, v in reference.items()}


def test_vgg19_trunk_has_torchvision_layout_and_a_gray_conv1():
    ours = vgg19_features(1.0).state_dict()
    with torch.device("meta"):
        theirs = torchvision.models.vgg19().features.state_dict()
    assert set(theirs) <= set(ours)  # every torchvision key at the same index
    assert all(ours[k].shape == theirs[k].shape for k in theirs if k != "0.weight") and ours["0.weight"].shape == (64, 1, 3, 3)
    assert {k.rsplit(".", 1)[0] for k in set(ours) - set(theirs)} == {"4.0", "9.0", "18.0", "27", "36"}  # the BatchNorms
    # the folded conv1 on x = L / 100 is torchvision's conv1 on the ImageNet-normalised gray image, away from the border
    state = vgg19_like_state()
    w, b = state["features.0.weight"], state["features.0.bias"]
    x = torch.rand(2, 1, 20, 24)
    rgb = (x.expand(2, 3, 20, 24) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    want = F.conv2d(rgb, w, b, padding=1)
    got = F.conv2d(x, *fold_gray_conv1(w, b), padding=1)
    assert torch.allclose(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], atol=1e-5)


def test_zhang_vgg19_starts_from_the_hub_file_or_records_random_init(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert vgg19_file() == hub_file
    # Missing: a warning naming the file, random initialisation, recorded in train.json (through the trainer).
    recipe = load_recipe("zhang-vgg19", "cpu", {"train.steps": "1", "train.batch_size": "2", "train.image_size": "32"})
    with pytest.warns(PretrainedWeightsMissing, match=str(hub_file).replace(".", r"\.")) as rec:
        out = train(recipe, tiny, results=tmp_path / "res", progress=False)
    assert "never downloads" in str(rec[0].message)
    info = json.loads((out.run_dir / "train.json").read_text())["method_info"]
    assert info["trunk"] == "vgg19" and info["trunk_init"] == "random" and info["pretrained_file"] == str(hub_file)

    # Present: every VGG weight lands where torchvision keeps it, conv1 folded for gray input.
    hub_file.parent.mkdir(parents=True)
    state = vgg19_like_state()
    torch.save(state, hub_file)
    method = build_method(recipe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method.prepare([])
    feats = method.net.features.state_dict()
    assert torch.equal(feats["0.weight"], fold_gray_conv1(state["features.0.weight"], state["features.0.bias"])[0])
    for k in ("2.weight", "25.bias", "34.weight"):  # conv1_2, conv4_4, conv5_4 (dilated here, same weights)
        assert torch.equal(feats[k], state[f"features.{k}"])
    assert method.extra_info()["trunk_init"] == "imagenet"
    fresh = build_method(recipe)
    fresh.load_state_dict(method.state_dict())  # the checkpoint carries how the trunk started
    assert fresh.extra_info()["trunk_init"] == "imagenet"

    state["features.10.weight"] = state["features.10.weight"][:, :64]  # not VGG19: a clear error naming the file
    torch.save(state, hub_file)
    with pytest.raises(RuntimeError, match=rf"{hub_file.name}: does not fit the VGG19 trunk"):
        build_method(recipe).prepare([])
    with pytest.raises(ConfigError, match="pretrained: true needs trunk: vgg19 at width 1.0"):
        load_recipe("zhang-vgg19", "cpu", {"params.width": "0.5"})


# --------------------------------------------------------------------------------------------------
# Learning, through the shared loop


# (recipe, overrides, the recipes whose decoding is scored on the trained weights). The grid classifier
# trains once and is decoded both ways; the VGG19 trunk is narrowed (so not ImageNet-initialised) for time.
ZHANG_LEARNERS = [
    ("zhang-small", {}, ("zhang-small",)),
    ("grid361-centroid", {}, ("grid361-centroid", "grid361-topk")),
    ("zhang-vgg19", {"params.width": "0.25", "params.pretrained": "false"}, ("zhang-vgg19",)),
]


@pytest.mark.parametrize("name,overrides,decoded", ZHANG_LEARNERS, ids=[n for n, _, _ in ZHANG_LEARNERS])
def test_overfits_four_images_beyond_gray(name, overrides, decoded, tiny, tmp_path):
    """ECCV16-family networks at 1/4 width on 4 tiny images: +1 dB over gray in 100 steps."""
    small = {"train.image_size": "48", "train.batch_size": "8", "train.lr": "1e-3", "train.log_every": "10",
             "train.ckpt_every": "1000", **overrides}
    recipe = load_recipe(name, "cpu", {**small, "train.steps": "100"})
    out = train(recipe, tiny, results=tmp_path, seed=0, device=torch.device("cpu"), progress=False)
    trained = load_trained(recipe, out.run_dir, torch.device("cpu"))
    rgb = torch.stack([tiny.load(i) for i in range(len(tiny))])
    gray = psnr_with_ab(rgb, torch.zeros(1, 2, 1, 1))
    for other in decoded:
        method = build_method(load_recipe(other, "cpu", small)).eval()
        method.load_state_dict(trained.state_dict())  # the same weights, decoded as ``other`` decodes
        learned = psnr(colorize(method, rgb), rgb).mean().item()
        print(f"{name} decoded as {other} ({method.params.decode}): PSNR {learned:.2f} dB on the 4 training images, gray {gray:.2f} dB")
        assert learned >= gray + 1.0, other

    with open(out.run_dir / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"step", "loss_main", "ce", "images_per_s"} <= set(rows[0]) and int(rows[-1]["step"]) == 100
    assert float(rows[-1]["ce"]) < float(rows[0]["ce"])
    info = json.loads((out.run_dir / "train.json").read_text())["method_info"]
    assert (info["n_bins"], info["bins"]) == {"grid361-centroid": (361, "grid:12 over [-110, 118]")}.get(name, (322, "gamut:soft5"))
    if name != "zhang-small":
        return
    # another run on the same split (another seed) reads the prior from the cache
    again = train(load_recipe("zhang-small", "cpu", {**small, "train.steps": "1"}), tiny, results=tmp_path, seed=1, progress=False)
    info2 = json.loads((again.run_dir / "train.json").read_text())["method_info"]
    assert info2["prior_from_cache"] is True and info2["prior_cache"] == info["prior_cache"]


def test_kmeans_with_fewer_distinct_points_than_k_repeats_centres_instead_of_failing():
    from bench.quantize import kmeans

    x = torch.tensor([[0.0, 0.0], [10.0, 5.0]]).repeat(20, 1)  # two colours, 40 pixels, k = 5
    centres = kmeans(x, 5, iters=3, generator=torch.Generator().manual_seed(0))
    assert centres.shape == (5, 2)
    assert {tuple(c) for c in centres.tolist()} == {(0.0, 0.0), (10.0, 5.0)}  # every centre one of the colours

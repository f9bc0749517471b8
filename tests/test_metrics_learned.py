"""IS, FID and LPIPS: closed forms with stand-in feature extractors, the real wiring with stand-in weight
files (random weights saved under the real names), and "unavailable, not a crash and not 0" without them.

No real pretrained weights exist on this machine (nothing downloads); the stand-in files exercise the same
loading and feature code, and the results say the weights are non-standard.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from bench.metrics import METRICS, Batch, MetricOptions
from bench.metrics.learned import ALEXNET_FILE, INCEPTION_FILE
from bench.metrics.stats import Bootstrap, inception_split_scores

PALETTE = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]], dtype=torch.float32)


class PaletteClassifier(nn.Module):
    """A stand-in Inception: classifies an image by its nearest palette colour, with confidence ``scale``
    (0: uniform predictions); its 'pool features' are the per-channel mean and std."""

    def __init__(self, k: int, scale: float):
        super().__init__()
        self.k, self.scale = k, scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.float().mean(dim=(2, 3))
        logits = -self.scale * torch.cdist(mean, PALETTE[: self.k]) / 255
        return torch.cat([mean, x.float().std(dim=(2, 3), correction=0)], 1), logits


def palette_images(classes: list[int], size: int = 8) -> torch.Tensor:
    return PALETTE[classes].to(torch.uint8).view(-1, 3, 1, 1).expand(-1, 3, size, size).contiguous()


def run_set_metric(name: str, options: MetricOptions, batches: list[Batch], boot: Bootstrap = Bootstrap(resamples=200)) -> dict:
    metric = METRICS.get(name)(options)
    assert metric.available() == (True, "")
    metric.reset()
    for b in batches:
        metric.update(b)
    metric.take_chunk()
    return metric.compute(boot)


# ---- Inception Score -----------------------------------------------------------------------------


def test_is_of_uniform_predictions_is_1() -> None:
    imgs = palette_images([0, 1, 2, 3] * 10)
    out = run_set_metric("is", MetricOptions(inception=PaletteClassifier(4, scale=0.0)), [Batch(imgs, imgs)])
    assert out["mean"] == pytest.approx(1.0, abs=1e-6) and out["n"] == 40
    assert out["ci95"] == pytest.approx([1.0, 1.0], abs=1e-6) and out["split_scores"] == pytest.approx([1.0] * 10)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_is_of_k_equally_frequent_confident_classes_is_k(k: int) -> None:
    imgs = palette_images(list(range(k)) * 20)
    options = MetricOptions(inception=PaletteClassifier(k, scale=1e4), is_splits=1)
    out = run_set_metric("is", options, [Batch(imgs[:30], imgs[:30]), Batch(imgs[30:], imgs[30:])])
    assert out["mean"] == pytest.approx(k, rel=1e-5)


def test_is_with_10_splits_shuffles_with_a_fixed_generator() -> None:
    """10 random splits of 4 balanced confident classes: each split is nearly balanced, IS close to 4;
    the same seed gives the same score, and the global RNG is left as it was."""
    imgs = palette_images(list(range(4)) * 500)
    options = MetricOptions(inception=PaletteClassifier(4, scale=1e4), is_splits=10, seed=7)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = run_set_metric("is", options, [Batch(imgs, imgs)])
    assert torch.equal(torch.get_rng_state(), before)
    second = run_set_metric("is", options, [Batch(imgs, imgs)])
    assert first["mean"] == second["mean"] and first["splits"] == 10
    assert 3.95 < first["mean"] < 4.0 and first["std_splits"] > 0
    assert first["ci95"][0] <= first["mean"] <= first["ci95"][1]
    assert first["ci95"][1] - first["ci95"][0] < 0.05


def test_is_per_split_scores_equal_torchmetrics_on_the_same_order() -> None:
    """The per-split scores behind the CI, in torchmetrics' own shuffled order, average to its number."""
    from torchmetrics.image.inception import InceptionScore

    from bench.metrics.learned import _Identity

    logits = torch.randn(203, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    tm = InceptionScore(feature=_Identity(), splits=10)
    tm.update(logits)
    torch.manual_seed(5)
    mean, std = tm.compute()
    torch.manual_seed(5)
    order = torch.randperm(203)
    per_split = inception_split_scores(torch.log_softmax(logits[order], 1).numpy(), 10)
    assert len(per_split) == 10
    assert per_split.mean() == pytest.approx(float(mean), rel=1e-9)
    assert per_split.std(ddof=1) == pytest.approx(float(std), rel=1e-9)


def test_is_split_by_split_equals_one_torchmetrics_call() -> None:
    """The metric hands torchmetrics one split at a time (bounded memory); mean and std equal a single
    splits=10 torchmetrics call that draws its shuffle from the same seed, and the split scores match the
    numpy oracle on that order."""
    from torchmetrics.image.inception import InceptionScore

    from bench.metrics.learned import _Identity

    imgs = palette_images([0, 1, 2, 3, 4, 5, 0, 0, 1] * 23, size=4)  # 207: unequal splits (21 x 9 + 18)
    options = MetricOptions(inception=PaletteClassifier(6, scale=5.0), is_splits=10, seed=3)
    out = run_set_metric("is", options, [Batch(imgs[:100], imgs[:100]), Batch(imgs[100:], imgs[100:])])
    logits = PaletteClassifier(6, scale=5.0)(imgs)[1]
    tm = InceptionScore(feature=_Identity(), splits=10)
    tm.update(logits)
    torch.manual_seed(3)
    mean, std = tm.compute()
    assert out["mean"] == pytest.approx(float(mean), rel=1e-6) and out["std_splits"] == pytest.approx(float(std), rel=1e-5)
    torch.manual_seed(3)
    order = torch.randperm(207)
    oracle = inception_split_scores(torch.log_softmax(logits[order].double(), 1).numpy(), 10)
    np.testing.assert_allclose(out["split_scores"], oracle, rtol=1e-5)
    assert 1 < out["mean"] < 6


# ---- FID -------------------------------------------------------------------------------------------


def random_images(n: int, seed: int, size: int = 8) -> torch.Tensor:
    return torch.randint(20, 200, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_fid_of_a_set_against_itself_is_0() -> None:
    imgs = random_images(60, 0)
    out = run_set_metric("fid", MetricOptions(inception=PaletteClassifier(3, 1.0)), [Batch(imgs[:25], imgs[:25]), Batch(imgs[25:], imgs[25:])])
    assert out["n"] == 60 and out["mean"] == pytest.approx(0.0, abs=1e-4) and out["ci95"] is None


def test_fid_of_a_shifted_set_is_the_squared_shift() -> None:
    """Adding c to every pixel moves the 3 channel means by c and leaves every std: FID = 3 c^2."""
    target = random_images(60, 1)
    pred = target + 30
    out = run_set_metric("fid", MetricOptions(inception=PaletteClassifier(3, 1.0)), [Batch(pred, target)])
    assert out["mean"] == pytest.approx(3 * 30**2, rel=1e-6)


def test_fid_matches_the_scipy_formula() -> None:
    pred, target = random_images(80, 2), random_images(80, 3)
    pred[:40] //= 2  # make the two distributions differ
    extractor = PaletteClassifier(3, 1.0)
    out = run_set_metric("fid", MetricOptions(inception=extractor), [Batch(pred, target)])
    f1, f2 = (extractor(x)[0].double().numpy() for x in (pred, target))
    mu1, mu2, s1, s2 = f1.mean(0), f2.mean(0), np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert out["mean"] == pytest.approx(expected, rel=1e-5)


def test_fid_matches_torchmetrics() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    from bench.metrics.learned import _Identity, _Moments, frechet_distance

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=gen, dtype=torch.float64) @ torch.randn(16, 16, generator=gen, dtype=torch.float64)
    fake = torch.randn(250, 16, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    tm = FrechetInceptionDistance(feature=_Identity(16))
    tm.update(real, real=True)
    tm.update(fake, real=False)
    a, b = _Moments(16), _Moments(16)
    a.add(fake[:100]), a.add(fake[100:]), b.add(real)
    assert frechet_distance(*a.mean_cov(), *b.mean_cov()) == pytest.approx(float(tm.compute()), rel=1e-6)


# ---- Weights missing: unavailable, not a crash and not 0 -------------------------------------------------


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    return home


def test_missing_weights_make_metrics_unavailable_with_file_and_place(empty_torch_home, tmp_path) -> None:
    for name, file in (("is", INCEPTION_FILE), ("fid", INCEPTION_FILE), ("lpips", ALEXNET_FILE)):
        ok, why = METRICS.get(name)().available()
        assert not ok and file in why and str(empty_torch_home / "hub" / "checkpoints") in why
    ok, why = METRICS.get("is")(MetricOptions(inception_weights=str(tmp_path / "nope.pth"))).available()
    assert not ok and "nope.pth: no such file" in why


def test_evaluation_reports_unavailable_metrics_and_goes_on(empty_torch_home) -> None:
    from bench.evaluate import evaluate
    from bench.methods.gray import Gray
    from bench.metrics import build_metrics

    class View(torch.utils.data.Dataset):
        fixed_size = True

        def __len__(self):
            return 6

        def __getitem__(self, k):
            return random_images(1, k, 16)[0], k

        def item_id(self, k):
            return f"img{k}"

    method = Gray(Gray.Params(), None) if hasattr(Gray, "Params") else Gray()
    result = evaluate(method, View(), build_metrics(["psnr", "is", "fid", "lpips"]), device=torch.device("cpu"), batch_size=4, progress=False)
    assert list(result.rows.columns) == ["id", "psnr"] and len(result.rows) == 6
    assert result.aggregates["psnr"]["mean"] > 0
    for name in ("is", "fid", "lpips"):
        entry = result.aggregates[name]
        assert entry["available"] is False and entry["mean"] is None and entry["ci95"] is None and entry["reason"]


# ---- The real wiring, with stand-in weight files under the real names ------------------------------------


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory) -> str:
    """torch-fidelity's Inception v3 with random weights, saved as a plain state dict."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    orig_url, orig_load = fe.load_state_dict_from_url, fe.FeatureExtractorInceptionV3.load_state_dict
    fe.load_state_dict_from_url = lambda *a, **k: {}
    fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
    try:
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    finally:
        fe.load_state_dict_from_url, fe.FeatureExtractorInceptionV3.load_state_dict = orig_url, orig_load
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return str(path)


def test_is_and_fid_through_torch_fidelity_inception(random_inception_file, empty_torch_home) -> None:
    """One forward pass of torch-fidelity's network per image serves both metrics. FID's 2048-d matrix
    square root (seconds on 2 cores) is left to the stand-in tests above: here its features are checked."""
    options = MetricOptions(inception_weights=random_inception_file)
    target = random_images(2, 4, 32)
    batch = Batch(target // 2, target)
    is_out = run_set_metric("is", options, [batch])
    assert is_out["n"] == 2 and 1.0 <= is_out["mean"] and math.isfinite(is_out["mean"])
    assert is_out["weights"] == INCEPTION_FILE and is_out["standard_weights"] is False and "not comparable" in is_out["warning"]
    fid = METRICS.get("fid")(options)
    fid.reset()
    fid.update(batch)  # the same Batch: the Inception features are reused, not recomputed
    chunk = fid.take_chunk()
    assert chunk["pred"].shape == chunk["target"].shape == (2, 2048)
    assert not torch.equal(chunk["pred"], chunk["target"]) and fid._pred.n == 2
    assert len([k for k in batch._cache if k[0] == "inception"]) == 2  # pred and target, once each


def test_weights_file_that_holds_code_is_refused(tmp_path) -> None:
    from bench.metrics.learned import WeightsError, load_tensors_only

    path = tmp_path / INCEPTION_FILE
    torch.save({"fn": print}, path)
    with pytest.raises(WeightsError, match=INCEPTION_FILE):
        load_tensors_only(path)


def test_lpips_with_backbone_weights_in_the_hub_cache(empty_torch_home) -> None:
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    ckpt = empty_torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), ckpt / ALEXNET_FILE)
    metric = METRICS.get("lpips")()
    assert metric.available() == (True, "")
    target = random_images(3, 5, 48)
    pred = torch.cat([target[:1], (target[1:] // 2)])
    ours = metric.score(pred, target)
    assert ours.shape == (3,) and ours[0].item() == pytest.approx(0.0, abs=1e-7) and (ours[1:] > 0).all()
    reference = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)  # loads the same cached file
    expected = [float(reference(pred[i : i + 1].float() / 255, target[i : i + 1].float() / 255)) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-7)
    # random stand-in weights under the real name are hashed and flagged, as Inception's are, in every result
    info = metric.weights_info()
    assert info["weights"] == ALEXNET_FILE and info["standard_weights"] is False and "not comparable" in info["warning"]
    assert info["weights_sha256"] == hashlib.sha256((ckpt / ALEXNET_FILE).read_bytes()).hexdigest()
    from bench.evaluate import evaluate

    class View(torch.utils.data.Dataset):
        fixed_size = True

        def __len__(self):
            return 2

        def __getitem__(self, k):
            return target[k], k

        def item_id(self, k):
            return f"img{k}"

    from bench.methods.gray import Gray

    entry = evaluate(Gray(Gray.Params(), None), View(), {"lpips": metric}, device=torch.device("cpu"), progress=False).aggregates["lpips"]
    assert entry["standard_weights"] is False and entry["weights_sha256"] == info["weights_sha256"] and entry["mean"] > 0


def test_list_metrics_shows_availability_and_why(empty_torch_home, random_inception_file, monkeypatch) -> None:
    from click.testing import CliRunner

    from bench.cli import main

    def lines() -> dict[str, str]:
        out = CliRunner().invoke(main, ["list", "metrics"], catch_exceptions=False).output
        return {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}

    missing = lines()
    for name, file in (("is", INCEPTION_FILE), ("fid", INCEPTION_FILE), ("lpips", ALEXNET_FILE)):
        assert "UNAVAILABLE" in missing[name] and file in missing[name], missing[name]
        assert str(empty_torch_home / "hub" / "checkpoints") in missing[name]
    assert "[available]" in missing["psnr"] and "[available]" in missing["ciede2000"]
    monkeypatch.setenv("BENCH_INCEPTION_WEIGHTS", random_inception_file)
    found = lines()
    assert "[available]" in found["is"] and "[available]" in found["fid"] and "UNAVAILABLE" in found["lpips"]

"""autoencoder: the MSE losses in closed form, the RGB output keeping its own lightness (and psnr_l
reporting the drift, as scikit-image computes it), the ab output keeping the input's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import smooth_image
from skimage import color
from skimage.metrics import peak_signal_noise_ratio

from bench.color import AB_RANGE, lab_to_rgb, lab_to_rgb_uint8, rgb_to_lab
from bench.evaluate import colorize, colorize_full
from bench.metrics import METRICS, Batch, MetricOptions
from bench.recipes import build_method, load_recipe


def method(output: str):
    torch.manual_seed(0)
    m = build_method(load_recipe(f"autoencoder-{output}", "cpu", {"params.width": "8"}))
    if output == "rgb":
        with torch.no_grad():  # a head biased off grey, so the untrained output visibly has its own lightness
            m.net.head.bias.add_(0.7)
    return m.eval()


def photo(h: int = 40, w: int = 56) -> torch.Tensor:
    return torch.from_numpy(smooth_image(np.random.default_rng(2), h, w)).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.mark.parametrize("output", ["ab", "rgb"])
def test_loss_is_mse_of_the_chosen_output(output):
    m = method(output).train()
    rgb = photo()
    lab = rgb_to_lab(rgb)
    L, ab = lab[:, :1], lab[:, 1:]
    loss = next(m.training_step(L, ab, 0)).loss
    with torch.no_grad():
        raw = m.net(L)
    if output == "ab":
        want = F.mse_loss(torch.tanh(raw), ab / AB_RANGE)
    else:
        want = F.mse_loss(torch.sigmoid(raw), rgb.float() / 255)  # the ground truth in RGB (to float rounding)
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)


def test_rgb_output_keeps_its_own_lightness_and_psnr_l_reports_it():
    rgb = photo()
    L_in = rgb_to_lab(rgb)[:, :1]
    scores = {}
    for output in ("ab", "rgb"):
        m = method(output)
        assert m.predicts_lightness is (output == "rgb")
        with torch.no_grad():
            out = colorize(m, rgb)
            predicted = m.predict_lab(L_in)
        L_out = rgb_to_lab(out)[:, :1]
        if output == "rgb":  # the image is the network's RGB: its L, not the input's
            own = rgb_to_lab(torch.sigmoid(m.net(L_in)))[:, :1]
            assert torch.allclose(predicted[:, :1], own) and (L_out - own).abs().max() < 0.75
            assert (L_out - L_in).abs().mean() > 5
        else:
            assert torch.equal(predicted[:, :1], L_in) and (L_out - L_in).abs().mean() < 0.5  # rounding, gamut clipping
        metric = METRICS.get("psnr_l")(MetricOptions())
        scores[output] = metric.score_batch(Batch(out, rgb)).item()
        want = peak_signal_noise_ratio(color.rgb2lab(rgb[0].permute(1, 2, 0).numpy())[..., 0],
                                       color.rgb2lab(out[0].permute(1, 2, 0).numpy())[..., 0], data_range=100)
        assert scores[output] == pytest.approx(want, abs=1e-3)
    assert scores["ab"] > 40 > scores["rgb"]

    # below the image's size, the RGB variant's own L is upsampled with ab, not replaced by the input's L
    m = method("rgb")
    small = F.interpolate(L_in, size=(20, 28), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        up = F.interpolate(m.predict_lab(small), size=(40, 56), mode="bilinear", align_corners=False)
        assert torch.equal(colorize_full(m, rgb, work_size=20), lab_to_rgb_uint8(up))


def test_lab_to_rgb_of_the_input_is_the_rgb_target():
    rgb = photo()
    assert (lab_to_rgb(rgb_to_lab(rgb)) * 255 - rgb.float()).abs().max() < 1e-2

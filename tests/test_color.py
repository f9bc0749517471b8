"""bench.color against scikit-image's rgb2lab / lab2rgb / img_as_ubyte, the conversions the field uses."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from skimage import color, data, util

from bench.color import AB_RANGE, lab_to_rgb, lab_to_rgb_uint8, merge_lab, rgb_to_lab, split_lab

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
TOL = 1e-3  # the contract; measured deviations are ~6e-5 (rgb -> Lab, float32) and ~5e-6 (Lab -> rgb)


def chw(image: np.ndarray) -> torch.Tensor:
    """HWC numpy -> CHW torch on the test device."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(DEVICE)


def hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).cpu().numpy()


def sk_lab2rgb(lab: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # skimage warns about the negative z it clips; we test that we clip alike
        warnings.simplefilter("ignore", UserWarning)
        return color.lab2rgb(lab)


def random_lab(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform over the Lab box L [0, 100], a, b [-128, 127]: mostly outside the sRGB gamut."""
    return np.stack(
        [rng.uniform(0, 100, (size, size)), rng.uniform(-128, 127, (size, size)), rng.uniform(-128, 127, (size, size))],
        axis=-1,
    )


PHOTOS = {name: getattr(data, name)()[64:192, 64:192] for name in ("astronaut", "chelsea", "coffee")}


def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {**PHOTOS, "random": rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)}


@pytest.mark.parametrize("name", list(images()))
def test_rgb_to_lab_uint8_matches_skimage(name: str) -> None:
    image = images()[name]
    lab = rgb_to_lab(chw(image))
    assert lab.dtype == torch.float32 and lab.shape == (3, *image.shape[:2])
    np.testing.assert_allclose(hwc(lab), color.rgb2lab(image), rtol=0, atol=TOL)


def test_rgb_to_lab_float_matches_skimage() -> None:
    image = np.random.default_rng(1).random((64, 64, 3))
    lab = rgb_to_lab(chw(image).float())
    np.testing.assert_allclose(hwc(lab), color.rgb2lab(image.astype(np.float32)), rtol=0, atol=TOL)


def test_float64_path_is_float64_and_tight() -> None:
    image = np.random.default_rng(2).random((48, 48, 3))
    lab = rgb_to_lab(chw(image))
    assert lab.dtype == torch.float64
    np.testing.assert_allclose(hwc(lab), color.rgb2lab(image), rtol=0, atol=1e-9)
    rgb = lab_to_rgb(lab)
    assert rgb.dtype == torch.float64
    np.testing.assert_allclose(hwc(rgb), color.lab2rgb(color.rgb2lab(image)), rtol=0, atol=1e-9)


def test_uint8_and_float_inputs_agree() -> None:
    image = chw(images()["random"])
    torch.testing.assert_close(rgb_to_lab(image), rgb_to_lab(image.float() / 255.0), rtol=0, atol=1e-5)


def test_batch_dims() -> None:
    stack = torch.stack([chw(p) for p in PHOTOS.values()])  # (3, 3, H, W)
    batched = rgb_to_lab(stack)
    assert batched.shape == stack.shape
    for i, image in enumerate(stack):
        torch.testing.assert_close(batched[i], rgb_to_lab(image), rtol=0, atol=1e-5)
    nested = rgb_to_lab(stack.view(1, 3, 3, 128, 128))
    torch.testing.assert_close(nested[0], batched, rtol=0, atol=0)
    torch.testing.assert_close(lab_to_rgb(batched)[1], lab_to_rgb(batched[1]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lab_to_rgb_out_of_gamut_matches_skimage(dtype: torch.dtype) -> None:
    lab = random_lab(np.random.default_rng(3), 128)
    assert ((lab[..., 0] + 16) / 116 - lab[..., 2] / 200 < 0).mean() > 0.05  # the z < 0 clip is exercised
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unlike skimage, we never warn
        rgb = lab_to_rgb(chw(lab).to(dtype))
    assert rgb.dtype == dtype and float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    np.testing.assert_allclose(hwc(rgb), sk_lab2rgb(lab), rtol=0, atol=TOL if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("name", list(PHOTOS))
def test_round_trip_of_photos(name: str) -> None:
    image = PHOTOS[name]
    rgb = lab_to_rgb(rgb_to_lab(chw(image)))
    np.testing.assert_allclose(hwc(rgb), color.lab2rgb(color.rgb2lab(image)), rtol=0, atol=TOL)
    np.testing.assert_array_equal(hwc(lab_to_rgb_uint8(rgb_to_lab(chw(image)))), image)  # lossless in uint8


def test_lab_to_rgb_uint8_float64_equals_img_as_ubyte() -> None:
    lab = random_lab(np.random.default_rng(4), 128)
    ours = lab_to_rgb_uint8(chw(lab))
    assert ours.dtype == torch.uint8
    np.testing.assert_array_equal(hwc(ours), util.img_as_ubyte(sk_lab2rgb(lab)))


def test_lab_to_rgb_uint8_float32_off_by_one_at_most_rarely() -> None:
    # float32 vs skimage's float64: values within ~1e-5 of a .5 step may round the other way.
    # Measured: 104 of 12e6 values (8.7e-6), never more than 1 step.
    lab = random_lab(np.random.default_rng(5), 256)
    ours = hwc(lab_to_rgb_uint8(chw(lab).float())).astype(int)
    diff = np.abs(ours - util.img_as_ubyte(sk_lab2rgb(lab)).astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-4


def test_rounding_is_half_to_even_like_img_as_ubyte() -> None:
    # The convention lab_to_rgb_uint8 relies on: torch.round and img_as_ubyte's np.rint both round .5 to even.
    halves = torch.tensor([0.5, 1.5, 2.5, 254.5]) / 255.0
    assert util.img_as_ubyte(halves.double().numpy()).tolist() == torch.round(halves.double() * 255).tolist()


def test_fast_float32_path_matches_the_float64_reference() -> None:
    # uint8/float32 images take the fast path (bench.color docstring), float64 the reference formulas.
    levels = torch.arange(0, 256, 2, dtype=torch.uint8, device=DEVICE)
    r, g, b = torch.meshgrid(levels, levels, levels, indexing="ij")
    rgb = torch.stack([r, g, b]).reshape(3, 128, -1)  # an eighth of all sRGB colours
    np.testing.assert_allclose(rgb_to_lab(rgb).cpu().numpy(), rgb_to_lab(rgb.double() / 255.0).cpu().numpy(), rtol=0, atol=1e-4)
    lab = chw(random_lab(np.random.default_rng(7), 256))
    np.testing.assert_allclose(lab_to_rgb(lab.float()).cpu().numpy(), lab_to_rgb(lab).cpu().numpy(), rtol=0, atol=3e-5)


def test_ab_range_covers_srgb_gamut() -> None:
    levels = torch.tensor([*range(0, 256, 15), 255], dtype=torch.uint8, device=DEVICE)
    r, g, b = torch.meshgrid(levels, levels, levels, indexing="ij")
    lab = rgb_to_lab(torch.stack([r, g, b]).reshape(3, -1, 1))
    ab = lab[1:].abs().max()
    assert 100.0 < float(ab) <= AB_RANGE  # measured over all 256**3 colours: 107.86 (pure blue's b)


def test_split_merge() -> None:
    lab = rgb_to_lab(chw(images()["random"])).unsqueeze(0)
    L, ab = split_lab(lab)
    assert L.shape == (1, 1, 64, 80) and ab.shape == (1, 2, 64, 80)
    torch.testing.assert_close(merge_lab(L, ab), lab, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 1, H, W\)"):
        merge_lab(ab, L)


def test_gradients_are_finite() -> None:
    rgb = torch.tensor([0.0, 0.01, 0.04045, 0.5, 1.0], device=DEVICE).view(1, 5, 1).expand(3, 5, 1).clone()
    rgb.requires_grad_(True)
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab = chw(random_lab(np.random.default_rng(6), 16)).float().requires_grad_(True)
    lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\).*\(4, 8, 8\)"):
        rgb_to_lab(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="channels at dim -3"):
        lab_to_rgb(torch.zeros(8, 8, 3))
    with pytest.raises(TypeError, match="uint8"):
        rgb_to_lab(torch.zeros(3, 8, 8, dtype=torch.int32))

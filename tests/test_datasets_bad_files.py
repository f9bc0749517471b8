"""Every kind of unusual file: converted the documented way, or skipped and named; nothing silently."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.datasets import DATASETS, BadImage
from bench.datasets.io import decode_image
from conftest import result_file, smooth_image


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): (H, W) gray or (H, W, 3) RGB."""
    h, w = arr.shape[:2]
    colour = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def rgb_of(path):
    img, info = decode_image(path)
    return img.permute(1, 2, 0).numpy().astype(int), info


@pytest.fixture
def colour(tmp_path):
    return smooth_image(np.random.default_rng(0), 40, 48)


def test_truncated_and_corrupt_files_are_refused_by_name(tmp_path, colour):
    Image.fromarray(colour).save(tmp_path / "ok.png")
    Image.fromarray(colour).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:300])
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:400])
    (tmp_path / "text.jpg").write_text("this is not a picture")
    for name in ("cut.png", "cut.jpg", "text.jpg"):
        with pytest.raises(BadImage, match=name):
            decode_image(tmp_path / name)


def test_rgba_is_composited_on_white(tmp_path, colour):
    alpha = np.zeros((40, 48), np.uint8)
    alpha[:, 16:32], alpha[:, 32:] = 128, 255
    Image.fromarray(np.dstack([colour, alpha])).save(tmp_path / "a.png")
    got, info = rgb_of(tmp_path / "a.png")
    want = np.round(colour * (alpha[..., None] / 255) + 255 * (1 - alpha[..., None] / 255))
    assert np.abs(got - want).max() <= 1 and (got[:, :16] == 255).all()
    assert info.mode == "RGBA" and info.conversions == ["alpha: composited on white"]


def test_palette_with_and_without_transparency(tmp_path, colour):
    p = Image.fromarray(colour).quantize(16)
    p.save(tmp_path / "p.png")
    got, info = rgb_of(tmp_path / "p.png")
    lut = np.array(p.getpalette()[: 3 * 256]).reshape(-1, 3)
    assert np.array_equal(got, lut[np.asarray(p)]) and info.conversions == ["palette: expanded"]
    idx = int(np.asarray(p)[0, 0])
    p.save(tmp_path / "pt.png", transparency=idx)
    got, info = rgb_of(tmp_path / "pt.png")
    clear = np.asarray(p) == idx
    assert (got[clear] == 255).all() and np.array_equal(got[~clear], lut[np.asarray(p)][~clear])


def test_grayscale_is_replicated_and_flagged(tmp_path, colour):
    gray = colour.mean(axis=2).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    got, info = rgb_of(tmp_path / "l.png")
    assert all(np.array_equal(got[..., c], gray) for c in range(3)) and info.gray
    Image.fromarray(np.dstack([gray] * 3)).save(tmp_path / "gray_rgb.jpg", quality=85)  # gray stored as RGB
    assert rgb_of(tmp_path / "gray_rgb.jpg")[1].gray
    sepia = np.clip(np.dstack([gray * 1.0, gray * 0.85, gray * 0.6]), 0, 255).astype(np.uint8)
    Image.fromarray(sepia).save(tmp_path / "sepia.jpg", quality=85)
    assert not rgb_of(tmp_path / "sepia.jpg")[1].gray
    assert not rgb_of(_save(tmp_path / "c.png", colour))[1].gray


def _save(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


def test_cmyk_uses_pillows_conversion(tmp_path):
    # Flat CMYK patches: R = (255 - C)(255 - K) / 255 and so on.
    cmyk = np.zeros((32, 64, 4), np.uint8)
    cmyk[:, :32] = [255, 0, 0, 0]  # cyan
    cmyk[:, 32:] = [0, 200, 200, 55]  # a dark red
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=95)
    got, info = rgb_of(tmp_path / "c.jpg")
    assert info.mode == "CMYK" and info.conversions == ["CMYK: converted"]
    want = lambda c, m, y, k: [(255 - v) * (255 - k) / 255 for v in (c, m, y)]
    assert np.abs(got[16, 8] - want(255, 0, 0, 0)).max() <= 4
    assert np.abs(got[16, 56] - want(0, 200, 200, 55)).max() <= 4


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 48 * 40).round().astype(np.uint16).reshape(40, 48)
    (tmp_path / "g16.png").write_bytes(png16(ramp))
    got, info = rgb_of(tmp_path / "g16.png")
    assert np.array_equal(got[..., 0], np.round(ramp.astype(float) * 255 / 65535)) and info.gray
    assert got.min() == 0 and got.max() == 255 and len(np.unique(got)) > 200  # Pillow alone gives all-white
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 40000)], axis=2)
    (tmp_path / "c16.png").write_bytes(png16(rgb))
    got, info = rgb_of(tmp_path / "c16.png")
    assert np.abs(got - rgb.astype(float) * 255 / 65535).max() <= 1 and info.conversions == ["16-bit: high byte"]


def test_exif_orientation_is_applied(tmp_path, colour):
    stored = colour.copy()
    stored[:10, :10] = [255, 0, 0]  # red at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    got, info = rgb_of(tmp_path / "r.jpg")
    with Image.open(tmp_path / "r.jpg") as im:
        decoded_as_stored = np.asarray(im.convert("RGB")).astype(int)
    shown = np.rot90(decoded_as_stored, k=-1)  # clockwise, as orientation 6 asks
    assert got.shape == (48, 40, 3) and (info.width, info.height) == (40, 48)
    assert np.array_equal(got, shown) and info.conversions == ["exif: rotated"]
    assert got[3, -3, 0] > 200 and got[3, -3, 1] < 60  # red now at the top-right


def test_unsupported_mode_is_refused(tmp_path):
    Image.fromarray(np.ones((40, 40), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(BadImage, match=r"f\.tif: unsupported pixel mode 'F'"):
        decode_image(tmp_path / "f.tif")


# -------------------------------------------------------------------------- through a loader and the CLI


def _bad_folder(root, colour):
    """A landscape-like folder where every kind of unusual file appears once, named to its kind."""
    root.mkdir()
    for i in range(6):
        _save(root / f"good{i}.jpg", np.roll(colour, 7 * i, axis=1))
    _save(root / "good.png", colour)
    (root / "truncated.png").write_bytes((root / "good.png").read_bytes()[:200])
    (root / "not_an_image.jpg").write_text("hello")
    (root / "notes.txt").write_text("a stray text file")
    _save(root / "tiny.png", colour[:10, :12])
    _save(root / "gray.png", colour.mean(axis=2).astype(np.uint8))
    _save(root / "rgba.png", np.dstack([colour, np.full((40, 48), 200, np.uint8)]))
    return root


BAD = {"truncated.png": "cannot decode", "not_an_image.jpg": "cannot decode", "tiny.png": "too small: 12x10 px"}


@pytest.mark.parametrize("dataset", ["landscape", "folder"])
def test_loader_skips_and_names_bad_files(tmp_path, colour, dataset):
    root = _bad_folder(tmp_path / "photos", colour)
    sets = [DATASETS.get(dataset)(s, root) for s in ("train", "test")]
    skipped = {s["id"]: s["reason"] for ds in sets for s in ds.skipped}
    assert set(skipped) == set(BAD) and all(BAD[k] in v for k, v in skipped.items())
    assert sum(len(ds) for ds in sets) == 9  # 7 good + gray + rgba
    assert {i for ds in sets for i in ds.ignored} == {"notes.txt"}
    assert {i for ds in sets for i in ds.gray} == {"gray.png"}
    converted = {}
    for ds in sets:
        for k, n in ds.identity()["converted"].items():
            converted[k] = converted.get(k, 0) + n
    assert converted == {"alpha: composited on white": 1, "gray: replicated": 1}
    lines = "\n".join(line for ds in sets for line in ds.report())
    assert all(name in lines for name in BAD) and "notes.txt" in lines and "gray.png" in lines
    with pytest.raises(BadImage) as err:
        for s in ("train", "test"):
            DATASETS.get(dataset)(s, root, on_bad_image="error")
    assert "--on-bad-image skip" in str(err.value) and any(name in str(err.value) for name in BAD)


def test_scan_is_cached_by_file_fingerprint(tmp_path, colour, monkeypatch):
    import bench.datasets._scan as scan

    root = _bad_folder(tmp_path / "photos", colour)
    for s in ("train", "test"):
        DATASETS.get("landscape")(s, root)
    decoded = []
    real = scan.decode_image
    monkeypatch.setattr(scan, "decode_image", lambda p: decoded.append(p.name) or real(p))
    for s in ("train", "test"):
        DATASETS.get("landscape")(s, root)
    assert decoded == []  # nothing changed: nothing decoded again
    target = root / "good0.jpg"
    _save(target, colour[::-1].copy())
    for s in ("train", "test"):
        DATASETS.get("landscape")(s, root)
    assert decoded == [target.name]


def test_small_images_are_upscaled_for_crops_and_reported(tmp_path, colour):
    from bench.datasets.views import TrainCrops

    root = tmp_path / "p"
    root.mkdir()
    for i in range(8):
        _save(root / f"{i}.png", colour)  # 40 x 48: above the 32-px minimum, below a 64-px crop
    ds = DATASETS.get("folder")("train", root)
    assert TrainCrops(ds, 64, seed=0)[0].shape == (3, 64, 64)
    assert any("below the 256-px training size" in line and "upscaled" in line for line in ds.report(crop=64))


def test_cli_names_skipped_files_in_output_and_result(tmp_path, colour, results):
    from bench.cli import main

    root = _bad_folder(tmp_path / "photos", colour)
    r = CliRunner().invoke(main, ["run", "--methods", "gray", "--dataset", "folder", "--root", str(root),
                                  "--split", "all", "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for name in BAD:
        assert name in r.output
    assert "truly grayscale" in r.output and "gray.png" in r.output and "notes.txt" in r.output
    skipped = {}
    for split in ("train", "test"):
        res = json.loads(result_file(results / "eval" / "folder" / split, "gray").read_text())
        assert res["dataset"]["official"] is None and res["dataset"]["n_images"] == res["n_images"]
        skipped.update({s["id"]: s["reason"] for s in res["dataset"]["skipped"]})
    assert set(skipped) == set(BAD)
    r = CliRunner().invoke(main, ["run", "--methods", "gray", "--dataset", "folder", "--root", str(root),
                                  "--split", "all", "--no-progress", "--on-bad-image", "error"])
    assert r.exit_code == 2 and any(name in r.output for name in BAD)  # a usage error, before any work


def test_train_and_train_all_honour_on_bad_image(tmp_path, colour, results):
    from bench.cli import main

    root = _bad_folder(tmp_path / "photos", colour)
    for cmd in (["train", "--method", "kmeans32"], ["train-all", "--methods", "kmeans32"]):
        r = CliRunner().invoke(main, [*cmd, "--dataset", "folder", "--root", str(root), "--on-bad-image", "error", "--no-progress"])
        assert r.exit_code == 2 and any(name in r.output for name in BAD)  # a usage error, before any work, r.output
    assert not (results / "train").exists() or not list((results / "train").rglob("checkpoint.pt"))

"""The CUDA path of the trainer and the evaluation: skipped where there is no GPU (CI has none).

Run on a GPU machine with ``benchmarks/gpu_check.sh`` (it also runs the colour and metric tests on CUDA
through BENCH_DEVICE=cuda). Every trainable method's GPU recipe trains a few steps there under its autocast
(bf16 where the GPU has it) with channels_last weights; fp16 with a CUDA GradScaler; resume; and an
evaluation on CUDA scores what the same checkpoint scores on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.datasets import DATASETS
from bench.recipes import load_recipe
from bench.train import train
from conftest import result_file

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
# The GPU recipes (workers, prefetch, pinned memory, amp, channels_last) at a size that runs in seconds.
SMALL = {"train.steps": "6", "train.batch_size": "8", "train.image_size": "64", "train.prepare_images": "16",
         "train.log_every": "2", "train.ckpt_every": "3", "train.num_workers": "2"}


@pytest.fixture(scope="module")
def data():
    return DATASETS.get("samples")("train")


@pytest.mark.parametrize("name", ["kmeans32", "zhang-small", "unet", "cgan", "wgan_gp", "autoencoder-rgb", "grid361-topk", "zhang-vgg19"])
def test_gpu_recipe_trains_under_autocast(data, tmp_path, name):
    recipe = load_recipe(name, "gpu", {**SMALL, **({"params.n_critic": "2"} if name == "wgan_gp" else {})})
    assert recipe.train.amp and recipe.train.channels_last
    out = train(recipe, data, results=tmp_path, device=CUDA, progress=False)
    assert out.status == "done" and out.images_per_s > 0
    meta = json.loads((out.run_dir / "train.json").read_text())
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert meta["throughput"]["matmul_dtype"] == expected
    assert meta["throughput"]["train_flops_per_image"] > 0 and 0 < meta["throughput"]["fraction_of_matmul"] < 1
    ckpt = load_checkpoint(out.run_dir / "checkpoint.pt")  # onto the CPU
    assert ckpt["step"] == 6 and "cuda" in ckpt["rng"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    losses = (out.run_dir / "losses.csv").read_text().splitlines()
    assert len(losses) == 4 and "nan" not in "".join(losses[1:]).lower()


def test_fp16_grad_scaler_on_cuda(data, tmp_path, monkeypatch):
    import bench.train as bt

    monkeypatch.setattr(bt, "autocast_for", lambda device, enabled: bt.mixed_precision("cuda", torch.float16))
    out = train(load_recipe("unet", "gpu", {**SMALL, "train.grad_clip": "1.0"}), data, results=tmp_path,
                device=CUDA, progress=False)
    ckpt = load_checkpoint(out.run_dir / "checkpoint.pt")
    assert out.status == "done" and ckpt["scaler"] is not None and ckpt["scaler"]["scale"] > 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_interrupted_cuda_run_resumes(data, tmp_path, interrupt_training):
    recipe = load_recipe("kmeans32", "gpu", SMALL)
    disarm = interrupt_training(recipe, 3)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, data, results=tmp_path, device=CUDA, progress=False)
    disarm()
    out = train(recipe, data, results=tmp_path, device=CUDA, progress=False)
    meta = json.loads((out.run_dir / "train.json").read_text())
    assert out.status == "done" and meta["resumed_from_step"] == 3


def test_cuda_evaluation_scores_what_cpu_scores(tmp_path):
    """One checkpoint trained on CUDA, scored on CUDA and on CPU (training is skipped the second time)."""
    args = ["--results", str(tmp_path), "run", "--methods", "kmeans32", "--dataset", "samples", "--recipe", "gpu",
            "--no-progress", "--bootstrap", "0", "--metrics", "psnr,ssim,ciede2000,colorfulness",
            *[a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]]
    scored = {}
    for device in ("cuda", "cpu"):
        out = subprocess.run([sys.executable, "-m", "bench", *args, "--device", device], capture_output=True, text=True,
                             timeout=600, env={**os.environ})
        assert out.returncode == 0, out.stderr[-3000:]
        # the device is no part of a result's identity: the CPU run replaces the CUDA run's file
        scored[device] = json.loads(result_file(tmp_path / "eval" / "samples" / "test", "kmeans32").read_text())["metrics"]
    for name in ("psnr", "ssim", "ciede2000", "colorfulness"):
        # TF32 convolutions on CUDA move a few outputs by one uint8 level; means stay within these bounds.
        tol = {"psnr": 0.05, "ssim": 1e-3, "ciede2000": 0.05, "colorfulness": 0.1}[name]
        assert abs(scored["cuda"][name]["mean"] - scored["cpu"][name]["mean"]) < tol, name


# ---------------------------------------------------------------------------------------------- data path


def _jpeg_div2k(root: Path) -> Path:
    """DIV2K's layout of JPEGs: plain RGB photos (nvJPEG decodes them), one gray and one EXIF-rotated (Pillow does)."""
    import numpy as np
    from PIL import Image

    from conftest import smooth_image

    rng = np.random.default_rng(0)
    for split, first, n in (("DIV2K_train_HR", 1, 5), ("DIV2K_valid_HR", 801, 2)):
        folder = root / split
        folder.mkdir(parents=True)
        for k in range(first, first + n):
            Image.fromarray(smooth_image(rng, 150, 200)).save(folder / f"{k:04d}.jpg", quality=92)
    Image.fromarray(smooth_image(rng, 150, 200)).convert("L").save(root / "DIV2K_train_HR" / "0006.jpg")
    rotated = Image.fromarray(smooth_image(rng, 150, 200))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / "DIV2K_train_HR" / "0007.jpg", exif=exif)
    return root


def test_gpu_jpeg_decoding_matches_the_cpu(tmp_path):
    from bench.datasets.pixels import CudaJpegPixels, pixel_source

    images = DATASETS.get("div2k")("train", _jpeg_div2k(tmp_path))
    source = pixel_source(images, None, cache=False, device=CUDA)
    assert isinstance(source, CudaJpegPixels)
    for i, path in enumerate(images.files):
        got, want = source.image(i), images.load(i)
        assert got.device.type == "cuda" and got.dtype == torch.uint8 and got.shape == want.shape, path.name
        diff = (got.cpu().int() - want.int()).abs().float()
        if path.stem in ("0006", "0007"):  # gray and rotated: Pillow's conversions, on the CPU, exactly
            assert diff.max() == 0, path.name
        else:  # nvJPEG rounds its IDCT and chroma upsampling its own way
            assert diff.mean() < 1.5, (path.name, float(diff.mean()))
    scaled = pixel_source(images, 64, cache=False, device=CUDA)  # resized on the GPU
    assert min(scaled.image(0).shape[-2:]) == 64 and scaled.image(0).device.type == "cuda"


def test_no_cache_run_on_cuda_decodes_jpegs_on_the_gpu(tmp_path):
    """``bench run --no-cache`` on JPEGs: crops and evaluation images from nvJPEG (the loader then runs in
    the training process), scores close to those of the cached (CPU-decoded) pixels."""
    from click.testing import CliRunner

    from bench.cli import main

    root = _jpeg_div2k(tmp_path / "data")
    scored = {}
    for flag in ("--no-cache", None):
        res = tmp_path / ("nocache" if flag else "cache")
        args = ["--results", str(res), "run", "--methods", "kmeans32", "--dataset", "div2k", "--root", str(root),
                "--recipe", "gpu", "--device", "cuda", "--no-progress", "--bootstrap", "0", "--metrics", "psnr,ssim",
                *[a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")], *([flag] if flag else [])]
        out = CliRunner().invoke(main, args)
        assert out.exit_code == 0, out.output[-3000:]
        train_meta = json.loads(next(res.rglob("train.json")).read_text())
        result = json.loads((res / "eval" / "div2k" / "test" / "kmeans32-s0.json").read_text())
        want = "gpu-jpeg" if flag else "cache"
        assert train_meta["pixels"]["source"] == want and result["timings"]["pixels"]["source"] == want
        scored[want] = result["metrics"]
    assert abs(scored["gpu-jpeg"]["psnr"]["mean"] - scored["cache"]["psnr"]["mean"]) < 1.0


def test_prefetched_batches_are_pinned_for_non_blocking_copies():
    from bench.device import prefetch

    batches = [(torch.full((2, 3, 8, 8), k, dtype=torch.uint8), torch.tensor([k, k])) for k in range(3)]
    for k, (rgb, idx) in enumerate(prefetch(iter(batches), pin=True)):
        assert rgb.is_pinned() and idx.is_pinned()
        on_gpu = rgb.to(CUDA, non_blocking=True)
        torch.cuda.synchronize()
        assert torch.equal(on_gpu.cpu(), batches[k][0])

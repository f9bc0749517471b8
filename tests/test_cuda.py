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

"""The training loop: determinism, bit-identical resume after a real kill -9, NaN guard, safe checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bench.checkpoint import CheckpointError, load_checkpoint
from bench.datasets import DATASETS
from bench.methods import METHODS
from bench.methods.base import Method, Update
from bench.recipes import load_recipe
from bench.train import TrainingDiverged, train

SMALL = {"train.steps": "6", "train.batch_size": "2", "train.image_size": "32", "train.prepare_images": "4",
         "train.log_every": "2", "train.ckpt_every": "2"}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data():
    return DATASETS.get("samples")("train")


def test_same_seed_same_weights_other_seed_differs(data, tmp_path):
    r = load_recipe("kmeans32", "cpu", SMALL)
    a = train(r, data, results=tmp_path / "a", seed=3, progress=False)
    b = train(r, data, results=tmp_path / "b", seed=3, progress=False)
    c = train(r, data, results=tmp_path / "c", seed=4, progress=False)
    assert same(weights(a.run_dir), weights(b.run_dir))
    assert not same(weights(a.run_dir), weights(c.run_dir))


def test_trained_run_is_skipped(data, tmp_path):
    r = load_recipe("kmeans32", "cpu", SMALL)
    assert train(r, data, results=tmp_path, progress=False).status == "done"
    assert train(r, data, results=tmp_path, progress=False).status == "skipped"
    again = train(r, data, results=tmp_path, progress=False, resume=False)  # --restart trains anew
    assert again.status == "done" and again.steps == 6


def test_resume_after_kill_is_bit_identical(tmp_path):
    """Kill a real training process with SIGKILL after its first checkpoint; resume; compare weights."""
    args = ["--results", "{res}", "train", "--method", "kmeans32", "--dataset", "samples", "--no-progress",
            "--set", "train.steps=60", "--set", "train.ckpt_every=5", "--set", "train.batch_size=4",
            "--set", "train.image_size=32", "--set", "train.prepare_images=8", "--set", "train.log_every=5"]
    cmd = lambda res: [sys.executable, "-m", "bench.cli", *[a.format(res=res) for a in args]]
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    ref = tmp_path / "ref"
    subprocess.run(cmd(ref), check=True, env=env, capture_output=True, timeout=300)

    res = tmp_path / "killed"
    proc = subprocess.Popen(cmd(res), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    ckpts: list[Path] = []
    while time.time() < deadline and not ckpts:
        ckpts = list(res.glob("train/kmeans32/*/checkpoint.pt"))
        time.sleep(0.01)
    assert ckpts, "no checkpoint appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = ckpts[0].parent
    meta = json.loads((run_dir / "train.json").read_text())
    assert meta["status"] == "running", "the kill must land mid-run for this test to mean anything"
    first = load_checkpoint(ckpts[0])
    killed_at, before = first["step"], first["seconds"]
    assert 0 < killed_at < 60 and before > 0

    subprocess.run(cmd(res), check=True, env=env, capture_output=True, timeout=300)
    again = json.loads((run_dir / "train.json").read_text())
    assert again["status"] == "done" and again["resumed_from_step"] == killed_at
    # the time of both sessions (the first up to its checkpoint), and when the run first started
    assert again["seconds"] == pytest.approx(before + again["session_seconds"], abs=2e-3) and again["started"] == meta["started"]
    ref_dir = next(ref.glob("train/kmeans32/*"))
    assert ref_dir.name == run_dir.name  # same identity hash
    assert same(weights(ref_dir), weights(run_dir))
    ref_losses = (ref_dir / "losses.csv").read_text().splitlines()
    res_losses = (run_dir / "losses.csv").read_text().splitlines()
    col = lambda lines: [l.rsplit(",", 1)[0] for l in lines]  # images/s differs between runs
    assert col(ref_losses) == col(res_losses)


@dataclass(frozen=True)
class NanParams:
    nan_at: int = 3


class NanAt(Method):
    """Test method whose loss turns NaN at a chosen step."""

    Params = NanParams
    recipe = {"adapter": "test-nan", "training": "supervised"}

    def __init__(self, params, train):
        super().__init__(params, train)
        self.w = torch.nn.Parameter(torch.zeros(2))

    def training_step(self, L, ab, step):
        loss = (self.w.view(1, 2, 1, 1) - ab).abs().mean()
        if step >= self.params.nan_at:
            loss = loss * float("nan")
        yield Update("main", loss, {})

    def predict_ab(self, L):
        return self.w.view(1, 2, 1, 1).expand(L.shape[0], 2, *L.shape[2:])


@pytest.fixture
def nan_method():
    METHODS.add("test-nan", NanAt)
    yield
    METHODS._entries.pop("test-nan")


def test_nan_guard_stops_and_keeps_last_good_checkpoint(nan_method, data, tmp_path):
    r = load_recipe("test-nan", "cpu", {**SMALL, "params.nan_at": "3"})
    with pytest.raises(TrainingDiverged, match=r"NaN or inf at step 4.*last good checkpoint \(step 2\)"):
        train(r, data, results=tmp_path, progress=False)
    run_dir = next(tmp_path.glob("train/test-nan/*"))
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["step"] == 2 and torch.isfinite(ckpt["model"]["w"]).all()
    meta = json.loads((run_dir / "train.json").read_text())
    assert meta["status"] == "failed" and "TrainingDiverged" in meta["error"]


def test_checkpoint_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(path)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_fp16_with_grad_scaler_trains_and_resumes_bit_identically(data, tmp_path, monkeypatch, interrupt_training):
    """The GradScaler path of the loop (scale, unscale before clipping, step, update, the scaler in the
    checkpoint) on CPU: fp16 autocast with a CPU GradScaler in place of the CUDA pair autocast_for picks."""
    import bench.train as bt

    monkeypatch.setattr(bt, "autocast_for", lambda device, enabled: bt.mixed_precision("cpu", torch.float16))
    r = load_recipe("kmeans32", "cpu", {**SMALL, "train.grad_clip": "1.0"})
    straight = train(r, data, results=tmp_path / "straight", progress=False)
    ckpt = load_checkpoint(straight.run_dir / "checkpoint.pt")
    assert ckpt["scaler"]["scale"] == 65536.0 and ckpt["scaler"]["_growth_tracker"] == 6  # 6 unskipped steps
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())

    disarm = interrupt_training(r, 4)
    with pytest.raises(KeyboardInterrupt):
        train(r, data, results=tmp_path / "resumed", progress=False)
    run_dir = next((tmp_path / "resumed").glob("train/kmeans32/*"))
    assert load_checkpoint(run_dir / "checkpoint.pt")["scaler"]["_growth_tracker"] == 4
    disarm()
    resumed = train(r, data, results=tmp_path / "resumed", progress=False)
    assert resumed.status == "done" and same(weights(resumed.run_dir), weights(straight.run_dir))
    assert load_checkpoint(resumed.run_dir / "checkpoint.pt")["scaler"] == ckpt["scaler"]


def test_bf16_needs_no_scaler():
    from bench.train import mixed_precision

    autocast, scaler = mixed_precision("cpu", torch.bfloat16)
    with autocast():
        y = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert scaler is None and y.dtype == torch.bfloat16

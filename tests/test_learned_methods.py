"""unet, cgan, wgan_gp and the autoencoders: each learns (overfits 4 tiny images through the shared loop), the WGAN-GP
penalty against its closed form, bit-identical GAN resume, full-resolution colourisation, and the
pretrained-weights switch that never downloads."""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from conftest import smooth_image, write_folder_dataset
from PIL import Image

import bench.train as train_mod
from bench.checkpoint import load_checkpoint, load_trained
from bench.cli import main
from bench.color import lab_to_rgb_uint8, rgb_to_lab
from bench.datasets.base import ImageSet
from bench.evaluate import colorize, colorize_full
from bench.methods._nets import PretrainedWeightsMissing, ResNetEncoder, pretrained_file
from bench.methods.base import Method
from bench.methods.wgan_gp import gradient_penalty
from bench.metrics.functional import psnr
from bench.recipes import build_method, load_recipe
from bench.train import train

# Narrow networks: the architecture of each recipe, a fraction of its width (the tests' time budget).
NARROW = {"params.width": "8", "train.image_size": "48", "train.batch_size": "4",
          "train.prepare_images": "0", "train.log_every": "10", "train.ckpt_every": "1000"}
GENERATOR = {"params.decoder_width": "8"}  # the ResNet-UNet's decoder (unet, cgan, wgan_gp)


class TinySet(ImageSet):
    """Four fixed 48x48 photo-like images, in memory."""

    name = "tiny4"
    needs_root = False
    card_data = {"short_side": None, "eval": {"mode": "full"}}  # crops of the images as they are

    def __init__(self, images: list[torch.Tensor]):
        super().__init__("train")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, i: int) -> str:
        return f"img{i}"

    def load(self, i: int) -> torch.Tensor:
        return self.images[i]

    def fingerprint_parts(self) -> list[str]:
        return [hashlib.sha256(im.numpy().tobytes()).hexdigest() for im in self.images]


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    return TinySet([torch.from_numpy(smooth_image(rng, 48, 48)).permute(2, 0, 1).contiguous() for _ in range(4)])


def psnr_with_ab(rgb: torch.Tensor, ab: torch.Tensor) -> float:
    L = rgb_to_lab(rgb)[:, :1]
    return psnr(lab_to_rgb_uint8(torch.cat([L, ab.expand(len(rgb), 2, *L.shape[2:])], 1)), rgb).mean().item()


# (method, overrides, steps). 48 px, not 32: at 32 px the encoder's 1/32 stage is 1x1, so batch norm
# statistics come from 4 values per channel and eval mode (running statistics) lags far behind.
# wgan_gp runs 2 critic steps per generator step here (5 in its recipe) to fit the time budget.
LEARNERS = [
    ("unet", {**GENERATOR, "train.lr": "3e-3", "params.phase2_from_step": "30"}, 40),
    ("cgan", {**GENERATOR, "train.lr": "2e-3", "params.disc_width": "8"}, 60),
    ("wgan_gp", {**GENERATOR, "train.lr": "2e-3", "params.critic_width": "8", "params.n_critic": "2", "train.log_every": "1"}, 80),
    ("autoencoder-ab", {"train.lr": "3e-3", "train.batch_size": "8"}, 40),
    ("autoencoder-rgb", {"train.lr": "3e-3", "train.batch_size": "8"}, 40),
]


@pytest.mark.parametrize("name,overrides,steps", LEARNERS, ids=[n for n, _, _ in LEARNERS])
def test_overfits_four_images_beyond_gray(name, overrides, steps, tiny, tmp_path):
    recipe = load_recipe(name, "cpu", {**NARROW, **overrides, "train.steps": str(steps)})
    out = train(recipe, tiny, results=tmp_path, seed=0, device=torch.device("cpu"), progress=False)
    method = load_trained(recipe, out.run_dir, torch.device("cpu"))
    rgb = torch.stack([tiny.load(i) for i in range(len(tiny))])
    learned = psnr(colorize(method, rgb), rgb).mean().item()
    gray = psnr_with_ab(rgb, torch.zeros(1, 2, 1, 1))
    print(f"{name}: PSNR {learned:.2f} dB on the 4 training images, gray {gray:.2f} dB")
    assert learned >= gray + 1.0

    with open(out.run_dir / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = set(rows[0])
    expected = {
        "unet": {"loss_main", "l1", "mse", "ssim_loss"},
        "cgan": {"loss_disc", "loss_gen", "d_real", "d_fake", "g_adv", "g_l1"},
        "wgan_gp": {"loss_critic", "loss_gen", "w_dist", "gp", "g_adv", "g_l1"},
        "autoencoder-ab": {"loss_main", "mse"},
        "autoencoder-rgb": {"loss_main", "mse"},
    }[name]
    assert {"step", "images_per_s"} | expected <= cols
    assert int(rows[-1]["step"]) == steps
    if name == "unet":  # phase 2 (from step 30) minimises MSE + 1e-3 (1 - SSIM), phase 1 L1 + 1e-3 (1 - SSIM)
        for r in rows:
            pixel = r["mse"] if int(r["step"]) > 30 else r["l1"]
            assert float(r["loss_main"]) == pytest.approx(float(pixel) + 1e-3 * float(r["ssim_loss"]), abs=2e-6)
    if name == "wgan_gp":  # one critic step per step, a generator step every n_critic (2) steps
        assert all(r["loss_critic"] != "" for r in rows)
        assert [r["step"] for r in rows if r["loss_gen"] != ""] == [str(s) for s in range(2, steps + 1, 2)]


def test_gradient_penalty_closed_form():
    """For a linear critic D(L, ab) = <w, ab>, grad = w everywhere: penalty (||w|| - 1)^2 exactly."""
    torch.manual_seed(0)
    L = torch.rand(3, 1, 8, 8) * 100
    real, fake = torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    w = torch.randn(1, 2, 8, 8)
    w = w / w.norm()
    for scale, expected in [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)]:
        critic = lambda L_, ab, s=scale: (s * w * ab).sum(dim=(1, 2, 3)) + 0.1 * L_.mean(dim=(1, 2, 3))
        assert gradient_penalty(critic, L, real, fake).item() == pytest.approx(expected, abs=1e-6)
    # not 1-Lipschitz along the line (quadratic): positive, and it trains the critic (create_graph)
    a = torch.tensor(1.0, requires_grad=True)
    gp = gradient_penalty(lambda L_, ab: (a * ab.square()).sum(dim=(1, 2, 3)), L, real, fake)
    assert gp.item() > 0.1
    (g,) = torch.autograd.grad(gp, a)
    assert g.abs().item() > 0


def weights_and_optimizers(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    flat = {f"model.{k}": v for k, v in ckpt["model"].items()}
    for name, opt in ckpt["optimizers"].items():
        for pid, state in opt["state"].items():
            for k, v in state.items():
                flat[f"opt.{name}.{pid}.{k}"] = torch.as_tensor(v)
    return flat


@pytest.mark.parametrize("name,extra", [("cgan", {"params.disc_width": "8"}),
                                        ("wgan_gp", {"params.critic_width": "8", "params.n_critic": "3"})])
def test_gan_resume_is_bit_identical(name, extra, tiny, tmp_path, monkeypatch):
    """N steps straight == N/2 steps, interrupted, resumed to N: both networks and both optimisers."""
    recipe = load_recipe(name, "cpu", {**NARROW, **GENERATOR, **extra, "train.steps": "8", "train.ckpt_every": "4", "train.log_every": "2"})
    straight = train(recipe, tiny, results=tmp_path / "straight", seed=1, progress=False)

    real_save = train_mod.save_checkpoint

    def save_then_stop(path, method, optimizers, scaler, step, identity_hash, *rest, **options):
        real_save(path, method, optimizers, scaler, step, identity_hash, *rest, **options)
        if step == 4:
            raise KeyboardInterrupt  # as a user's Ctrl-C right after the mid-run checkpoint

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, tiny, results=tmp_path / "resumed", seed=1, progress=False)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    run_dir = next((tmp_path / "resumed").glob(f"train/{name}/*"))
    assert json.loads((run_dir / "train.json").read_text())["status"] == "interrupted"
    resumed = train(recipe, tiny, results=tmp_path / "resumed", seed=1, progress=False)
    assert json.loads((resumed.run_dir / "train.json").read_text())["resumed_from_step"] == 4

    a, b = weights_and_optimizers(straight.run_dir), weights_and_optimizers(resumed.run_dir)
    nets = {"cgan": ("generator.", "discriminator."), "wgan_gp": ("generator.", "critic.")}[name]
    assert all(any(k.startswith(f"model.{n}") for k in a) for n in nets)
    assert {k.split(".")[1] for k in a if k.startswith("opt.")} == {"gen", "disc" if name == "cgan" else "critic"}
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


class ConstantAB(Method):
    """Predicts one mild colour everywhere, at whatever size it is given (records the sizes)."""

    needs_training = False

    def __init__(self):
        super().__init__(None, None)
        self.sizes: list[tuple[int, int]] = []

    def predict_ab(self, L):
        self.sizes.append(tuple(L.shape[-2:]))
        return torch.tensor([12.0, -9.0]).view(1, 2, 1, 1).expand(L.shape[0], 2, *L.shape[2:])


def mid_tone_image(h: int, w: int, gray: bool = False) -> torch.Tensor:
    rng = np.random.default_rng(1)
    img = smooth_image(rng, h, w).astype(np.float64) * 0.5 + 64  # L about 30..75: the colour stays in gamut
    if gray:
        img = img.mean(axis=2, keepdims=True).repeat(3, axis=2)
    return torch.from_numpy(img.round().astype(np.uint8)).permute(2, 0, 1).contiguous()


def test_colorize_full_keeps_size_and_lightness():
    rgb = mid_tone_image(45, 70).unsqueeze(0)
    method = ConstantAB()
    out = colorize_full(method, rgb, work_size=16)
    assert out.shape == rgb.shape and out.dtype == torch.uint8
    assert method.sizes == [(16, 25)]  # predicted at the working scale, aspect kept
    lab_in, lab_out = rgb_to_lab(rgb), rgb_to_lab(out)
    assert (lab_out[:, 0] - lab_in[:, 0]).abs().max() < 0.75  # L kept up to uint8 rounding
    assert torch.allclose(lab_out[:, 1:].mean(dim=(2, 3)), torch.tensor([[12.0, -9.0]]), atol=0.5)
    assert torch.equal(colorize_full(method, rgb, None), colorize(method, rgb))  # None: full resolution


def test_colorize_command_full_resolution(tmp_path):
    """Train a narrow unet through the CLI, colourise a non-square colour photo and a gray one."""
    results, photos, out = tmp_path / "results", tmp_path / "photos", tmp_path / "out"
    data = write_folder_dataset(tmp_path / "data", n=6, size=(40, 48))
    photos.mkdir()
    Image.fromarray(mid_tone_image(45, 70).permute(1, 2, 0).numpy()).save(photos / "wide.png")
    Image.fromarray(mid_tone_image(61, 38, gray=True)[0].numpy()).save(photos / "tall.jpg", quality=95)
    common = ["--dataset", "folder", "--root", str(data), "--no-progress", "--set", "params.width=8", "--set", "params.decoder_width=8",
              "--set", "train.steps=2", "--set", "train.batch_size=2", "--set", "train.image_size=32"]
    runner = CliRunner()
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *common, str(photos / "wide.png"), "--out", str(out)])
    assert r.exit_code == 1 and "not trained" in r.output and "bench --results" in r.output and "train --method unet" in r.output
    r = runner.invoke(main, ["--results", str(results), "train", "-m", "unet", *common])
    assert r.exit_code == 0, r.output
    # Other settings than the trained run's: the runs that exist are listed with theirs, and how to use one.
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *[a if a != "train.steps=2" else "train.steps=3" for a in common],
                             "--seed", "1", str(photos / "wide.png"), "--out", str(out)])
    assert r.exit_code == 1 and "not trained on folder with these settings (seed 1, cpu recipe" in r.output
    run = next((results / "train" / "unet").iterdir()).name
    assert f"Runs of unet on folder under {results / 'train' / 'unet'}:" in r.output
    assert (f"  {run}: seed 0, cpu recipe, --set train.steps=2 --set train.batch_size=2 --set train.image_size=32 "
            "--set params.width=8 --set params.decoder_width=8; 2 steps") in r.output, r.output
    use = next((ln.split("use it with: ", 1)[1] for ln in r.output.splitlines() if "use it with: " in ln), r.output)
    assert "colorize --method unet --dataset folder" in use and "--seed 0 --recipe cpu --set train.steps=2" in use
    r = runner.invoke(main, shlex.split(use)[1:])  # the suggested command uses that run
    assert r.exit_code == 0 and (out / "wide.png").exists(), r.output
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *common, "--work-size", "32",
                             str(photos / "wide.png"), str(photos / "tall.jpg"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("wide", "tall"):
        src = torch.from_numpy(np.asarray(Image.open(photos / f"{name}.{'png' if name == 'wide' else 'jpg'}").convert("RGB")).copy())
        got = torch.from_numpy(np.asarray(Image.open(out / f"{name}.png")).copy())
        assert got.shape == src.shape
        L_in, L_out = rgb_to_lab(src.permute(2, 0, 1))[0], rgb_to_lab(got.permute(2, 0, 1))[0]
        assert (L_out - L_in).abs().mean() < 0.5  # L kept (gamut clipping of strong colours may move a few pixels)
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *common, str(out / "wide.png"), "--out", str(out)])
    assert r.exit_code == 2 and "overwrite" in r.output
    # A folder: every image file under it, its subfolders kept under --out.
    (photos / "more").mkdir()
    shutil.copy(photos / "tall.jpg", photos / "more" / "again.jpg")
    (photos / "notes.txt").write_text("not an image")
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *common, str(photos), "--out", str(tmp_path / "all")])
    assert r.exit_code == 0, r.output
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*.png")) == [
        "more/again.png", "tall.png", "wide.png"]
    # an unreadable input: named and left out (exit 1), or, with --on-bad-image error, refused before any work
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *common, str(photos), "--out", str(tmp_path / "skip")])
    assert r.exit_code == 1 and "1 of 4 images could not be read" in r.output and (tmp_path / "skip" / "wide.png").exists()
    r = runner.invoke(main, ["--results", str(results), "colorize", "-m", "unet", *common, "--on-bad-image", "error", str(photos),
                             "--out", str(tmp_path / "stop")])
    assert r.exit_code == 2 and "1 of 4 inputs cannot be read (--on-bad-image error)" in r.output and "broken.png" in r.output
    assert not (tmp_path / "stop").exists()


def test_encoder_matches_torchvision_resnet34():
    ours = ResNetEncoder((3, 4, 6, 3), 64).state_dict()
    theirs = {k: v for k, v in torchvision.models.resnet34().state_dict().items() if not k.startswith("fc.")}
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours if k != "conv1.weight")
    assert ours["conv1.weight"].shape == (64, 1, 7, 7)


def test_pretrained_missing_warns_and_records_random_init(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert pretrained_file("resnet34") == hub / "resnet34-b627a593.pth"
    # Through the trainer (ResNet18 encoder: the same code path at half the parameters, for time).
    expected = hub / "resnet18-f37072fd.pth"
    recipe = load_recipe("unet", "cpu", {"params.pretrained": "true", "params.encoder": "resnet18", "train.steps": "1",
                                         "train.batch_size": "2", "train.image_size": "32", "params.decoder_width": "8"})
    with pytest.warns(PretrainedWeightsMissing, match=str(expected).replace(".", r"\.")) as rec:
        out = train(recipe, tiny, results=tmp_path / "res", progress=False)
    assert "random initialisation" in str(rec[0].message) and "never downloads" in str(rec[0].message)
    info = json.loads((out.run_dir / "train.json").read_text())["method_info"]
    assert info["encoder_init"] == "random" and info["pretrained_requested"] is True
    assert info["pretrained_file"] == str(expected)

    # With the file in place (here: torchvision's randomly initialised ResNet34 in its saved format, a
    # stand-in: nothing is downloaded) the encoder starts from it, conv1's RGB filters summed.
    hub.mkdir(parents=True, exist_ok=True)
    reference = torchvision.models.resnet34().state_dict()
    torch.save(reference, hub / "resnet34-b627a593.pth")
    method = build_method(load_recipe("unet", "cpu", {"params.pretrained": "true"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method.prepare([])
    enc = method.generator.encoder.state_dict()
    assert torch.equal(enc["conv1.weight"], reference["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(enc["layer3.2.conv1.weight"], reference["layer3.2.conv1.weight"])
    assert method.extra_info()["encoder_init"] == "imagenet"
    # the checkpoint carries how the encoder started, whatever the cache holds when it is loaded
    fresh = build_method(load_recipe("unet", "cpu", {"params.pretrained": "true"}))
    fresh.load_state_dict(method.state_dict())
    assert fresh.extra_info()["encoder_init"] == "imagenet"

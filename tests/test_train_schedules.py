"""What the shared loop adds to follow a paper's training: learning-rate schedules (values at chosen steps,
per optimiser, through the loop), the weight EMA, gradient accumulation (N micro-batches = one batch N
times as large), validation curves on a held-out slice of the training split, and a resume in the middle
of all of them that is bit-identical on CPU."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

import bench.train as train_mod
from bench.averaging import WeightEMA
from bench.checkpoint import load_checkpoint, load_model_file, load_trained
from bench.config import ConfigError
from bench.datasets import DATASETS
from bench.datasets.views import resize_short
from bench.evaluate import colorize
from bench.methods import METHODS
from bench.methods.base import Method, Update
from bench.recipes import load_recipe
from bench.schedules import Schedule, lr_factor
from bench.train import train
from bench.validation import held_out_indices, hold_out

SMALL = {"train.steps": "6", "train.batch_size": "4", "train.image_size": "32", "train.prepare_images": "8",
         "train.log_every": "1", "train.ckpt_every": "2"}


@pytest.fixture(scope="module")
def data():
    return DATASETS.get("samples")("train")


# --------------------------------------------------------------------------------------------------
# Schedules: values at chosen steps


def test_paper_schedules_at_chosen_steps():
    zhang = Schedule(kind="step", milestones=(200000, 375000), factors=(1 / 3, 0.1))
    lr = lambda s: 3e-5 * lr_factor(zhang, s, 450000)  # noqa: E731
    for step, want in [(0, 3e-5), (199999, 3e-5), (200000, 1e-5), (374999, 1e-5), (375000, 3e-6), (449999, 3e-6)]:
        assert lr(step) == pytest.approx(want, rel=1e-12), step
    pix2pix = Schedule(kind="linear", decay_from=50000)  # constant, then linearly to 0 at the end of 100k steps
    assert [lr_factor(pix2pix, s, 100000) for s in (0, 50000, 75000, 99999)] == pytest.approx([1, 1, 0.5, 1 / 50000])
    wgan = Schedule(kind="linear")  # the WGAN-GP code's max(0, 1 - iteration / ITERS)
    assert [lr_factor(wgan, s, 1000) for s in (0, 1, 500, 999)] == pytest.approx([1, 0.999, 0.5, 0.001])
    cosine = Schedule(kind="cosine", warmup_steps=10, min_factor=0.1)  # warm-up 10, cosine over the other 100
    got = [lr_factor(cosine, s, 110) for s in (0, 4, 9, 10, 60, 109)]
    assert got == pytest.approx([0.1, 0.5, 1.0, 1.0, 0.55, 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 0.99))])
    assert [lr_factor(Schedule(warmup_steps=4), s, 10) for s in (0, 1, 3, 9)] == pytest.approx([0.25, 0.5, 1, 1])
    assert Schedule(kind="step", milestones=(200000,), factors=(0.5,)).beyond(6) == ["milestone 200000"]


@pytest.mark.parametrize("section,message", [
    ({"kind": "cosinus"}, "schedule.kind must be one of constant, step, cosine, linear"),
    ({"kind": "step", "milestones": [5, 3], "factors": [0.5, 0.1]}, "strictly increasing"),
    ({"kind": "step", "milestones": [5]}, "one factor per milestone"),
    ({"kind": "linear", "milestones": [5], "factors": [0.1]}, "belong to kind step"),
    ({"kind": "cosine", "min_factor": 2}, r"min_factor must be in \[0, 1\]"),
])
def test_bad_schedules_name_the_recipe_and_field(section, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe("kmeans32", "cpu", {f"train.schedule.{k}": str(v) for k, v in section.items()})
    assert "kmeans32.yaml" in str(err.value)


def test_bad_loop_settings_name_the_field():
    with pytest.raises(ConfigError, match="train.accumulate must be an integer >= 1"):
        load_recipe("kmeans32", "cpu", {"train.accumulate": "0"})
    with pytest.raises(ConfigError, match="batch_size 16 must be a multiple of train.accumulate 3"):
        load_recipe("kmeans32", "cpu", {"train.accumulate": "3"})
    with pytest.raises(ConfigError, match=r"train.ema_decay must be a number in \(0, 1\)"):
        load_recipe("kmeans32", "cpu", {"train.ema_decay": "1.5"})
    with pytest.raises(ConfigError, match="train.val_images must be an integer >= 1"):
        load_recipe("kmeans32", "cpu", {"train.val_images": "0"})
    with pytest.raises(ConfigError, match="train.val_every must be an integer >= 0"):
        load_recipe("kmeans32", "cpu", {"train.val_every": "-1"})


# --------------------------------------------------------------------------------------------------
# Two small methods without batch statistics, so that micro-batches can equal one batch exactly


@dataclass(frozen=True)
class TinyParams:
    width: int = 6


class TinyConv(Method):
    """Two convolutions regressing ab; logs the learning rate its optimiser steps with."""

    Params = TinyParams
    recipe = {"adapter": "test-tiny-conv", "training": "supervised"}

    def __init__(self, params, train):
        super().__init__(params, train)
        self.net = nn.Sequential(nn.Conv2d(1, params.width, 3, padding=1), nn.ReLU(), nn.Conv2d(params.width, 2, 3, padding=1))

    def configure_optimizers(self):
        self.opts = super().configure_optimizers()
        return self.opts

    def training_step(self, L, ab, step):
        loss = F.mse_loss(self.net(L / 50 - 1), ab / 110)
        yield Update("main", loss, {"lr": torch.tensor(self.opts["main"].param_groups[0]["lr"], dtype=torch.float64)})

    def predict_ab(self, L):
        return (self.net(L / 50 - 1) * 110).clamp(-110, 110)


class TinyGAN(TinyConv):
    """A discriminator step, then a generator step judged by the updated discriminator (as cgan)."""

    recipe = {"adapter": "test-tiny-gan", "training": "gan"}

    def __init__(self, params, train):
        super().__init__(params, train)
        self.disc = nn.Sequential(nn.Conv2d(3, params.width, 3, stride=2), nn.LeakyReLU(0.2), nn.Conv2d(params.width, 1, 3))

    def configure_optimizers(self):
        t = self.train_cfg
        self.opts = {name: torch.optim.Adam(net.parameters(), lr=t.lr, betas=t.betas)
                     for name, net in (("disc", self.disc), ("gen", self.net))}
        return self.opts

    def training_step(self, L, ab, step):
        x = L / 50 - 1
        fake = self.net(x)
        d = lambda y: self.disc(torch.cat([x, y], 1))  # noqa: E731
        d_loss = F.softplus(-d(ab / 110)).mean() + F.softplus(d(fake.detach())).mean()
        yield Update("disc", d_loss, {"lr_disc": torch.tensor(self.opts["disc"].param_groups[0]["lr"], dtype=torch.float64)})
        for p in self.disc.parameters():
            p.requires_grad_(False)
        g_loss = F.softplus(-d(fake)).mean() + 10 * F.l1_loss(fake, ab / 110)
        for p in self.disc.parameters():
            p.requires_grad_(True)
        yield Update("gen", g_loss, {"lr_gen": torch.tensor(self.opts["gen"].param_groups[0]["lr"], dtype=torch.float64)})


@pytest.fixture
def tiny_methods():
    METHODS.add("test-tiny-conv", TinyConv)
    METHODS.add("test-tiny-gan", TinyGAN)
    yield
    METHODS._entries.pop("test-tiny-conv")
    METHODS._entries.pop("test-tiny-gan")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_loop_sets_each_optimisers_scheduled_rate(tiny_methods, data, tmp_path):
    recipe = load_recipe("test-tiny-conv", "cpu", {**SMALL, "train.lr": "1e-3", "train.schedule.kind": "step",
                                                   "train.schedule.milestones": "[2, 4]", "train.schedule.factors": "[0.5, 0.1]",
                                                   "train.schedule.warmup_steps": "2"})
    out = train(recipe, data, results=tmp_path, progress=False)
    # warm-up (s + 1) / 2 on steps 0-1, then x0.5 from step 2, x0.1 from step 4 (a row's step counts steps done)
    assert [float(r["lr"]) for r in rows(out.run_dir / "losses.csv")] == pytest.approx([5e-4, 1e-3, 5e-4, 5e-4, 1e-4, 1e-4])
    assert load_checkpoint(out.run_dir / "checkpoint.pt")["lr"] == {"main": pytest.approx(1e-4)}
    meta = json.loads((out.run_dir / "train.json").read_text())
    assert meta["schedules"]["main"]["milestones"] == [2, 4]

    # a GAN: its generator decays linearly to 0 over the run, its discriminator keeps the recipe's rate
    gan = load_recipe("test-tiny-gan", "cpu", {**SMALL, "train.lr": "2e-4", "train.schedules.gen.kind": "linear"})
    got = rows(train(gan, data, results=tmp_path, progress=False).run_dir / "losses.csv")
    # (losses.csv keeps 6 decimals)
    assert [float(r["lr_gen"]) for r in got] == pytest.approx([2e-4 * (1 - s / 6) for s in range(6)], abs=5e-7)
    assert [float(r["lr_disc"]) for r in got] == pytest.approx([2e-4] * 6)
    with pytest.raises(ValueError, match="names optimiser.s. critic that this method does not have; its optimisers: disc, gen"):
        train(load_recipe("test-tiny-gan", "cpu", {**SMALL, "train.schedules.critic.kind": "cosine"}), data,
              results=tmp_path, progress=False)


@pytest.mark.parametrize("name", ["test-tiny-conv", "test-tiny-gan"])
def test_micro_batches_equal_one_batch_n_times_larger(tiny_methods, name, data, tmp_path):
    base = {**SMALL, "train.steps": "3", "train.batch_size": "8", "train.lr": "1e-2", "train.ckpt_every": "10"}
    one = train(load_recipe(name, "cpu", base), data, results=tmp_path / "one", seed=2, progress=False)
    four = train(load_recipe(name, "cpu", {**base, "train.accumulate": "4"}), data, results=tmp_path / "four", seed=2, progress=False)
    a, b = (load_checkpoint(o.run_dir / "checkpoint.pt") for o in (one, four))
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
    for opt in a["optimizers"]:  # Adam's moments too: the gradients were the same to float rounding
        for pid, state in a["optimizers"][opt]["state"].items():
            scale = float(state["exp_avg"].abs().max())
            torch.testing.assert_close(b["optimizers"][opt]["state"][pid]["exp_avg"], state["exp_avg"], rtol=1e-4, atol=1e-4 * scale)
    la, lb = rows(one.run_dir / "losses.csv"), rows(four.run_dir / "losses.csv")
    loss_cols = [c for c in la[0] if c.startswith("loss_")]
    for ra, rb in zip(la, lb):  # the logged loss of 4 micro-batches is the loss of the whole batch
        assert [float(rb[c]) for c in loss_cols] == pytest.approx([float(ra[c]) for c in loss_cols], rel=1e-5)


def test_micro_batches_that_yield_different_updates_are_refused():
    """A method whose micro-batches yield different sequences of updates cannot be accumulated: each
    mismatch (fewer, more, another optimiser's) is named rather than stepping on a partial gradient."""
    seq = lambda *names: iter(names)  # noqa: E731
    assert list(train_mod.micro_updates([seq("d", "g"), seq("d", "g")])) == [(0, "d"), (1, "d"), (0, "g"), (1, "g")]
    with pytest.raises(RuntimeError, match="micro-batch 1 yielded fewer updates than micro-batch 0"):
        list(train_mod.micro_updates([seq("d", "g"), seq("d")]))
    with pytest.raises(RuntimeError, match="micro-batch 2 yielded more updates than micro-batch 0"):
        list(train_mod.micro_updates([seq("d"), seq("d"), seq("d", "g")]))


# --------------------------------------------------------------------------------------------------
# EMA


def test_weight_ema_closed_form_and_swap():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    w0 = net[0].weight.detach().clone()
    ema = WeightEMA(net, decay=0.9)
    values = [torch.full_like(w0, 1.0), torch.full_like(w0, -2.0)]
    for v in values:
        with torch.no_grad():
            net[0].weight.copy_(v)
        net(torch.randn(4, 3))  # train mode: running statistics move, num_batches_tracked counts
        ema.update(net)
    assert torch.allclose(ema.weights["0.weight"], 0.9 * (0.9 * w0 + 0.1 * values[0]) + 0.1 * values[1])
    assert ema.weights["1.num_batches_tracked"].item() == 2 and ema.weights["1.num_batches_tracked"].dtype == torch.long
    own = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped_into(net):
        assert torch.equal(net[0].weight, ema.weights["0.weight"])
    assert all(torch.equal(own[k], v) for k, v in net.state_dict().items())


def test_scored_weights_are_the_ema_when_the_recipe_says_so(data, tmp_path):
    over = {**SMALL, "train.steps": "4", "train.ema_decay": "0.5"}
    recipe = load_recipe("kmeans32", "cpu", over)
    out = train(recipe, data, results=tmp_path, progress=False)
    ckpt = load_checkpoint(out.run_dir / "checkpoint.pt")
    assert ckpt["ema"]["updates"] == 4 and ckpt["ema"]["decay"] == 0.5
    scored = load_trained(recipe, out.run_dir, torch.device("cpu")).state_dict()
    key = "net.dec.1.weight"
    assert torch.equal(scored[key], ckpt["ema"]["weights"][key]) and not torch.equal(scored[key], ckpt["model"][key])
    alone = load_model_file(out.run_dir / "checkpoint.pt").method.state_dict()  # bench run --checkpoint: the same weights
    assert torch.equal(alone[key], scored[key])
    raw = load_recipe("kmeans32", "cpu", {**over, "train.ema_eval": "false"})
    assert json.loads((out.run_dir / "train.json").read_text())["ema"] == {"decay": 0.5, "scored": True}
    out_raw = train(raw, data, results=tmp_path, progress=False)
    ckpt_raw = load_checkpoint(out_raw.run_dir / "checkpoint.pt")
    assert torch.equal(load_trained(raw, out_raw.run_dir, torch.device("cpu")).state_dict()[key], ckpt_raw["model"][key])


# --------------------------------------------------------------------------------------------------
# Validation


def test_validation_curves_on_held_out_training_images(tiny_methods, data, tmp_path, monkeypatch):
    seen = []
    real_crops = train_mod.train_crops
    monkeypatch.setattr(train_mod, "train_crops", lambda images, *a, **k: seen.append(images) or real_crops(images, *a, **k))
    recipe = load_recipe("test-tiny-conv", "cpu", {**SMALL, "train.steps": "5", "train.val_every": "2", "train.val_images": "8"})
    out = train(recipe, data, results=tmp_path, progress=False)
    val = rows(out.run_dir / "validation.csv")
    assert [r["step"] for r in val] == ["2", "4", "5"]  # every 2 steps, and the last one
    meta = json.loads((out.run_dir / "train.json").read_text())["validation"]
    held = [data.image_id(i) for i in held_out_indices(len(data), 8)]
    assert meta["images"] == 1 == len(held) and meta["ids"] == held  # at most a quarter of the 6 training images
    assert {seen[0].image_id(i) for i in range(len(seen[0]))} == {data.image_id(i) for i in range(len(data))} - set(held)
    # the crops come from the whole split's pixel cache, through the training part's indices only
    pixels = json.loads((out.run_dir / "train.json").read_text())["pixels"]
    assert pixels["source"] == "cache" and pixels["images"] == len(data) - len(held), pixels

    # the last row is the final weights scored on that image, as scikit-image scores them
    method = load_trained(recipe, out.run_dir, torch.device("cpu"))
    img = TF.center_crop(resize_short(data.load(held_out_indices(len(data), 8)[0]), data.card.short_side), [32, 32]).unsqueeze(0)
    pred = colorize(method, img)
    want = peak_signal_noise_ratio(img[0].numpy(), pred[0].numpy(), data_range=255)
    assert float(val[-1]["val_psnr"]) == pytest.approx(want, abs=1e-5)
    assert 0 < float(val[-1]["val_ssim"]) <= 1


def test_too_small_a_split_for_validation_is_a_clear_error():
    with pytest.raises(ValueError, match="too few to hold out a validation slice.*train.val_every=0"):
        hold_out(type("Three", (), {"__len__": lambda self: 3, "name": "toy", "split": "train"})(), 16)


# --------------------------------------------------------------------------------------------------
# Resume in the middle of a schedule, with EMA, accumulation and validation: bit-identical on CPU


def test_resume_mid_schedule_is_bit_identical(data, tmp_path, interrupt_training):
    recipe = load_recipe("kmeans32", "cpu", {
        **SMALL, "train.log_every": "2", "train.accumulate": "2", "train.ema_decay": "0.8", "train.val_every": "2",
        "train.schedule.kind": "linear", "train.schedule.decay_from": "1", "train.schedule.warmup_steps": "2"})
    straight = train(recipe, data, results=tmp_path / "straight", progress=False)
    disarm = interrupt_training(recipe, 3)  # Ctrl-C during step 3: the step-2 checkpoint is the last
    with pytest.raises(KeyboardInterrupt):
        train(recipe, data, results=tmp_path / "resumed", progress=False)
    disarm()
    resumed = train(recipe, data, results=tmp_path / "resumed", progress=False)
    assert json.loads((resumed.run_dir / "train.json").read_text())["resumed_from_step"] == 2
    a, b = (load_checkpoint(o.run_dir / "checkpoint.pt") for o in (straight, resumed))
    assert a["lr"] == b["lr"] and a["lr"]["main"] > 0
    flat = lambda c: {**{f"model.{k}": v for k, v in c["model"].items()},  # noqa: E731
                      **{f"ema.{k}": v for k, v in c["ema"]["weights"].items()},
                      **{f"opt.{p}.{k}": torch.as_tensor(v) for p, s in c["optimizers"]["main"]["state"].items() for k, v in s.items()}}
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa), [k for k in fa if not torch.equal(fa[k], fb[k])][:5]
    for name in ("losses.csv", "validation.csv"):
        strip = lambda r: {k: v for k, v in r.items() if k != "images_per_s"}  # noqa: E731
        assert [strip(r) for r in rows(straight.run_dir / name)] == [strip(r) for r in rows(resumed.run_dir / name)]

"""Contracts every method honours, parametrized over the registry: new methods are tested with no edits."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICE, TINY

from bench.checkpoint import load_checkpoint, load_trained
from bench.datasets import DATASETS
from bench.recipes import build_method, load_recipe, method_names
from bench.train import train

METHODS = method_names()


@pytest.fixture(scope="module")
def tiny_data():
    return DATASETS.get("samples")("train")


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """``trained(name)`` -> (recipe, outcome): each method trains once for all the contracts below."""
    done: dict[str, tuple] = {}

    def get(name: str):
        if name not in done:
            recipe = load_recipe(name, "cpu", TINY)
            results = tmp_path_factory.mktemp(f"contract-{name}")
            done[name] = recipe, train(recipe, tiny_data, results=results, seed=0, device=torch.device(DEVICE), progress=False)
        return done[name]

    return get


def L_batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 100


@pytest.mark.parametrize("name", METHODS)
def test_trains_predicts_and_round_trips(name, trained):
    recipe, out = trained(name)
    device = torch.device(DEVICE)
    assert out.status in ("done", "untrained")
    method = load_trained(recipe, out.run_dir, device)
    L = L_batch().to(device)
    with torch.no_grad():
        ab = method.predict_ab(L)
    assert ab.shape == (2, 2, 32, 32)
    assert torch.isfinite(ab).all()
    assert ab.abs().max() <= 128

    # save -> load gives identical outputs
    fresh = build_method(recipe).to(device).eval()
    fresh.load_state_dict(method.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.predict_ab(L), ab)
    if out.status == "done":
        ckpt = load_checkpoint(out.run_dir / "checkpoint.pt")
        assert ckpt["step"] == recipe.train.steps
        assert (out.run_dir / "losses.csv").read_text().count("\n") == recipe.train.steps + 1


@pytest.mark.parametrize("name", METHODS)
def test_predict_handles_odd_sizes(name, trained):
    recipe, out = trained(name)
    method = load_trained(recipe, out.run_dir, torch.device(DEVICE))
    with torch.no_grad():
        L = torch.rand(1, 1, 40, 56, device=DEVICE) * 100
        ab, lab = method.predict_ab(L), method.predict_lab(L)
    assert ab.shape == (1, 2, 40, 56) and lab.shape == (1, 3, 40, 56)
    assert torch.allclose(lab[:, 1:], ab)  # predict_lab carries predict_ab's colours ...
    if not method.predicts_lightness:  # ... and, unless the method predicts its own lightness, the input's L
        assert torch.equal(lab[:, :1], L)

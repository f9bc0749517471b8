"""Importing the authors' released ECCV16 weights: key for key into our zhang adapter, checked against a
reference forward written here from the published architecture (colorizers/eccv16.py: eight Sequentials,
softmax, a bias-free 1x1 ``model_out`` whose weights are the bin centres / 110, x4 bilinear upsampling, ab x 110).
The weights are random with the official key names and shapes: the real file cannot be downloaded here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench.checkpoint import CheckpointError, load_model_file
from bench.cli import main
from bench.published import PUBLISHED, PublishedWeightsError, import_published
from bench.store import file_sha256

# (name, in, out, convs, stride of the last conv, dilation) of blocks 1-7 of the release.
BLOCKS = [("model1", 1, 64, 2, 2, 1), ("model2", 64, 128, 2, 2, 1), ("model3", 128, 256, 3, 2, 1), ("model4", 256, 512, 3, 1, 1),
          ("model5", 512, 512, 3, 1, 2), ("model6", 512, 512, 3, 1, 2), ("model7", 512, 512, 3, 1, 1)]


def release_state(q: int = 313, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the release's key names and shapes; model_out holds grid bins / 110."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(key: str, cin: int, cout: int, k: int) -> None:
        sd[f"{key}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        sd[f"{key}.bias"] = torch.randn(cout, generator=g) * 0.01

    for name, cin, cout, n, _, _ in BLOCKS:
        for i in range(n):
            conv(f"{name}.{2 * i}", cin if i == 0 else cout, cout, 3)
        bn = f"{name}.{2 * n}"
        sd[f"{bn}.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        sd[f"{bn}.bias"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{bn}.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{bn}.running_var"] = 0.5 + torch.rand(cout, generator=g)
        sd[f"{bn}.num_batches_tracked"] = torch.tensor(1000)
    sd["model8.0.weight"] = torch.randn(512, 256, 4, 4, generator=g) * (2.0 / (512 * 16)) ** 0.5  # ConvTranspose2d: (in, out, k, k)
    sd["model8.0.bias"] = torch.randn(256, generator=g) * 0.01
    conv("model8.2", 256, 256, 3)
    conv("model8.4", 256, 256, 3)
    conv("model8.6", 256, q, 1)
    grid = torch.stack(torch.meshgrid(torch.arange(-110, 111, 10.0), torch.arange(-110, 111, 10.0), indexing="ij"), -1).reshape(-1, 2)
    bins = grid[torch.randperm(len(grid), generator=g)[:q]]
    sd["model_out.weight"] = (bins.T / 110.0).reshape(2, q, 1, 1)
    return sd


def reference_forward(sd: dict[str, torch.Tensor], L: torch.Tensor) -> torch.Tensor:
    """The release's forward in functional form: L (B,1,H,W) in [0, 100] -> ab (B,2,H,W)."""
    x = (L - 50.0) / 100.0
    for name, _, _, n, stride, dil in BLOCKS:
        for i in range(n):
            s = stride if i == n - 1 else 1
            x = F.relu(F.conv2d(x, sd[f"{name}.{2 * i}.weight"], sd[f"{name}.{2 * i}.bias"], stride=s, padding=dil, dilation=dil))
        bn = f"{name}.{2 * n}"
        x = F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"], training=False)
    x = F.relu(F.conv_transpose2d(x, sd["model8.0.weight"], sd["model8.0.bias"], stride=2, padding=1))
    x = F.relu(F.conv2d(x, sd["model8.2.weight"], sd["model8.2.bias"], padding=1))
    x = F.relu(F.conv2d(x, sd["model8.4.weight"], sd["model8.4.bias"], padding=1))
    logits = F.conv2d(x, sd["model8.6.weight"], sd["model8.6.bias"])
    out = F.conv2d(torch.softmax(logits, dim=1), sd["model_out.weight"])
    return F.interpolate(out, scale_factor=4, mode="bilinear", align_corners=False) * 110.0


@pytest.fixture(scope="module")
def release_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = release_state()
    path = tmp_path_factory.mktemp("release") / "eccv16-random-weights.pth"
    torch.save(sd, path)
    return path, sd


def test_imported_release_predicts_what_the_published_forward_computes(release_file, tmp_path):
    path, sd = release_file
    meta = import_published("zhang-eccv16", path, tmp_path / "zhang-eccv16.pt", unverified=True)
    assert meta["weights"] == "unverified" and meta["identity"]["sha256"] == file_sha256(path)
    model = load_model_file(tmp_path / "zhang-eccv16.pt")
    assert model.recipe.name == "zhang-eccv16" and model.recipe.adapter == "zhang" and not model.recipe.trainable
    assert model.meta["weights"] == "unverified"
    assert torch.equal(model.method.bins, sd["model_out.weight"][:, :, 0, 0].T * 110.0)
    L = torch.rand(2, 1, 48, 64, generator=torch.Generator().manual_seed(1)) * 100
    with torch.no_grad():
        ours = model.method.predict_ab(L)
        theirs = reference_forward(sd, L)
    assert ours.shape == theirs.shape == (2, 2, 48, 64)
    assert theirs.abs().max() > 1.0  # not a trivially flat output
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)


def test_release_digest_decides_published_or_unverified(release_file, tmp_path, monkeypatch):
    path, _ = release_file
    with pytest.raises(PublishedWeightsError, match="not the published colorization_release_v2-9b330a0b.pth.*--unverified"):
        import_published("zhang-eccv16", path, tmp_path / "a.pt")
    # the published branch: pretend the release's digest is this file's
    monkeypatch.setitem(PUBLISHED, "zhang-eccv16", dataclasses.replace(PUBLISHED["zhang-eccv16"], sha256_prefix=file_sha256(path)[:8]))
    assert import_published("zhang-eccv16", path, tmp_path / "b.pt")["weights"] == "published"
    # a hub-style name whose digest does not match the bytes: damaged
    renamed = tmp_path / "colorization_release_v2-9b330a0b.pth"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(PublishedWeightsError, match="damaged or altered"):
        import_published("zhang-eccv16", renamed, tmp_path / "c.pt", unverified=True)


def test_wrong_files_are_named(release_file, tmp_path):
    path, sd = release_file
    with pytest.raises(PublishedWeightsError, match="no such file.*colorization_release_v2-9b330a0b.pth from https://"):
        import_published("zhang-eccv16", tmp_path / "missing.pth", tmp_path / "x.pt")
    broken = {k: v for k, v in sd.items() if k != "model5.2.weight"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(PublishedWeightsError, match=r"broken.pth: no 'model5.2.weight'"):
        import_published("zhang-eccv16", tmp_path / "broken.pth", tmp_path / "x.pt", unverified=True)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(PublishedWeightsError, match="text.pth: not a loadable PyTorch state dict"):
        import_published("zhang-eccv16", tmp_path / "text.pth", tmp_path / "x.pt", unverified=True)


def test_cli_import_writes_a_checkpoint_that_loads_alone(release_file, tmp_path):
    path, _ = release_file
    res = tmp_path / "results"
    r = CliRunner().invoke(main, ["--results", str(res), "import", "zhang-eccv16", str(path), "--unverified"])
    assert r.exit_code == 0, r.output
    assert f"-> {res / 'models' / 'zhang-eccv16.pt'}" in r.output
    assert load_model_file(res / "models" / "zhang-eccv16.pt").recipe.params.n_bins == 313
    r = CliRunner().invoke(main, ["--results", str(res), "import", "zhang-eccv16", str(path)])
    assert r.exit_code == 2 and "--unverified" in r.output and "Traceback" not in r.output  # usage errors, nothing written
    for args in (["foo", str(path)], ["zhang-eccv16", str(tmp_path / "nonexist.pth")]):
        r = CliRunner().invoke(main, ["--results", str(res), "import", *args])
        assert r.exit_code == 2 and ("no published model 'foo'" in r.output or "nonexist.pth: no such file" in r.output), r.output


def test_a_checkpoint_without_recipe_or_train_json_is_refused(tmp_path):
    torch.save({"format": 1, "identity": "x", "step": 0, "model": {}, "optimizers": {}, "scaler": None, "rng": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="does not say which recipe made it"):
        load_model_file(tmp_path / "old.pt")

"""The command line as a person meets it: usage errors caught before any work (exit 2, stored results
untouched), one exit-code convention (0, 1, 2, 130), honest failure messages, and the smaller courtesies."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import result_file, write_folder_dataset

from bench.cli import main
from bench.datasets.base import DatasetNotFound

FAST = ["--set", "train.steps=3", "--set", "train.batch_size=2", "--set", "train.image_size=32",
        "--set", "train.prepare_images=4", "--set", "params.width=8", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def stored(results: Path) -> Path:
    """A results folder that already holds good results (content is irrelevant: nothing may touch it)."""
    for rel in ("eval/samples/test/gray-s0.json", "eval/samples/test/unet-s0.json", "eval/samples/test/unet-s0.csv",
                "train/unet/samples-s0-0123456789/train.json"):
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_text(json.dumps({"status": "ok", "file": rel}))
    return results


def usage_cases(tmp: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty-photos"
    empty.mkdir()
    bad = tmp / "bad-photos"
    write_folder_dataset(bad, n=4, size=(40, 40))
    (bad / "a" / "broken.png").write_bytes(b"not an image")
    return [
        (["run", "--methods", "gray,unet", "--device", "gpu"], "'gpu' is not a device; choose cuda, cuda:N, mps or cpu (a GPU is --device cuda)"),
        (["run", "--methods", "gray", "--device", "tpu:0"], "is not a device"),
        (["run", "--methods", "gray", "--dataset", "folder", "--root", tmp / "missing"], "missing does not exist; pass the folder"),
        (["run", "--methods", "gray", "--dataset", "folder", "--root", ""], "'--root': is empty"),
        (["run", "--methods", "gray", "--dataset", "folder", "--root", empty], "no images"),
        (["run", "--methods", "gray", "--dataset", "folder", "--root", bad, "--split", "all", "--on-bad-image", "error"], "broken.png"),
        (["run", "--methods", "gray", "--root", empty], "dataset 'samples' is built in and reads no folder"),
        (["run", "--methods", "gray,unet", "--set", "train.steps=-3"], "--set train.steps=-3: out of range: train.steps must be an integer >= 1"),
        (["train", "--method", "unet", "--set", "train.steps=0"], "train.steps must be an integer >= 1"),
        (["train", "--method", "unet", "--set", "train.betas=[0.9,1.5]"], "train.betas must hold numbers in [0, 1)"),
        (["train", "--method", "unet", "--set", "train.lr=fast"], "--set train.lr: expected float"),
        (["train", "--method", "unet", "--set", "steps=5"], "the key must be train.<field>, params.<field> or predict.<field> (did you mean train.steps?)"),
        (["train", "--method", "unet", "--set", "params.width=0"], "params.width must be an integer >= 1"),
        (["train", "--method", "unet", "--set", "train.schedule.kind=cosin"], "schedule.kind must be one of constant, step, cosine, linear"),
        (["train", "--method", "unet", "--set", "train.schedules.gen.kind=linear"], "names optimiser(s) gen that this method does not have; its optimisers: main"),
        (["train", "--method", "unet", "--set", "train.ema_decay=1"], "train.ema_decay must be a number in (0, 1)"),
        (["train", "--method", "gray", "--set", "params.width=16"], "gray has no parameter 'width'"),
        (["train-all", "--set", "params.widht=16"], "did you mean params.width?"),
        (["run", "--metrics", "PSNR,ssim"], "unknown metric 'PSNR'. Did you mean 'psnr'"),
        (["run", "--methods", "gray,kmeans23"], "Did you mean 'kmeans32'?"),
        (["run", "--methods", "gray", "--dataset", "div3k"], "unknown dataset 'div3k'"),
        (["run", "--methods", "gray", "--inception-weights", tmp / "nope.pth"], "does not exist"),
        (["colorize", "--method", "unet", "--out", tmp / "out", tmp / "no-such-photo.jpg"], "does not exist"),
        (["report", "--format", "pdf"], "'--format': unknown pdf"),
    ]


def test_usage_errors_exit_2_before_any_work(stored, tmp_path, monkeypatch):
    """Item 1-3: every usage error exits 2 with a message naming the option and the fix, before any
    training or writing: the stored results stay byte-identical, and nothing else prints before it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # so is/fid/lpips are unavailable
    before = snapshot(stored)
    for args, message in usage_cases(tmp_path):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output, (args, r.output)
        assert "Traceback" not in r.output and "unavailable" not in r.output, (args, r.output)
        assert snapshot(stored) == before, args
    assert not (tmp_path / "out").exists()


def test_cuda_without_cuda_is_a_usage_error(stored):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    before = snapshot(stored)
    r = invoke("run", "--methods", "gray,unet", "--device", "cuda")
    assert r.exit_code == 2 and "cuda: CUDA is not available on this machine" in r.output and "Traceback" not in r.output
    assert snapshot(stored) == before


def test_data_failure_names_the_stage_and_what_was_written(results, monkeypatch):
    """Item 5: a split that cannot be read once the run has started (here: it vanishes after validation) is
    reported as a failure to read that split, not of training, and says which result file records it."""
    from bench.runner import RunSpec

    def vanished(self, crop=None):
        raise DatasetNotFound("samples/train: gone")

    monkeypatch.setattr(RunSpec, "train_images", vanished)  # gray reads no training data; kmeans32 does
    r = invoke("run", "--methods", "kmeans32", "--metrics", "psnr", "--no-progress")
    record = result_file(results / "eval/samples/test", "kmeans32", failed=True)
    assert r.exit_code == 1
    assert "kmeans32: reading samples/train FAILED: DatasetNotFound: samples/train: gone" in r.output
    assert "training" not in r.output
    assert f"1 of 1 method(s) failed:\n  kmeans32: reading samples/train failed (recorded in {record})" in r.output
    assert json.loads(record.read_text())["stage"] == "data"

    # at evaluation: the split read for scoring is named, and nothing was written for it
    calls = {"n": 0}

    def test_split_vanishes(self, split, crop=None):
        calls["n"] += 1
        if split == "test":
            raise DatasetNotFound("samples/test: gone")
        return original(self, split, crop)

    monkeypatch.undo()
    original = RunSpec.images
    monkeypatch.setattr(RunSpec, "images", test_split_vanishes)
    r = invoke("run", "--methods", "gray", "--metrics", "psnr", "--no-progress")
    assert r.exit_code == 1 and "gray: reading samples/test failed (no result file was written)" in r.output
    assert not list((results / "eval/samples/test").glob("gray-*"))


def test_interrupted_evaluation_exits_130_and_resumes(results, monkeypatch):
    """Item 3: Ctrl-C during an evaluation exits 130 and says what is journaled and that the same command
    resumes; the same command then finishes from there."""
    from bench.methods.gray import Gray

    original = Gray.predict_ab
    calls = {"n": 0}

    def interrupted(self, L):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, L)

    monkeypatch.setattr(Gray, "predict_ab", interrupted)
    args = ["run", "--methods", "gray", "--metrics", "psnr", "--eval-chunk", "16", "--set", "train.batch_size=8", "--no-progress"]
    r = invoke(*args)
    assert r.exit_code == 130, r.output
    assert "evaluation gray on samples/test interrupted after 16 of 48 images; 16 are journaled in" in r.output
    assert "run the same command again to resume from image 16" in r.output and "interrupted (Ctrl-C): exit status 130" in r.output
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert json.loads(result_file(results / "eval/samples/test", "gray").read_text())["timings"]["resumed_from"] == 16


def test_compare_defaults_to_samples_like_run(results):
    r = invoke("compare", "unet", "gray")
    assert r.exit_code == 1 and "no result for unet on samples/test" in r.output


def test_report_without_results_leaves_no_folder(results, tmp_path):
    out = tmp_path / "reports" / "samples"
    r = invoke("report", "--out", out)
    assert r.exit_code == 1 and "no results under" in r.output
    assert not (tmp_path / "reports").exists()

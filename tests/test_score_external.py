"""Outputs made elsewhere, scored with our protocol: ``bench score`` on a folder of images (reproducing a
run's own numbers from its ``--save-outputs``, naming bad files, checking lightness) and ``bench.score`` on
a Python callable (issue 16)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import result_file
from dataset_fixtures import write_div2k
from PIL import Image

import bench as bench_pkg
from bench.cli import main
from bench.datasets.io import read_image, write_png
from bench.datasets.samples import TEST, photo_paths
from bench.report import build_report
from bench.report.markdown import render_markdown

METRICS = "psnr,ssim,ciede2000,auc,colorfulness,colorfulness_gt"
FAST = ["--set", "train.steps=3", "--set", "train.batch_size=8", "--set", "train.image_size=32", "--set", "train.prepare_images=4"]


def bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def same_numbers(run: dict, scored: dict, run_csv, scored_csv) -> None:
    for m in METRICS.split(","):
        assert scored["metrics"][m]["mean"] == run["metrics"][m]["mean"], m
        assert scored["metrics"][m]["ci95"] == run["metrics"][m]["ci95"], m
    a, b = pd.read_csv(run_csv), pd.read_csv(scored_csv)
    assert a["id"].tolist() == b["id"].tolist()
    pd.testing.assert_frame_equal(a, b[a.columns])  # every per-image value, to the CSV's precision


@pytest.mark.parametrize("method,dataset", [("kmeans32", "samples"), ("gray", "div2k")])
def test_score_reproduces_a_run_from_its_saved_outputs(method, dataset, tmp_path, results):
    """samples: protocol tiles (outputs saved as the scored 256-px square); div2k: protocol full (outputs
    at each image's own size, ab predicted at short_side)."""
    root = ["--root", write_div2k(tmp_path / "div2k")] if dataset == "div2k" else []
    r = bench("run", "--methods", method, "--dataset", dataset, *root, *FAST, "--metrics", METRICS, "--bootstrap", "50",
              "--save-outputs", tmp_path / "out", "--no-progress")
    assert r.exit_code == 0, r.output
    run_json = result_file(results / "eval" / dataset / "test", method)
    run = json.loads(run_json.read_text())
    outputs = tmp_path / "out" / dataset / "test" / run_json.stem
    assert run["outputs"] == {"folder": str(outputs), "n": 3} and len(list(outputs.rglob("*.png"))) == 3
    if dataset == "samples":
        assert {p.stem for p in outputs.glob("*.png")} == set(TEST) and Image.open(outputs / "rocket.png").size == (256, 256)
    r = bench("score", "--predictions", outputs, "--dataset", dataset, *root, "--name", f"{method}-outputs",
              "--about", "bench run --save-outputs", "--metrics", METRICS, "--bootstrap", "50",
              "--batch-size", run["eval_batch_size"], "--no-progress")
    assert r.exit_code == 0, r.output
    scored_json = result_file(results / "eval" / dataset / "test", f"{method}-outputs", seed=None)
    scored = json.loads(scored_json.read_text())
    same_numbers(run, scored, run_json.with_suffix(".csv"), scored_json.with_suffix(".csv"))
    assert scored["method"] == f"{method}-outputs" and scored["adapter"] is None and scored["recipe"] is None
    assert scored["trained_on"] is None and scored["prediction"]["short_side"] == run["prediction"]["short_side"]
    assert scored["source"] == {"kind": "external", "name": f"{method}-outputs", "about": "bench run --save-outputs",
                                "predictions": str(outputs.resolve()), "n_expected": 3, "n_scored": 3, "left_out": [], "extra": []}
    assert scored["identity"]["source"]["kind"] == "external" and len(scored["identity"]["source"]["content_hash"]) == 64
    assert scored["lightness"]["n_flagged"] == 0  # L + ab, as a method makes it: at most clipped at the gamut
    assert "lightness_psnr" in pd.read_csv(scored_json.with_suffix(".csv")).columns
    assert "external" in r.output  # the table's "trained on" column
    # outputs made elsewhere have no seed: `compare` finds them beside a seeded run, pixel for pixel the same
    r = bench("compare", f"{method}-outputs", method, "--dataset", dataset, "--metric", "psnr")
    assert r.exit_code == 0, r.output
    assert re.search(r"^psnr \S* +([\d.]+) +\1 +\+0\.0000 .* identical$", r.output, re.M), r.output


@pytest.fixture
def photos_as_outputs(tmp_path):
    """Every samples photo, at its own size, as an 'output' named by its id: the ground truth itself."""
    out = tmp_path / "theirs"
    for name, path in photo_paths().items():
        write_png(out / f"{name}.png", read_image(path))
    return out


def test_score_names_bad_outputs_and_leaves_them_out_on_request(photos_as_outputs, tmp_path, results):
    out = photos_as_outputs
    base = ["score", "--predictions", out, "--split", "all", "--metrics", "psnr", "--bootstrap", "0", "--no-progress"]
    # full-size outputs go through the protocol's view as the ground truth does: the ground truth scores perfectly
    r = bench(*base, "--name", "ground-truth")
    assert r.exit_code == 0, r.output
    perfect = json.loads(result_file(results / "eval/samples/all", "ground-truth", seed=None).read_text())
    assert perfect["n_images"] == 9 * 16 and perfect["metrics"]["psnr"]["mean"] == 100.0
    assert perfect["lightness"]["min_db"] == 100.0

    (out / "rocket.png").unlink()  # missing
    Image.new("RGB", (64, 64)).save(out / "kodim01.png")  # extra
    (out / "chelsea.png").write_bytes(b"not a png")  # unreadable
    Image.open(out / "grace_hopper.png").resize((50, 40)).save(out / "grace_hopper.png")  # wrongly sized
    coffee = read_image(out / "coffee.png")
    write_png(out / "coffee.png", (coffee.int() + 25).clamp(0, 255).to(torch.uint8))  # lightness changed
    r = bench(*base, "--name", "broken")
    assert r.exit_code == 2 and "Traceback" not in r.output
    for text in ("rocket: missing: no output named rocket.png", "kodim01.png", "chelsea: unreadable",
                 "grace_hopper: wrong size: 50x40, expected 512x600 (the image's size) or 256x256 (the scored region)",
                 "--on-bad-image skip"):
        assert text in r.output, text
    assert not list((results / "eval/samples/all").glob("broken-*"))  # found before any work: nothing written

    r = bench(*base, "--name", "broken", "--on-bad-image", "skip", "--about", "a test folder")
    assert r.exit_code == 0, r.output
    res = json.loads(result_file(results / "eval/samples/all", "broken", seed=None).read_text())
    assert res["source"]["n_expected"] == 9 and res["source"]["n_scored"] == 6 and res["n_images"] == 6 * 16
    assert res["seed"] is None and res["identity"]["seed"] is None  # no seed of ours: the result does not invent one
    assert sorted(p["id"] for p in res["source"]["left_out"]) == ["chelsea", "grace_hopper", "rocket"]
    assert res["source"]["extra"] == ["kodim01.png"] and res["source"]["about"] == "a test folder"
    assert "6 of 9" in r.output  # the row says n of N
    c = bench("compare", "ground-truth", "broken", "--split", "all", "--metric", "psnr")  # a test-only set
    assert c.exit_code == 0 and "ground-truth (A) vs broken (B) on samples/all: 96 paired images (tiles of 6 photos" in c.output, c.output
    flagged = res["lightness"]["flagged"]
    assert flagged and all(f.startswith("coffee#") for f in flagged) and res["lightness"]["n_flagged"] == 16
    assert "WARNING broken on samples/all: 16 output(s) change the input's lightness" in r.output
    rows = pd.read_csv(result_file(results / "eval/samples/all", "broken", seed=None).with_suffix(".csv"))
    assert (rows.loc[rows["id"].str.startswith("coffee#"), "lightness_psnr"] < 30).all()
    assert (rows.loc[~rows["id"].str.startswith("coffee#"), "lightness_psnr"] == 100).all()
    assert re.search(r"^broken +samples +all +96 \(6 of 9 images\) +external ", r.output, re.M)  # n counts tiles

    # on the leaderboard and in a notebook: marked external, with its provenance and n of N
    frame = bench_pkg.load_results(results)
    assert list(zip(frame.method, frame.source, frame.trained_on.isna(), frame.n_images)) == [
        ("broken", "external", True, 96), ("ground-truth", "external", True, 144)]
    assert frame.seed.isna().all()
    md = render_markdown(build_report(results, tmp_path / "report", pictures=False))
    broken = next(ln for ln in md.splitlines() if ln.startswith("| broken | — |"))
    assert "| unknown | external [2] | 96 (6 of 9 images) |" in broken, broken
    lowest = res["lightness"]["min_db"]
    note = next(ln for ln in md.splitlines() if ln.startswith("[2] broken: external: outputs made elsewhere, scored here from "))
    assert note.rstrip().endswith(f"theirs; about: a test folder; 16 output(s) change the input's lightness (PSNR of L below "
                                  f"30 dB, lowest {lowest:.1f} dB); 6 of 9 images scored (3 skipped)"), note

    r = bench(*base, "--name", "gray")
    assert r.exit_code == 2 and "is a colorbench method" in r.output


def test_score_a_python_callable(tmp_path, results):
    r = bench("run", "--methods", "gray", "--metrics", "psnr,ssim", "--bootstrap", "0", "--no-progress")
    assert r.exit_code == 0, r.output
    gray = json.loads(result_file(results / "eval/samples/test", "gray").read_text())

    def keep_gray(rgb: torch.Tensor) -> torch.Tensor:  # gray uint8 RGB in, "colourised" uint8 RGB out
        return rgb.clone()

    as_rgb = bench_pkg.score(keep_gray, dataset="samples", metrics=["psnr", "ssim"], bootstrap=0)
    as_lab = bench_pkg.score(lambda L: torch.zeros(L.shape[0], 2, *L.shape[2:]), input="lab", metrics="psnr,ssim",
                             bootstrap=0, results=tmp_path / "mine", name="zero-ab")
    for res in (as_rgb, as_lab):  # the same outputs as the gray method, through the same code: the same numbers
        assert res["metrics"]["psnr"]["mean"] == gray["metrics"]["psnr"]["mean"]
        assert res["metrics"]["ssim"]["mean"] == gray["metrics"]["ssim"]["mean"]
        assert res["source"]["kind"] == "external" and res["n_images"] == 48
    assert as_rgb["method"] == "keep_gray" and as_rgb["lightness"]["n_flagged"] == 0 and "lightness" not in as_lab
    assert as_rgb["source"]["callable"].endswith("keep_gray")
    assert not list(results.rglob("keep_gray-*"))  # no results folder given: nothing written
    written = result_file(tmp_path / "mine" / "eval/samples/test", "zero-ab", seed=None)
    assert json.loads(written.read_text())["identity_hash"] == as_lab["identity_hash"]

    with pytest.raises(ValueError, match="return colourised uint8 RGB of the same shape"):
        bench_pkg.score(lambda rgb: rgb.float(), metrics="psnr", bootstrap=0)
    with pytest.raises(ValueError, match="choose 'rgb'"):
        bench_pkg.score(keep_gray, input="yuv")
    def kmeans32(rgb: torch.Tensor) -> torch.Tensor:  # named like a method: its rows would pass for the method's
        return rgb.clone()

    with pytest.raises(ValueError, match="'kmeans32' is a colorbench method"):
        bench_pkg.score(kmeans32, metrics="psnr", bootstrap=0, results=tmp_path / "mine")
    # on the leaderboard the note names the callable, not a folder it never read
    md = render_markdown(build_report(tmp_path / "mine", tmp_path / "report", pictures=False))
    note = next(ln for ln in md.splitlines() if ln.startswith("[") and "zero-ab: external" in ln)
    assert "outputs of the Python callable test\\_score\\_external." in note and "\\<lambda\\> (L -\\> ab), scored here" in note, note


def test_import_bench_stays_light():
    code = "import sys, bench; assert 'torch' not in sys.modules; assert callable(bench.score); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

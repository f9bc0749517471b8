"""Any model on any test set: train on one dataset and score on others, test-only sets scored whole
(``--split all``), and checkpoints scored by path after their training data is gone (issue 16)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from click.testing import CliRunner
from conftest import result_file, write_folder_dataset
from PIL import Image
from test_split_all import small_folder

import bench as bench_pkg
from bench.cli import main
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.report import build_report
from bench.report.markdown import render_markdown
from bench.store import file_sha256

QUICK = ["--metrics", "psnr,ssim", "--bootstrap", "0", "--no-progress"]
FAST = ["--set", "train.steps=3", "--set", "train.batch_size=8", "--set", "train.image_size=32", "--set", "train.prepare_images=4"]


def bench(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def results_of(folder, method: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{method}-s0-*.json")) if not p.name.endswith(".failed.json")]


def test_train_on_one_dataset_score_on_others_and_score_its_checkpoint_alone(tmp_path, results):
    photos = write_folder_dataset(tmp_path / "photos", n=10)
    r = bench("run", "--methods", "gray,kmeans32", "--train-on", "samples", "--dataset", "samples,folder", "--root", photos,
              *FAST, *QUICK)
    assert r.exit_code == 0, r.output
    assert r.output.count("kmeans32: trained 3 steps") == 1  # one training, scored on both datasets
    assert len(list((results / "train" / "kmeans32").glob("samples-s0-*/checkpoint.pt"))) == 1
    samples_train = open_split(DATASETS.get("samples"), "train").identity()
    on_samples = json.loads(result_file(results / "eval/samples/test", "kmeans32").read_text())
    on_folder = json.loads(result_file(results / "eval/folder/test", "kmeans32").read_text())
    for res in (on_samples, on_folder):
        assert res["trained_on"] == {"name": "samples", "split": "train", "content_hash": samples_train["content_hash"],
                                     "short_side": 256}
        assert res["source"] == {"kind": "trained"} and res["metrics"]["psnr"]["mean"] > 10
    assert on_samples["train"]["identity_hash"] == on_folder["train"]["identity_hash"]
    assert on_folder["dataset"]["name"] == "folder" and on_folder["identity"]["training"] == on_samples["identity"]["training"]
    gray = json.loads(result_file(results / "eval/folder/test", "gray").read_text())
    assert gray["trained_on"] is None and gray["source"] == {"kind": "untrained"}
    table = r.output[r.output.index("method "):]
    assert "trained on" in table.splitlines()[0]  # a row trained on other data than it is scored on
    assert any(ln.startswith("kmeans32") and "folder" in ln and "samples/train" in ln for ln in table.splitlines())

    # the other way round: trained on the folder (--train-root), scored on samples; a result of its own
    r = bench("run", "--methods", "kmeans32", "--train-on", "folder", "--train-root", photos, "--dataset", "samples", *FAST, *QUICK)
    assert r.exit_code == 0, r.output
    both = results_of(results / "eval/samples/test", "kmeans32")
    assert len(both) == 2 and {b["trained_on"]["name"] for b in both} == {"samples", "folder"}
    trained = [b for b in both if b["trained_on"]["name"] == "folder"][0]
    assert trained["trained_on"]["content_hash"] == open_split(DATASETS.get("folder"), "train", photos).identity()["content_hash"]
    # trained on a dataset that is also scored: its --root is the training folder too, for both (one training, reused)
    r = bench("run", "--methods", "kmeans32", "--train-on", "folder", "--dataset", "samples,folder", "--root", photos, *FAST, *QUICK)
    assert r.exit_code == 0, r.output
    assert r.output.count("kmeans32: already trained") == 1 and "kmeans32: trained" not in r.output
    assert len(list((results / "train" / "kmeans32").glob("folder-s0-*"))) == 1
    on_folder_itself = [b for b in results_of(results / "eval/folder/test", "kmeans32") if b["trained_on"]["name"] == "folder"]
    assert len(on_folder_itself) == 1 and on_folder_itself[0]["train"]["identity_hash"] == trained["train"]["identity_hash"]
    assert len(results_of(results / "eval/samples/test", "kmeans32")) == 2  # the same settings: the same result file

    # its checkpoint, shared as one file, scored after the training images and the run folder are gone
    ckpt = tmp_path / "shared" / "kmeans32.pt"
    ckpt.parent.mkdir()
    shutil.copy(next((results / "train" / "kmeans32").glob("folder-s0-*")) / "checkpoint.pt", ckpt)
    shutil.rmtree(photos)
    shutil.rmtree(results / "train")
    r = bench("run", "--checkpoint", ckpt, "--dataset", "samples", *QUICK)
    assert r.exit_code == 0, r.output
    three = results_of(results / "eval/samples/test", "kmeans32")
    assert len(three) == 3  # keyed by the checkpoint's SHA-256: beside the run's result, not over it
    scored = [b for b in three if b["source"]["kind"] == "checkpoint"][0]
    assert scored["source"] == {"kind": "checkpoint", "path": str(ckpt), "sha256": file_sha256(ckpt), "weights": "trained"}
    assert scored["trained_on"] == trained["trained_on"]
    assert scored["identity"]["source"]["sha256"] == file_sha256(ckpt) and scored["prediction"] == trained["prediction"]
    for m in ("psnr", "ssim"):  # the same model, evaluated the same way
        assert scored["metrics"][m]["mean"] == trained["metrics"][m]["mean"]
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (90, 140, 200)).save(photo)
    r = bench("colorize", "--checkpoint", ckpt, "--out", tmp_path / "out", photo)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out" / "photo.png").size == (40, 30)

    # the rows these commands wrote, as a notebook and the leaderboard read them
    frame = bench_pkg.load_results(results)
    rows = frame.sort_values(["dataset", "method", "trained_on", "source"])
    assert list(zip(rows.dataset, rows.method, rows.trained_on.fillna("-"), rows.source, rows.weights.fillna("-"))) == [
        ("folder", "gray", "-", "untrained", "-"), ("folder", "kmeans32", "folder", "trained", "-"),
        ("folder", "kmeans32", "samples", "trained", "-"), ("samples", "gray", "-", "untrained", "-"),
        ("samples", "kmeans32", "folder", "checkpoint", "trained"), ("samples", "kmeans32", "folder", "trained", "-"),
        ("samples", "kmeans32", "samples", "trained", "-")]
    assert rows[rows.source == "checkpoint"].psnr.item() == scored["metrics"]["psnr"]["mean"]
    md = render_markdown(build_report(results, tmp_path / "report", pictures=False))
    assert md.count("> **Warning:** The rows of this table were trained on different data (folder's train split; "
                    "samples's train split)") == 2
    table = md[md.index("## samples · test"):].splitlines()
    ckpt_row = next(ln for ln in table if ln.startswith("| kmeans32 · checkpoint · trained on folder | 0 |"))
    run_row = next(ln for ln in table if ln.startswith("| kmeans32 · trained here · trained on folder | 0 |"))
    assert "| folder | checkpoint | 48 |" in ckpt_row and ckpt_row.split("|")[3:5] == run_row.split("|")[3:5]  # psnr, ssim
    r = bench("--results", results, "report", "--format", "csv", "--out", tmp_path / "report")
    assert r.exit_code == 0, r.output
    sheet = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    assert sorted(zip(sheet.dataset, sheet.label, sheet.trained_on.fillna("-"), sheet.source)) == [
        ("folder", "gray", "-", "no training"), ("folder", "kmeans32 · trained on folder", "folder", "trained here"),
        ("folder", "kmeans32 · trained on samples", "samples", "trained here"), ("samples", "gray", "-", "no training"),
        ("samples", "kmeans32 · checkpoint · trained on folder", "folder", "checkpoint"),
        ("samples", "kmeans32 · trained here · trained on folder", "folder", "trained here"),
        ("samples", "kmeans32 · trained here · trained on samples", "samples", "trained here")]

    # usage errors, before any work
    r = bench("run", "--checkpoint", tmp_path / "missing.pt", *QUICK)
    assert r.exit_code == 2 and "missing.pt: no such file; check the path" in r.output
    cut = tmp_path / "cut.pt"  # a shared file that arrived truncated: never "delete it", it may be the only copy
    cut.write_bytes(ckpt.read_bytes()[:3000])
    for cmd in (["run", "--checkpoint", cut, *QUICK], ["colorize", "--checkpoint", cut, "--out", tmp_path / "out", photo]):
        r = bench(*cmd)
        assert r.exit_code == 2 and "cut.pt: not a loadable colorbench checkpoint" in r.output, r.output
        assert "it may be truncated: copy it again" in r.output and "delete" not in r.output
    assert bench("run", "--methods", "gray", "--train-root", tmp_path).exit_code == 2
    r = bench("run", "--methods", "kmeans32", "--train-on", "folder", "--dataset", "samples", *QUICK)
    assert r.exit_code == 2 and "folder: no --train-root given; pass --train-root DIR" in r.output  # the option that works
    r = bench("run", "--methods", "kmeans32", "--train-on", "folder", "--dataset", "samples", "--root", tmp_path, *QUICK)
    assert r.exit_code == 2 and "the folder --train-on folder trains on goes in --train-root" in r.output, r.output
    r = bench("run", "--methods", "gray", "--dataset", "folder,div2k", "--root", tmp_path, *QUICK)
    assert r.exit_code == 2 and "one --root serves one dataset" in r.output
    # a saved model's network and training are fixed: only --set predict.* applies to it, and applies
    for cmd in (["run", "--dataset", "samples", *QUICK], ["colorize", "--out", tmp_path / "out", photo]):
        for bad in (["--set", "params.width=8"], ["--set", "train.steps=3"]):
            r = bench(cmd[0], "--checkpoint", ckpt, *bad, *cmd[1:])
            assert r.exit_code == 2 and "a saved model's network and training are fixed" in r.output, r.output
    r = bench("run", "--checkpoint", ckpt, "--set", "predict.tile=abc", *QUICK)
    assert r.exit_code == 2 and "tile must be a number of pixels" in r.output, r.output
    r = bench("colorize", "--checkpoint", ckpt, "--set", "predict.tile=16", "--out", tmp_path / "out", photo)
    assert r.exit_code == 0 and "in 16-px tiles" in r.output, r.output
    r = bench("run", "--checkpoint", ckpt, "--dataset", "samples", "--set", "predict.tile=32", "--tile", "0", "--tag", "t32", *QUICK)
    assert r.exit_code == 0, r.output  # --set wins over --tile, as in a method's recipe
    tagged = json.loads((results / "eval/samples/test/kmeans32-s0-t32.json").read_text())
    assert tagged["prediction"] == {"short_side": 256, "tile": 32, "tile_overlap": 8}
    r = bench("run", "--methods", "gray", "--checkpoint", ckpt, "--set", "train.steps=3", "--tag", "both", *QUICK)
    assert r.exit_code == 0 and "note: train.steps applies to gray, not to the --checkpoint models" in r.output, r.output


def test_split_all_scores_a_test_only_folder_as_one_set(tmp_path, results):
    kodak = small_folder(tmp_path / "kodak")  # its hash split puts every image in train: test is empty
    r = bench("run", "--methods", "gray", "--dataset", "folder", "--root", kodak, "--split", "all", *QUICK)
    assert r.exit_code == 0, r.output
    res = json.loads(result_file(results / "eval/folder/all", "gray").read_text())
    assert res["split"] == "all" and res["n_images"] == 3 and res["dataset"]["n_images"] == 3
    assert not (results / "eval/folder/train").exists() and not (results / "eval/folder/test").exists()
    assert "WARNING" not in r.output  # nothing was trained on it
    # the old behaviour, by name: train and test scored separately; here test is empty, a usage error
    r = bench("run", "--methods", "gray", "--dataset", "folder", "--root", kodak, "--split", "train,test", *QUICK)
    assert r.exit_code == 2 and "the test split" in r.output and "is empty" in r.output
    assert bench("run", "--methods", "gray", "--split", "tset", *QUICK).exit_code == 2
    # a model scored on the images it was trained on is warned about, here and in the result
    r = bench("run", "--methods", "kmeans32", "--dataset", "folder", "--root", kodak, "--split", "all", *FAST, *QUICK)
    assert r.exit_code == 0, r.output
    assert "WARNING kmeans32: scored on folder/all, which holds the images it was trained on" in r.output
    res = json.loads(result_file(results / "eval/folder/all", "kmeans32").read_text())
    assert res["warnings"] and "trained on" in res["warnings"][0]
    r = bench("compare", "kmeans32", "gray", "--dataset", "folder", "--split", "all", "--resamples", "100")
    assert r.exit_code == 0 and r.output.startswith("WARNING kmeans32: scored on folder/all, which holds the images"), r.output


def test_the_published_zhang_weights_are_scored_as_published_or_unverified(tmp_path, results):
    import torch
    from test_published import release_state

    release = tmp_path / "eccv16-random.pth"
    torch.save(release_state(), release)
    r = bench("import", "zhang-eccv16", release, "--unverified")
    assert r.exit_code == 0, r.output
    model = results / "models" / "zhang-eccv16.pt"
    r = bench("run", "--checkpoint", model, "--dataset", "samples", *QUICK)
    assert r.exit_code == 0, r.output
    res = json.loads(result_file(results / "eval/samples/test", "zhang-eccv16").read_text())
    assert res["source"] == {"kind": "published", "path": str(model), "sha256": file_sha256(model), "weights": "unverified"}
    assert res["trained_on"] is None and res["adapter"] == "zhang" and res["prediction"]["tile"] is None
    assert res["n_images"] == 48 and 0 < res["metrics"]["psnr"]["mean"] < 100
    assert "published" in r.output  # the table's "trained on" column says where the weights come from
    [row] = bench_pkg.load_results(results).to_dict("records")
    assert (row["method"], row["source"], row["weights"], row["trained_on"], row["label"]) == \
        ("zhang-eccv16", "published", "unverified", None, "zhang-eccv16")
    md = render_markdown(build_report(results, tmp_path / "report", pictures=False))
    assert "| zhang-eccv16 | 0 |" in md and "| authors' data | published weights (unverified) [1] | 48 |" in md


def test_colorize_needs_a_method_or_a_checkpoint(tmp_path, results):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    for extra in ([], ["--method", "gray", "--checkpoint", tmp_path / "x.pt"]):
        r = bench("colorize", *extra, "--out", tmp_path / "o", tmp_path / "x.png")
        assert r.exit_code == 2 and "give --method NAME (a run trained here) or --checkpoint PATH" in r.output

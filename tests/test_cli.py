import json
import subprocess
import sys

import pandas as pd
from click.testing import CliRunner

from bench.cli import main
from conftest import result_file

FAST = ["--set", "train.steps=3", "--set", "train.batch_size=2", "--set", "train.image_size=32",
        "--set", "train.prepare_images=4", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_imports_no_torch():
    code = ("import sys; from click.testing import CliRunner; from bench.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'bench --help imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_list():
    assert "kmeans32" in invoke("list", "methods").output
    out = invoke("list", "datasets").output
    assert "samples" in out and "folder" in out
    out = invoke("list", "metrics").output
    assert "higher is better" in out and "lower is better" in out and "no better direction" in out
    for name in ("psnr", "ssim", "ciede2000", "auc", "auc_rebalanced", "colorfulness", "is", "fid", "lpips"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name


def test_unknown_method_exits_2_with_choices(results):
    r = invoke("run", "--methods", "gray,kmeans23")
    assert r.exit_code == 2
    assert "Did you mean 'kmeans32'" in r.output and "gray" in r.output


def test_unknown_dataset_exits_2_with_choices(results):
    r = invoke("run", "--methods", "gray", "--dataset", "div3k")
    assert r.exit_code == 2 and "samples" in r.output


def test_missing_root_names_path(tmp_path, results):
    missing = tmp_path / "no-such-photos"
    r = invoke("run", "--methods", "gray", "--dataset", "folder", "--root", str(missing))
    assert r.exit_code == 2 and str(missing) in r.output and "does not exist" in r.output


def test_corrupt_image_in_folder_names_file(folder_dataset, results):
    for p in folder_dataset.rglob("*.png"):
        p.write_bytes(b"not an image at all")
        break
    r = invoke("run", "--methods", "gray", "--dataset", "folder", "--root", str(folder_dataset), "--split", "all",
               "--on-bad-image", "error")  # the default, skip, is tested in test_datasets_bad_files.py
    assert r.exit_code == 2 and not results.exists()  # found before any work: nothing written
    assert p.name in r.output and "cannot decode" in r.output


def test_run_writes_results_and_table(folder_dataset, results, tmp_path, monkeypatch):
    # No Inception weights anywhere: IS is reported as unavailable (why, and where the file goes), the run goes on.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    # params.width is kmeans32's; gray has no parameters, and that is no error when one method takes it
    r = invoke("run", "--methods", "gray,kmeans32", "--dataset", "folder", "--root", str(folder_dataset), *FAST,
               "--set", "params.width=8", "--metrics", "psnr,ssim,is")
    assert r.exit_code == 0, r.output
    assert "gray" in r.output and "kmeans32" in r.output and "psnr" in r.output and "unavailable" in r.output
    assert "--set params.width applies to kmeans32 (gray has no 'width')" in r.output
    # one short line for the unavailable metrics, naming the missing file
    assert [ln for ln in r.output.splitlines() if "weights-inception-2015-12-05-6726825d.pth" in ln] == [
        "note: is unavailable here (missing weights-inception-2015-12-05-6726825d.pth; 'bench list metrics' says where "
        "files go): recorded as unavailable in the results"]
    res_path = result_file(results / "eval/folder/test", "kmeans32")
    res = json.loads(res_path.read_text())
    assert res["schema_version"] == 2 and res["status"] == "ok" and res_path.name == f"kmeans32-s0-{res['result_id']}.json"
    assert res["dataset"]["split"] == "test" and len(res["dataset"]["content_hash"]) == 64
    assert res["train"]["steps"] == 3 and res["environment"]["torch"] and res["recipe"]["params"]["width"] == 8
    assert list(res["metrics"]) == ["psnr", "ssim", "is"]
    is_ = res["metrics"]["is"]
    assert is_["available"] is False and is_["mean"] is None and "weights-inception" in is_["reason"]
    rows = pd.read_csv(res_path.with_suffix(".csv"))
    assert len(rows) == res["n_images"] and set(rows.columns) == {"id", "psnr", "ssim"}
    assert abs(rows["psnr"].mean() - res["metrics"]["psnr"]["mean"]) < 1e-5
    lo, hi = res["metrics"]["psnr"]["ci95"]
    assert lo <= res["metrics"]["psnr"]["mean"] <= hi
    assert "convention" in res["metrics"]["ssim"]
    # a second run trains nothing new; train-all applies params.width to kmeans32 and leaves gray alone
    r2 = invoke("train-all", "--methods", "gray,kmeans32", "--dataset", "folder", "--root", str(folder_dataset), *FAST,
                "--set", "params.width=8")
    assert r2.exit_code == 0, r2.output
    assert "kmeans32: already trained" in r2.output and "gray: needs no training" in r2.output


def test_failed_training_is_recorded(folder_dataset, results, monkeypatch):
    # valid settings that fail only once training runs (here the palette fit, made to fail): exit 1, not a usage error
    import bench.methods.kmeans_cnn as kmeans_cnn

    def broken_kmeans(*args, **kwargs):
        raise ValueError("kmeans: no usable ab samples")

    monkeypatch.setattr(kmeans_cnn, "kmeans", broken_kmeans)
    r = invoke("run", "--methods", "kmeans32", "--dataset", "folder", "--root", str(folder_dataset), *FAST)
    path = result_file(results / "eval/folder/test", "kmeans32", failed=True)
    assert r.exit_code == 1 and "kmeans32: training FAILED" in r.output
    assert f"1 of 1 method(s) failed:\n  kmeans32: training failed (recorded in {path})" in r.output
    res = json.loads(path.read_text())
    assert res["status"] == "failed" and res["stage"] == "train" and "kmeans" in res["error"]


def test_our_warnings_read_as_one_line_on_the_terminal():
    code = ("import warnings; from click.testing import CliRunner; from bench.cli import main; "
            "from bench.methods._nets import PretrainedWeightsMissing; "
            "assert CliRunner().invoke(main, ['list', 'methods']).exit_code == 0; "
            "warnings.warn('weights missing', PretrainedWeightsMissing); warnings.warn('theirs', DeprecationWarning)")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == "WARNING: weights missing"  # ours: the message alone
    assert "DeprecationWarning: theirs" in out.stderr and "<string>:1" in out.stderr  # others: Python's own format

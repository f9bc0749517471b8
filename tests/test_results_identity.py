"""Every result is keyed by what produced it: settings side by side, re-runs replace only their own result,
a failure never overwrites a good result, and compare/check address results without ambiguity."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from _result_store import make_store
from bench.cli import main
from bench.datasets import DATASETS
from bench.identity import labels, method_code, source_closure
from bench.recipes import load_recipe
from conftest import result_file

QUICK = ["--metrics", "psnr", "--no-progress", "--bootstrap", "0"]
FAST = ["--set", "train.steps=3", "--set", "train.batch_size=2", "--set", "train.image_size=32",
        "--set", "train.prepare_images=4"]


def bench(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_settings_live_side_by_side_and_reruns_replace_only_their_own(folder_dataset, results, tmp_path):
    base = ["run", "--methods", "gray", "--dataset", "folder", "--root", str(folder_dataset), *QUICK]
    assert bench(*base).exit_code == 0
    assert bench(*base, "--set", "train.batch_size=4").exit_code == 0
    folder = results / "eval" / "folder" / "test"
    first = {p.name: p.read_bytes() for p in folder.glob("gray-s0-*.json")}
    assert len(first) == 2  # two settings, two files: the second did not overwrite the first
    data = {json.loads(b)["recipe"]["train"]["batch_size"]: json.loads(b) for b in first.values()}
    assert set(data) == {16, 4} and all(d["schema_version"] == 2 for d in data.values())
    for d in data.values():
        assert d["identity"]["recipe"] == d["recipe"] and d["identity_hash"].startswith(d["result_id"])
        assert set(d["identity"]) >= {"recipe", "training", "data", "prediction", "metrics", "code"}
    # the same settings again: that result is rewritten in place, the other is left as it was
    assert bench(*base).exit_code == 0
    after = {p.name: p.read_bytes() for p in folder.glob("gray-s0-*.json")}
    assert set(after) == set(first)
    other = f"gray-s0-{data[4]['result_id']}.json"
    assert after[other] == first[other]
    # a tag names the result instead of the hash
    assert bench(*base, "--tag", "mine").exit_code == 0
    tagged = json.loads((folder / "gray-s0-mine.json").read_text())
    assert tagged["tag"] == "mine" and tagged["result_id"] == "mine" and len(list(folder.glob("gray-s0-*.json"))) == 3
    r = bench(*base, "--tag", "no/good")
    assert r.exit_code == 2 and "--tag" in r.output

    # compare: a bare method name is ambiguous here and the error lists every candidate ...
    r = bench("compare", "gray", "gray@mine", "--dataset", "folder")
    assert r.exit_code == 1 and "gray names 3 results" in r.output
    for d in (*data.values(), tagged):
        assert f"gray@{d['result_id']}" in r.output
    # ... and a tag or a hash prefix names one
    r = bench("compare", "gray@mine", f"gray@{data[16]['result_id']}", "--dataset", "folder")
    assert r.exit_code == 0 and "identical" in r.output, r.output
    r = bench("compare", "gray@mine", f"gray@{data[4]['identity_hash'][:6]}", "--dataset", "folder")  # a hash prefix
    assert r.exit_code == 0 and "identical" in r.output, r.output
    r = bench("compare", "gray@mine", f"gray@{data[16]['identity_hash'][:6]}", "--dataset", "folder")
    assert r.exit_code == 1 and "names 2 results" in r.output  # the tagged run has the same settings, so the same hash
    r = bench("compare", "gray@nothing", "gray@mine", "--dataset", "folder")
    assert r.exit_code == 1 and "matches 'nothing'" in r.output and "gray@mine" in r.output
    # a name or seed with no result says what there is
    r = bench("compare", "grey", "gray@mine", "--dataset", "folder")
    assert r.exit_code == 1 and "did you mean gray? results on folder/test are of: gray; grey is not a colorbench method" in r.output
    r = bench("compare", "gray", "gray@mine", "--dataset", "folder", "--seed", "3")
    assert r.exit_code == 1 and "gray has results there for seed 0 (--seed, --seed-b)" in r.output, r.output
    assert "run 'bench run --methods gray --dataset folder --split test --seed 3'" in r.output

    # the report has a row per result, each labelled by how it differs from the other rows of its method
    from bench.report import build_report

    table = build_report(results, tmp_path / "rep", pictures=False).sections[0].table
    assert sorted(row[0].text for row in table.rows) == ["gray · batch_size=16", "gray · batch_size=4", "gray · mine · batch_size=16"]

    # check: several results under one key cannot go into a baseline without saying which
    r = bench("check", "--results", str(results), "--baseline", str(tmp_path / "b.json"), "--update-baseline")
    assert r.exit_code == 1 and "several results of one method" in r.output
    assert all(f"gray@{d['result_id']}" in r.output for d in data.values()) and "gray@mine" not in r.output  # a tag is its own key
    for name in first:
        if name != other:
            (folder / name).unlink()
    assert bench("check", "--results", str(results), "--baseline", str(tmp_path / "b.json"), "--update-baseline").exit_code == 0
    entries = json.loads((tmp_path / "b.json").read_text())["results"]
    assert sorted((e["tag"], e["result_id"]) for e in entries if e["tag"]) == [("mine", "mine")]
    assert bench("check", "--results", str(results), "--baseline", str(tmp_path / "b.json")).exit_code == 0


def test_a_failed_rerun_is_written_beside_the_good_result(folder_dataset, results, tmp_path):
    """A finished run whose checkpoint was truncated is not "already trained": the re-run fails and says how
    to retrain, the failure lands beside the good result (never over it), and a retrain supersedes it."""
    args = ["--dataset", "folder", "--root", str(folder_dataset), *FAST]
    assert bench("run", "--methods", "kmeans32", *args, *QUICK).exit_code == 0
    folder = results / "eval" / "folder" / "test"
    good = result_file(folder, "kmeans32")
    good_bytes = good.read_bytes()
    [run_dir] = (results / "train" / "kmeans32").iterdir()
    assert len(json.loads((run_dir / "train.json").read_text())["checkpoint_sha256"]) == 64
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # a disk that filled up, a copy cut short

    r = bench("train", "--method", "kmeans32", *args, "--no-progress")
    assert r.exit_code == 1 and "does not match the SHA-256" in r.output and "--restart" in r.output
    r = bench("run", "--methods", "kmeans32", *args, *QUICK)
    assert r.exit_code == 1 and "FAILED" in r.output
    failed = result_file(folder, "kmeans32", failed=True)
    assert failed.name == good.name.replace(".json", ".failed.json") and good.read_bytes() == good_bytes
    assert json.loads(failed.read_text())["stage"] == "train"
    # reports and checks still use the good result
    from bench.check import current_results

    ok, failures = current_results(results)
    assert [e["result_id"] for v in ok.values() for e in v] == [json.loads(good_bytes)["result_id"]] and not failures

    r = bench("train", "--method", "kmeans32", *args, "--no-progress", "--restart")
    assert r.exit_code == 0, r.output
    assert bench("run", "--methods", "kmeans32", *args, *QUICK).exit_code == 0
    assert not failed.exists() and result_file(folder, "kmeans32") == good  # same settings: the same file


def test_schema_1_results_are_read_and_addressed(tmp_path):
    from bench.identity import resolve_result

    root = tmp_path / "results"
    old = make_store(root, methods=("gray", "kmeans32"), schema=1)["gray"]
    new = make_store(root, methods=("gray",))["gray"]
    assert old.name == "gray-s0.json" and new.name.startswith("gray-s0-")
    new_id = json.loads(new.read_text())["result_id"]
    r = CliRunner().invoke(main, ["--results", str(root), "compare", "gray", "kmeans32", "--dataset", "toy"])
    assert r.exit_code == 1 and "gray@schema1" in r.output and f"gray@{new_id}" in r.output
    r = CliRunner().invoke(main, ["--results", str(root), "compare", "gray@schema1", "kmeans32", "--dataset", "toy"])
    assert r.exit_code == 0, r.output
    assert resolve_result(root, f"gray@{new_id}", "toy", "test").path == new
    assert labels([json.loads(old.read_text()), json.loads(new.read_text())]) == ["gray · schema 1", "gray · predicted whole · schema 2"]


def test_training_identity_is_data_content_and_method_code(folder_dataset, tmp_path):
    """Moved data is the same data (no retraining); an edited method is another method (retrained)."""
    from bench.checkpoint import run_identity

    moved = shutil.copytree(folder_dataset, tmp_path / "elsewhere")
    recipe = load_recipe("kmeans32", "cpu")
    a = run_identity(recipe, DATASETS.get("folder")("train", folder_dataset), 0)
    b = run_identity(recipe, DATASETS.get("folder")("train", moved), 0)
    assert a == b and str(folder_dataset) not in json.dumps(a)
    assert a["dataset"]["short_side"] == 256 and a["code"]["source_sha256"]

    module = tmp_path / "plugin_method.py"
    module.write_text("from bench.methods.base import Method\n\nclass Mine(Method):\n    pass\n")
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        mine = importlib.import_module("plugin_method").Mine
        assert {"plugin_method", "bench.methods.base", "bench.config", "bench.registry"} <= set(source_closure("plugin_method"))
        before = method_code(mine)["source_sha256"]
        module.write_text(module.read_text() + "\nSCALE = 2  # an edit\n")
        source_closure.cache_clear()
        assert method_code(mine)["source_sha256"] != before
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("plugin_method", None)
        source_closure.cache_clear()

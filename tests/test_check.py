"""bench check: pass, drift with the right table, missing results, data changes, update-baseline round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _result_store import HASH_B, make_store
from bench.check import CheckError, Tolerance, compare, current_results, entry_of, parse_tolerances, read_baseline
from bench.cli import main


def bench(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, Path], Path]:
    root = tmp_path / "results"
    paths = make_store(root, methods=("gray", "kmeans32"))
    baseline = tmp_path / "baselines" / "ci.json"
    r = bench("check", "--results", str(root), "--baseline", str(baseline), "--update-baseline")
    assert r.exit_code == 0, r.output
    return root, paths, baseline


def edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def table_line(output: str, method: str, metric: str) -> list[str]:
    lines = [ln.split() for ln in output.splitlines() if ln.startswith(method + " ") and f" {metric} " in f" {ln} "]
    assert len(lines) == 1, output
    return lines[0]


def test_update_baseline_round_trip(store):
    root, paths, baseline = store
    data = read_baseline(baseline)
    assert [(e["method"], e["dataset"], e["split"], e["seed"]) for e in data["results"]] == [
        ("gray", "toy", "test", 0), ("kmeans32", "toy", "test", 0)]
    assert data["results"][1] == entry_of(json.loads(paths["kmeans32"].read_text()))
    assert data["results"][1]["metrics"]["psnr"] == {"mean": pytest.approx(23.25), "higher_is_better": True}
    assert data["tolerance"] == {"psnr": "0.05", "ssim": "0.002", "*": "0.5%"}
    assert not list(baseline.parent.glob("*.tmp"))  # written atomically, nothing left behind
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 0, r.output
    assert table_line(r.output, "kmeans32", "psnr")[-2:] == ["0.05", "ok"]
    assert "OK: 4 line(s) within tolerance" in r.output
    # updating again with a deliberate change shows what moved, then the check passes against the new file
    edit(paths["gray"], lambda d: d["metrics"]["psnr"].update(mean=21.0))
    r = bench("check", "--results", str(root), "--baseline", str(baseline), "--update-baseline", "--tolerance", "psnr=0.1")
    assert r.exit_code == 0 and "DRIFT" in r.output and "wrote" in r.output
    assert read_baseline(baseline)["tolerance"]["psnr"] == "0.1"
    assert bench("check", "--results", str(root), "--baseline", str(baseline)).exit_code == 0


def test_drift_fails_with_the_right_table(store):
    root, paths, baseline = store
    edit(paths["kmeans32"], lambda d: d["metrics"]["psnr"].update(mean=d["metrics"]["psnr"]["mean"] - 0.1))
    edit(paths["kmeans32"], lambda d: d["metrics"]["ssim"].update(mean=d["metrics"]["ssim"]["mean"] + 0.001))
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 1
    assert table_line(r.output, "kmeans32", "psnr") == [
        "kmeans32", "toy", "test", "0", "psnr", "23.250000", "23.150000", "-0.100000", "0.05", "DRIFT:", "worse"]
    assert table_line(r.output, "kmeans32", "ssim")[-3:] == ["+0.001000", "0.002", "ok"]
    assert table_line(r.output, "gray", "psnr")[-1] == "ok"
    assert "FAILED: 1 problem(s)" in r.output and "--update-baseline" in r.output
    # a looser tolerance on the command line lets the same change pass
    assert bench("check", "--results", str(root), "--baseline", str(baseline), "--tolerance", "psnr=0.2").exit_code == 0
    # a relative tolerance: 0.1 dB of 23.25 is 0.43%
    assert bench("check", "--results", str(root), "--baseline", str(baseline), "--tolerance", "psnr=0.4%").exit_code == 1
    assert bench("check", "--results", str(root), "--baseline", str(baseline), "--tolerance", "psnr=0.5%").exit_code == 0


def test_missing_method_fails(store):
    root, paths, baseline = store
    paths["kmeans32"].unlink()
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 1
    assert table_line(r.output, "kmeans32", "*")[-4:] == ["MISSING:", "no", "current", "result"]
    # a failed run is as missing, and says why
    paths["kmeans32"].write_text(json.dumps({"schema_version": 1, "status": "failed", "method": "kmeans32", "dataset": {"name": "toy"},
                                             "split": "test", "seed": 0, "error": "RuntimeError: boom"}))
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 1 and "MISSING: the result failed: RuntimeError: boom" in r.output


def test_changed_data_is_not_comparable_and_new_results(store, tmp_path):
    root, paths, baseline = store
    edit(paths["gray"], lambda d: d["dataset"].update(content_hash=HASH_B))
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 1 and "NOT COMPARABLE: dataset content hash changed since the baseline" in r.output
    edit(paths["gray"], lambda d: d["dataset"].update(content_hash="a" * 64))
    make_store(root, methods=("gray",), dataset="toy2")
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 0 and "new: gray@" in r.output and "is not in the baseline" in r.output
    assert bench("check", "--results", str(root), "--baseline", str(baseline), "--fail-on-new").exit_code == 1


def test_update_refuses_failed_results_and_bad_input(store, tmp_path):
    root, paths, baseline = store
    (root / "eval" / "toy" / "test" / "zhang-s0.json").write_text(json.dumps(
        {"schema_version": 1, "status": "failed", "method": "zhang", "dataset": {"name": "toy"}, "split": "test", "seed": 0}))
    before = baseline.read_text()
    r = bench("check", "--results", str(root), "--baseline", str(baseline), "--update-baseline")
    assert r.exit_code == 1 and "refusing to write a baseline while results failed (zhang/toy/test/0)" in r.output
    assert baseline.read_text() == before
    r = bench("check", "--results", str(root), "--baseline", str(tmp_path / "none.json"))
    assert r.exit_code == 2 and "none.json does not exist" in r.output  # a usage error: nothing was checked
    (tmp_path / "bad.json").write_text("{}")
    assert "not a colorbench baseline" in bench("check", "--results", str(root), "--baseline", str(tmp_path / "bad.json")).output
    r = bench("check", "--results", str(root), "--baseline", str(baseline), "--tolerance", "psnr")
    assert r.exit_code == 2 and "expected METRIC=VALUE" in r.output


def test_tolerances_and_unavailable_metrics():
    assert parse_tolerances(["psnr=0.1,ssim=0.01", "*=2%"]) == {"psnr": "0.1", "ssim": "0.01", "*": "2%"}
    assert Tolerance.parse("2%", "x").allowed(50.0) == pytest.approx(1.0)
    with pytest.raises(CheckError, match="not a number"):
        parse_tolerances(["psnr=abc"])
    base = {"results": [{"method": "m", "dataset": "d", "split": "test", "seed": 0, "metrics": {
        "fid": {"mean": 30.0, "higher_is_better": False}, "is": {"mean": None, "higher_is_better": True}}}]}
    cur = {("m", "d", "test", 0, ""): [{"metrics": {"fid": {"mean": None, "higher_is_better": False},
                                                   "is": {"mean": None, "higher_is_better": True}}}]}
    comp = compare(base, cur, {}, {"*": "1%"})
    status = {ln.metric: ln.status for ln in comp.lines}
    assert status == {"fid": "UNAVAILABLE", "is": "ok"} and comp.failed


def test_current_results_reads_unavailable_as_none(tmp_path):
    root = tmp_path / "results"
    make_store(root, methods=("gray",), extra_metrics={"is": {"available": False, "reason": "no weights", "higher_is_better": True}})
    ok, failed = current_results(root)
    assert not failed and ok[("gray", "toy", "test", 0, "")][0]["metrics"]["is"] == {"mean": None, "higher_is_better": True}


def test_update_with_dataset_filter_keeps_other_datasets(store):
    root, paths, baseline = store
    make_store(root, methods=("gray",), dataset="toy2")
    r = bench("check", "--results", str(root), "--baseline", str(baseline), "--update-baseline", "--dataset", "toy2")
    assert r.exit_code == 0 and "(+2 kept from other datasets)" in r.output
    entries = sorted((e["method"], e["dataset"]) for e in read_baseline(baseline)["results"])
    assert entries == [("gray", "toy"), ("gray", "toy2"), ("kmeans32", "toy")]
    assert bench("check", "--results", str(root), "--baseline", str(baseline), "--fail-on-new").exit_code == 0


def test_results_with_new_metrics_and_intervals_check_against_an_older_baseline(store):
    """Issue 5 adds ci95, availability and more metrics to results: a baseline of psnr/ssim means still
    checks them, the unavailable and new metrics are named once (not checked), and a new baseline
    records an unavailable metric as no value."""
    root, paths, baseline = store
    for path in paths.values():
        def add(d):
            for m in d["metrics"].values():
                m["ci95"] = [m["mean"] - 0.5, m["mean"] + 0.5]
            d["metrics"]["ciede2000"] = {"mean": 9.5, "n": 2, "ci95": [9.0, 10.0], "higher_is_better": False}
            d["metrics"]["is"] = {"mean": None, "n": 0, "ci95": None, "higher_is_better": True, "available": False,
                                  "reason": "Inception weights not found"}
        edit(path, add)
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 0, r.output
    assert "OK: 4 line(s) within tolerance" in r.output
    notes = [ln for ln in r.output.splitlines() if ln.startswith("note:") and "not in the baseline" in ln]
    assert notes == ["note: every result: metric(s) ciede2000, is not in the baseline (not checked)"]
    new = baseline.parent / "new.json"
    assert bench("check", "--results", str(root), "--baseline", str(new), "--update-baseline").exit_code == 0
    entry = read_baseline(new)["results"][0]["metrics"]
    assert entry["is"] == {"mean": None, "higher_is_better": True} and entry["ciede2000"]["mean"] == 9.5
    r = bench("check", "--results", str(root), "--baseline", str(new))
    assert r.exit_code == 0 and "unavailable in both" in r.output


def test_a_baseline_from_another_cpu_model_is_named_in_a_note(store):
    root, paths, baseline = store
    for path in paths.values():
        edit(path, lambda d: d.setdefault("environment", {}).update(cpu="Intel(R) Xeon(R) Processor"))
    r = bench("check", "--results", str(root), "--baseline", str(baseline), "--update-baseline")
    assert r.exit_code == 0, r.output
    assert {e["cpu"] for e in read_baseline(baseline)["results"]} == {"Intel(R) Xeon(R) Processor"}
    for path in paths.values():
        edit(path, lambda d: d["environment"].update(cpu="AMD EPYC 9B14"))
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 0, r.output  # a note, not a failure: the metrics are what decide
    assert "note: the baseline was computed on another CPU model (Intel(R) Xeon(R) Processor -> AMD EPYC 9B14)" in r.output
    for path in paths.values():
        edit(path, lambda d: d["environment"].update(cpu="Intel(R) Xeon(R) Processor"))
    assert "another CPU model" not in bench("check", "--results", str(root), "--baseline", str(baseline)).output


def test_a_baseline_entry_picks_its_result_by_id_or_fails_listing_the_candidates():
    entry = {"method": "unet", "dataset": "d", "split": "test", "seed": 0, "tag": None, "result_id": "aaaaaaaaaa",
             "metrics": {"psnr": {"mean": 20.0, "higher_is_better": True}}}
    def cur(rid: str, psnr: float) -> dict:
        return {**entry, "result_id": rid, "metrics": {"psnr": {"mean": psnr, "higher_is_better": True}}}
    key = ("unet", "d", "test", 0, "")
    picked = compare({"results": [entry]}, {key: [cur("bbbbbbbbbb", 10.0), cur("aaaaaaaaaa", 20.0)]}, {}, {})
    assert [ln.status for ln in picked.lines] == ["ok"]  # the one with the baseline's id, not the other setting
    lost = compare({"results": [entry]}, {key: [cur("bbbbbbbbbb", 10.0), cur("cccccccccc", 20.0)]}, {}, {})
    [line] = lost.lines
    assert line.status == "AMBIGUOUS" and line.failed and "unet@bbbbbbbbbb" in line.detail and "unet@cccccccccc" in line.detail
    moved = compare({"results": [entry]}, {key: [cur("cccccccccc", 20.0)]}, {}, {})
    assert not moved.failed and any("identity changed since the baseline (aaaaaaaaaa -> cccccccccc" in n for n in moved.notes)


def test_outputs_made_elsewhere_are_checked_under_no_seed(tmp_path):
    from _result_store import add_result, external_source

    root = tmp_path / "results"
    make_store(root, methods=("gray",))
    ext = add_result(root, "theirs", [25.0] * 5, [0.9] * 5, source=external_source("theirs"), stem="theirs")
    edit(ext, lambda d: d.update(seed=None))  # as bench score writes them: no seed of ours
    baseline = tmp_path / "ci.json"
    assert bench("check", "--results", str(root), "--baseline", str(baseline), "--update-baseline").exit_code == 0
    assert [e["seed"] for e in read_baseline(baseline)["results"]] == [0, None]
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 0 and table_line(r.output, "theirs", "psnr")[:4] == ["theirs", "toy", "test", "—"], r.output
    edit(ext, lambda d: d["metrics"]["psnr"].update(mean=24.0))
    r = bench("check", "--results", str(root), "--baseline", str(baseline))
    assert r.exit_code == 1 and table_line(r.output, "theirs", "psnr")[-2:] == ["DRIFT:", "worse"], r.output

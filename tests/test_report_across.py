"""Reports across seeds, datasets and sources: rows over seeds (mean ± sample sd) with each seed's row kept,
the overview table, the "trained on" column and its warning, external and published rows marked, the CSV
format and ``bench.load_results``. Golden rows are written by hand from the fixed store's values."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _result_store import HASH_B, add_result, external_source, make_store, published_source, seeds_store
from click.testing import CliRunner

import bench
from bench.cli import main
from bench.identity import labels
from bench.report import build_report
from bench.report.html import render_html
from bench.report.markdown import render_markdown

HEAD = "| method | seed | psnr ↑ (dB) | ssim ↑ | trained on | source | images | train time | recipe | predicted | date | commit |"
RULE = "|---|---:|---:|---:|---|---|---:|---:|---|---|---|---|"
TAIL = " | whole | 2026-01-02 | 01234567 |"
GOLDEN_OVERVIEW = [
    "| method | trained on | source | [toy · test: psnr ↑ (dB)](#section-0) | [toy · test: ssim ↑](#section-0) "
    "| [toy2 · test: psnr ↑ (dB)](#section-1) | [toy2 · test: ssim ↑](#section-1) |",
    "|---|---|---|---:|---:|---:|---:|",
    "| kmeans32 | own train split | trained here | **23.50** | 0.9053 | **22.50** | 0.9053 |",
    "| gray | — | no training | 22.50 | **0.9400** | 21.50 | **0.9400** |",
]
# toy: kmeans32 seeds 0 and 1 score 23.25 and 23.75 dB (mean 23.5, sample sd 0.3536), SSIM 0.9103 and 0.9003
GOLDEN_TOY = [
    HEAD, RULE,
    "| kmeans32 | mean ± sd of 0, 1 | **23.50 ± 0.35** | 0.9053 ± 0.0071 | toy | trained here | 5 | 78 s | cpu · 40 steps × 8" + TAIL,
    "| gray | mean ± sd of 0, 1 | 22.50 ± 0.00 | **0.9400 ± 0.0000** | — | no training | 5 | no training | cpu · no training" + TAIL,
]
GOLDEN_TOY_SEEDS = [
    HEAD, RULE,
    "| kmeans32 | 0 | 23.25 ± 0.50 | 0.9103 | toy | trained here | 5 | 75 s | cpu · 40 steps × 8" + TAIL,
    "| kmeans32 | 1 | 23.75 ± 0.50 | 0.9003 | toy | trained here | 5 | 80 s | cpu · 40 steps × 8" + TAIL,
    "| gray | 0 | 22.50 ± 0.50 | 0.9400 | — | no training | 5 | no training | cpu · no training" + TAIL,
    "| gray | 1 | 22.50 ± 0.50 | 0.9400 | — | no training | 5 | no training | cpu · no training" + TAIL,
]


def block(lines: list[str], first: str, n: int, after: int = 0) -> list[str]:
    """The ``n`` lines from the ``after``-th occurrence (0-based) of ``first``."""
    starts = [i for i, line in enumerate(lines) if line == first]
    return lines[starts[after]: starts[after] + n]


def test_two_seeds_two_datasets_golden_rows(tmp_path):
    root = seeds_store(tmp_path / "results")
    rep = build_report(root, tmp_path / "out", pictures=False)
    lines = render_markdown(rep).splitlines()
    assert lines.index("## Overview") < lines.index("## toy · test") < lines.index("## toy2 · test")
    assert block(lines, GOLDEN_OVERVIEW[0], 4) == GOLDEN_OVERVIEW
    assert block(lines, HEAD, 4, 0) == GOLDEN_TOY
    assert lines.index("### toy · test: each seed") < lines.index(GOLDEN_TOY_SEEDS[2])
    assert block(lines, HEAD, 6, 1) == GOLDEN_TOY_SEEDS
    assert '<a id="section-1"></a>' in lines and "sample standard deviation (n-1)" in "\n".join(lines)

    # the spread is the sample standard deviation (n - 1) of the seeds' means, read here from the per-image files
    toy = rep.sections[0]
    [km] = [e for e in toy.entries if e.method == "kmeans32"]
    means = [pd.read_csv(r.path.with_suffix(".csv"))["psnr"].mean() for r in km.results]
    assert means == pytest.approx([23.25, 23.75])
    cell = toy.table.rows[0][2]
    assert cell.sort == pytest.approx(statistics.fmean(means)) and cell.sd == pytest.approx(statistics.stdev(means))
    assert cell.sd == pytest.approx(0.5 / 2 ** 0.5)

    # HTML: the overview opens the page, its headings link each table, each seed's row is folded below its table
    page = render_html(rep)
    assert page.index('id="table-overview"') < page.index('id="section-0"') < page.index('id="section-1"')
    for target in set(re.findall(r'<th [^>]*><a href="#([^"]+)"', page)):
        assert f'id="{target}"' in page
    folded = page[page.index('<details class="seeds" id="seeds-0">'): page.index("</details>")]
    assert "each seed's own row (4 rows of 2 settings)" in folded and 'id="table-0-seeds"' in folded
    assert folded.count("<tr>") + folded.count('<tr class="baseline">') == 1 + 4  # the heading and four seeds
    assert '<tr class="mean">' in page and '<tr class="baseline mean">' in page


def test_one_table_has_no_overview_and_no_seed_table(tmp_path):
    root = tmp_path / "results"
    make_store(root)
    rep = build_report(root, tmp_path / "out", pictures=False)
    assert rep.overview is None and rep.sections[0].seeds is None
    assert "Overview" not in render_markdown(rep) and "<details" not in render_html(rep)


def test_trained_on_column_and_warning(tmp_path):
    root = tmp_path / "results"
    make_store(root, methods=("gray", "kmeans32"))  # trained on toy, scored on toy
    make_store(root, methods=("kmeans32",), trained_on="toy2", psnr_offset=-2)  # trained on toy2, scored on toy
    # toy2: a result written before results named their training data (no trained_on, no source)
    make_store(root, methods=("gray", "kmeans32"), dataset="toy2", content_hash=HASH_B, legacy=True)
    rep = build_report(root, tmp_path / "out", pictures=False)
    toy, toy2 = rep.sections
    assert [row[0].text for row in toy.table.rows] == ["kmeans32 · trained on toy", "gray", "kmeans32 · trained on toy2"]
    keys = [h.key for h in toy.table.headers]
    assert [row[keys.index("trained_on")].text for row in toy.table.rows] == ["toy", "—", "toy2"]
    md = render_markdown(rep)
    warning = ("> **Warning:** The rows of this table were trained on different data (toy's train split; toy2's train "
               "split): a gap between two rows is a difference of method and of training data together.")
    assert md.count(warning) == 1 and md.index(warning) < md.index("## toy2 · test")
    assert "Some tables mix rows trained on different data (toy · test)" in md  # said above the overview too
    # the older result: trained on its own dataset (the only way colorbench trained then), said to be inferred
    cell = next(row for row in toy2.table.rows if row[0].text == "kmeans32")[keys.index("trained_on")]
    assert cell.text == "toy2" and "inferred" in cell.title
    # overview: rows by training data; the toy2-trained setting scored on both sets is one row
    overview = {(row[0].text, row[1].text): [c.text for c in row[3:]] for row in rep.overview.table.rows}
    assert overview == {("kmeans32 · trained on toy", "toy"): ["23.25", "0.9103", "—", "—"],
                        ("gray", "—"): ["22.50", "0.9400", "22.50", "0.9400"],
                        ("kmeans32 · trained on toy2", "toy2"): ["21.25", "0.9103", "23.25", "0.9103"]}


def test_seeds_of_one_setting_read_alike_other_training_does_not(tmp_path):
    """A training identity holds the seed: seeds of one setting still share a label; two trainings of one
    seed that nothing readable tells apart are labelled by their training identity."""
    root = tmp_path / "results"
    a = json.loads(make_store(root, methods=("kmeans32",))["kmeans32"].read_text())
    b = json.loads(make_store(root, methods=("kmeans32",), seed=1)["kmeans32"].read_text())
    assert a["identity"]["training"] != b["identity"]["training"]
    assert labels([a, b]) == ["kmeans32", "kmeans32"]
    c = {**b, "seed": 0, "identity": {**b["identity"], "seed": 0}}
    assert labels([a, c]) == [f"kmeans32 · training {a['identity']['training'][:8]}", f"kmeans32 · training {b['identity']['training'][:8]}"]


def test_outputs_of_one_name_from_two_places_are_labelled_by_where_they_came_from(tmp_path):
    from _result_store import result

    kw = dict(psnr=[20.0] * 5, ssim=[0.9] * 5, ci=None, run_dir=None, file_stem="x")
    a = result("paper", source=external_source("paper", predictions="/data/release-v1"), **kw)
    b = result("paper", source=external_source("paper", predictions="/data/release-v2"), **kw)
    assert labels([a, b]) == ["paper · from release-v1", "paper · from release-v2"]


EVIL_ABOUT = "NTIRE 2019 entry <img src=x onerror=alert(3)> | **bold**"


def marked_store(root: Path) -> Path:
    make_store(root, methods=("gray", "kmeans32"))
    add_result(root, "theirs", [21.0, 22.0, 23.0, 24.0], [0.9] * 4,
               source=external_source("theirs", about=EVIL_ABOUT, n_expected=5, n_scored=4))
    add_result(root, "zhang", [19.0] * 5, [0.8] * 5, source=published_source())
    add_result(root, "zhang", [19.5] * 5, [0.8] * 5, source=published_source("unverified"), tag="other")
    make_store(root, methods=("gray",), dataset="toy2", content_hash=HASH_B)
    add_result(root, "theirs", [20.0] * 5, [0.9] * 5, dataset="toy2", content_hash=HASH_B,
               source=external_source("theirs", about=EVIL_ABOUT, n_expected=5, n_scored=5))
    return root


def test_external_and_published_rows_are_marked_on_every_leaderboard(tmp_path):
    root = marked_store(tmp_path / "results")
    rep = build_report(root, tmp_path / "out", pictures=False)
    md = render_markdown(rep)
    escaped_about = r"about: NTIRE 2019 entry \<img src=x onerror=alert(3)\> \| \*\*bold\*\*"
    for table in (rep.overview.table, rep.sections[0].table, rep.sections[1].table):
        keys = [h.key for h in table.headers]
        row = next(r for r in table.rows if r[0].text == "theirs")
        source = row[keys.index("source")]
        assert source.text == "external" and source.note
        assert table.notes[source.note - 1].startswith("theirs: external: outputs made elsewhere, scored here from /data/theirs")
        assert row[keys.index("trained_on")].text == "unknown"
    keys = [h.key for h in rep.sections[0].table.headers]
    toy = {r[0].text: r for r in rep.sections[0].table.rows}
    assert toy["theirs"][keys.index("images")].text == "4 of 5" and toy["theirs"][keys.index("predicted")].text == "elsewhere"
    assert md.count(escaped_about) == 3  # the overview's row, and each table's
    # n of N: where images were skipped (toy), on the table's row and the overview's cell; toy2 scored them all
    assert "[1] theirs: external: outputs made elsewhere, scored here from /data/theirs; " + escaped_about + \
        "; 4 of 5 images scored (1 skipped)" in md
    overview = {r[0].text: r for r in rep.overview.table.rows}["theirs"]
    assert overview[3].note and rep.overview.table.notes[overview[3].note - 1] == "theirs on toy · test: 4 of 5 images scored (1 skipped)"
    assert overview[5].note is None and "skipped" not in " ".join(rep.sections[1].table.notes)
    assert toy["zhang · published weights"][keys.index("source")].text == "published weights"
    assert toy["zhang · other · published weights (unverified)"][keys.index("source")].text == "published weights (unverified)"
    assert toy["zhang · published weights"][keys.index("trained_on")].text == "authors' data"
    assert "its SHA-256 does not match the published file's" in md and "matches the prefix in the published file's name" in md
    page = render_html(rep)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(3)&gt;" in page and page.count("<script>") == 1
    assert "The rows of this table were trained on different data" in page  # the authors' data, unknown data, toy's


def test_rows_scored_on_part_of_the_set_are_not_ranked_and_result_warnings_are_shown(tmp_path):
    root = tmp_path / "results"
    make_store(root, methods=("gray", "kmeans32"))
    # outputs made elsewhere for 4 of the 5 images, the hardest left out: the highest mean, on easier images
    add_result(root, "theirs", [30.0] * 4, [0.99] * 4, source=external_source("theirs", n_expected=5, n_scored=4))
    fit = add_result(root, "fitted", [40.0] * 5, [0.5] * 5, run_dir="r", tag="fit")
    data = json.loads(fit.read_text())
    data["warnings"] = ["scored on toy/test, which holds the images it was trained on (toy/train): these scores measure "
                        "how well it fits its training images"]
    fit.write_text(json.dumps(data))
    make_store(root, methods=("gray",), dataset="toy2", content_hash=HASH_B)  # two datasets: an overview too
    rep = build_report(root, tmp_path / "out", pictures=False)
    table = rep.sections[0].table
    keys = [h.key for h in table.headers]
    rows = {r[0].text: r for r in table.rows}
    psnr, ssim = keys.index("metric:psnr"), keys.index("metric:ssim")
    assert not rows["theirs"][psnr].bold and not rows["theirs"][ssim].bold  # 4 of 5: not ranked
    assert rows["fitted · fit"][psnr].bold and rows["gray"][ssim].bold  # the best of the rows scored on all 5
    overview = {r[0].text: r for r in rep.overview.table.rows}
    ov_ssim = [h.key for h in rep.overview.table.headers].index("s0:ssim")
    assert overview["theirs"][ov_ssim].text == "0.9900" and not overview["theirs"][ov_ssim].bold and overview["gray"][ov_ssim].bold
    md = render_markdown(rep)
    assert "fitted: scored on toy/test, which holds the images it was trained on (toy/train)" in md  # above the table
    assert "a row that says n of N images is not ranked" in md


def test_compare_one_method_across_two_seeds_names_the_seeds(tmp_path):
    root = seeds_store(tmp_path / "results")
    r = CliRunner().invoke(main, ["--results", str(root), "compare", "kmeans32", "kmeans32", "--dataset", "toy",
                                  "--seed", "0", "--seed-b", "1", "--metric", "psnr", "--resamples", "200"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("kmeans32 (seed 0) (A) vs kmeans32 (seed 1) (B) on toy/test: 5 paired images")
    assert re.search(r"^psnr ↑ +23\.2500 +23\.7500 +-0\.5000 .* significant: kmeans32 \(seed 1\) better$", r.output, re.M), r.output


def test_a_missing_baseline_note_gives_a_command_that_reads_the_same_folder(tmp_path):
    root = tmp_path / "results"
    path = make_store(root, methods=("kmeans32",))["kmeans32"]
    data = json.loads(path.read_text())
    data["dataset"]["root"] = "/photos/kodak"
    path.write_text(json.dumps(data))
    md = render_markdown(build_report(root, tmp_path / "out", pictures=False))
    assert "the gray baseline has no result here; run: bench run --methods gray --dataset toy --root /photos/kodak --split test" in md


def test_load_results_columns_and_values(tmp_path):
    root = seeds_store(tmp_path / "results")
    marked_store(root)
    bad = root / "eval" / "toy" / "test" / "broken-s0.json"
    bad.write_text(json.dumps({"schema_version": 2, "status": "failed", "method": "broken", "dataset": {"name": "toy"},
                               "split": "test", "seed": 0, "stage": "train", "error": "ValueError: x"}))
    frame = bench.load_results(root)
    assert list(frame.columns) == ["method", "label", "trained_on", "dataset", "split", "seed", "status", "source",
                                   "psnr", "psnr_lo", "psnr_hi", "ssim", "ssim_lo", "ssim_hi",
                                   "weights", "n_images", "tag", "result_id", "content_hash", "created", "file"]
    files = sorted(p for p in (root / "eval").glob("*/*/*.json"))
    assert sorted(frame["file"]) == sorted(p.relative_to(root).as_posix() for p in files)
    for _, row in frame.iterrows():  # each row against its own file, read here
        data = json.loads((root / row["file"]).read_text())
        assert (row["method"], row["dataset"], row["split"], row["seed"], row["status"]) == \
            (data["method"], data["dataset"]["name"], data["split"], data["seed"], data["status"])
        psnr = (data.get("metrics") or {}).get("psnr")
        if psnr is None:
            assert row["status"] == "failed" and pd.isna(row["psnr"]) and row["source"] == "untrained"
            continue
        assert row["psnr"] == psnr["mean"] and row["ssim"] == data["metrics"]["ssim"]["mean"]
        assert [row["psnr_lo"], row["psnr_hi"]] == psnr["ci95"] if "ci95" in psnr else pd.isna(row["psnr_lo"])
        assert row["source"] == data["source"]["kind"] and same(row["weights"], data["source"].get("weights"))
        assert same(row["trained_on"], (data["trained_on"] or {}).get("name"))
    by = frame.set_index("file")
    assert by.loc["eval/toy/test/kmeans32-s0-" + _rid(root, "toy", "kmeans32-s0"), "trained_on"] == "toy"
    # the labels are the report's; a notebook averages seeds as the report does (pandas' std is n - 1 too)
    km = frame[(frame.label == "kmeans32") & (frame.dataset == "toy")]
    assert len(km) == 2 and km.psnr.mean() == pytest.approx(23.5) and km.psnr.std() == pytest.approx(statistics.stdev([23.25, 23.75]))
    assert set(frame[frame.dataset == "toy"].label) == {"gray", "kmeans32", "theirs", "zhang · published weights",
                                                         "zhang · other · published weights (unverified)", "broken"}
    assert str(frame.seed.dtype) == "Int64" and frame.psnr.dtype == float

    results, images = bench.load_results(root, per_image=True, datasets=["toy2"])
    assert set(results.dataset) == {"toy2"} and list(images.columns) == ["file", "method", "label", "dataset", "split", "seed",
                                                                          "id", "psnr", "ssim"]
    for file, part in images.groupby("file"):
        stored = pd.read_csv((root / file).with_suffix(".csv"), dtype={"id": str})
        assert part["id"].tolist() == stored["id"].tolist() and part["psnr"].tolist() == stored["psnr"].tolist()
    assert len(images) == sum(len(pd.read_csv((root / f).with_suffix(".csv"))) for f in results.file)
    with pytest.raises(FileNotFoundError, match="no results under"):
        bench.load_results(tmp_path / "nowhere")


def same(value, stored) -> bool:
    """A frame's value is the stored one (a missing one reads as NaN or None)."""
    return pd.isna(value) if stored is None else value == stored


def _rid(root: Path, dataset: str, stem: str) -> str:
    [path] = (root / "eval" / dataset / "test").glob(f"{stem}-*.json")
    return path.name[len(stem) + 1: -len(".json")] + ".json"


def test_report_csv_format(tmp_path):
    root = seeds_store(tmp_path / "results")
    add_result(root, "=HYPERLINK(x)", [1.0] * 5, [0.1] * 5, dataset="toy2", content_hash=HASH_B)
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["--results", str(root), "report", "--format", "csv", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.csv"]  # no pages, no pictures
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    toy = [(r["row"], r["label"], r["seeds"], r["psnr"], r["psnr_sd"], r["psnr_lo"]) for r in rows if r["dataset"] == "toy"]
    assert [t[:3] for t in toy] == [("mean", "kmeans32", "mean ± sd of 0, 1"), ("seed", "kmeans32", "0"), ("seed", "kmeans32", "1"),
                                    ("mean", "gray", "mean ± sd of 0, 1"), ("seed", "gray", "0"), ("seed", "gray", "1")]
    assert float(toy[0][3]) == 23.5 and float(toy[0][4]) == pytest.approx(statistics.stdev([23.25, 23.75])) and toy[0][5] == ""
    assert float(toy[1][3]) == 23.25 and float(toy[1][5]) == 22.75 and toy[1][4] == ""
    evil = next(r for r in rows if r["method"].endswith("HYPERLINK(x)"))
    assert evil["label"] == evil["method"] == "'=HYPERLINK(x)" and evil["row"] == "single"  # text, not a formula
    assert rows[0].keys() >= {"trained_on", "source", "images", "train_seconds", "result_ids", "files"}
    r = CliRunner().invoke(main, ["--results", str(root), "report", "--format", "pdf", "--out", str(out)])
    assert r.exit_code == 2 and "choose from md, html, csv" in r.output


def test_import_bench_loads_neither_pandas_nor_torch():
    code = ("import sys, bench; from click.testing import CliRunner; from bench.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = sorted(m for m in ('pandas', 'torch') if m in sys.modules); assert not heavy, heavy; "
            "assert 'load_results' in dir(bench) and callable(bench.load_results)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bench.nope  # noqa: B018

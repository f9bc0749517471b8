"""Training and evaluation under torchrun (gloo, 2 CPU processes): the same weights as one process with
the same global batch and seed, only rank 0 writes, an interrupted run resumes bit-identically, and an
interrupted evaluation resumes with any number of processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from bench.checkpoint import load_checkpoint
from conftest import result_file

SCRIPT = Path(__file__).with_name("_ddp_script.py")


def run_script(script: Path, args: list[str], processes: int, env: dict[str, str], controls: tuple[str, ...]):
    """``script args`` as one process, or under torchrun with ``processes``; the environment variables
    the scripts read (``controls``) come only from ``env``."""
    cmd = [str(script), *args]
    if processes > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *cmd]
    full_env = {**{k: v for k, v in os.environ.items() if k not in controls}, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *cmd], env=full_env, capture_output=True, text=True, timeout=300)


def launch(results: Path, processes: int, **env: str) -> subprocess.CompletedProcess:
    return run_script(SCRIPT, [str(results)], processes, env, ("STOP_AT", "NOISE"))


def run_dir(results: Path) -> Path:
    (only,) = (results / "train" / "ddp-probe").iterdir()
    return only


def model(results: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir(results) / "checkpoint.pt")["model"]


def test_two_processes_train_what_one_process_trains(tmp_path):
    one, two = launch(tmp_path / "one", 1), launch(tmp_path / "two", 2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = model(tmp_path / "one"), model(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:  # same global batches, gradients averaged: equal up to the order of float sums
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)

    # Only rank 0 wrote: one run folder, its three files, no temporary leftovers.
    folder = run_dir(tmp_path / "two")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "losses.csv", "train.json"]
    meta = json.loads((folder / "train.json").read_text())
    assert meta["status"] == "done" and meta["environment"]["processes"] == 2
    assert meta["throughput"]["train_flops_per_image"] > 0 and 0 < meta["throughput"]["fraction_of_matmul"] < 1
    # The logged losses are the mean over both processes: the same numbers one process logs.
    rows = lambda r: [line.split(",")[:2] for line in (run_dir(r) / "losses.csv").read_text().splitlines()]
    for (s1, l1), (s2, l2) in zip(rows(tmp_path / "one"), rows(tmp_path / "two")):
        assert s1 == s2 and (s1 == "step" or abs(float(l1) - float(l2)) < 1e-5)
    assert "rank 1: done" in two.stdout and "rank 0: done" in two.stdout


def test_interrupted_run_under_torchrun_resumes_bit_identically(tmp_path):
    straight = launch(tmp_path / "straight", 2, NOISE="1")
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = launch(tmp_path / "resumed", 2, NOISE="1", STOP_AT="4")
    assert stopped.returncode != 0
    meta = json.loads((run_dir(tmp_path / "resumed") / "train.json").read_text())
    assert meta["status"] == "interrupted"
    ckpt = load_checkpoint(run_dir(tmp_path / "resumed") / "checkpoint.pt")
    assert ckpt["step"] == 4 and len(ckpt["rng"]) == 2  # each process's own random stream is kept
    resumed = launch(tmp_path / "resumed", 2, NOISE="1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir(tmp_path / "resumed") / "train.json").read_text())["resumed_from_step"] == 4
    a, b = model(tmp_path / "straight"), model(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bench_run_under_torchrun_trains_together_and_scores_in_shares(tmp_path):
    args = ["--results", str(tmp_path), "run", "--methods", "gray,kmeans32", "--dataset", "samples", "--recipe", "cpu",
            "--no-progress", "--bootstrap", "50", "--metrics", "psnr,ssim,auc_rebalanced", "--eval-chunk", "8",
            "--set", "train.steps=4", "--set", "train.batch_size=4", "--set", "train.image_size=32",
            "--set", "train.prepare_images=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bench", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("kmeans32  samples  test") == 1  # one table, printed by rank 0
    meta = json.loads(next((tmp_path / "train" / "kmeans32").glob("*/train.json")).read_text())
    assert meta["environment"]["processes"] == 2 and meta["environment"]["batchnorm"] == "per process"
    folder = tmp_path / "eval" / "samples" / "test"
    shared = json.loads(result_file(folder, "kmeans32").read_text())
    assert shared["status"] == "ok" and shared["n_images"] == 48 and shared["evaluated_by_processes"] == 2
    rows = result_file(folder, "kmeans32").with_suffix(".csv").read_bytes()

    # One process scoring the same trained model (training is skipped: same identity) writes the same numbers.
    alone = subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]
    single = json.loads(result_file(folder, "kmeans32").read_text())  # the same file, replaced
    assert "evaluated_by_processes" not in single and result_file(folder, "kmeans32").with_suffix(".csv").read_bytes() == rows
    assert single["metrics"] == shared["metrics"]  # per-image means, intervals and the set-level auc_rebalanced
    assert [s["id"] for s in single["samples"]] == [s["id"] for s in shared["samples"]]


EVAL_SCRIPT = Path(__file__).with_name("_ddp_eval_script.py")


def launch_eval(journal: Path, out: Path, processes: int, **env: str) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    return run_script(EVAL_SCRIPT, [str(journal), str(out)], processes, env, ("FAIL_RANK", "FAIL_AFTER"))


def test_evaluation_interrupted_under_torchrun_resumes_with_any_number_of_processes(tmp_path):
    clean = launch_eval(tmp_path / "clean-journal", tmp_path / "clean", 1)
    assert clean.returncode == 0, clean.stderr[-3000:]
    # 5 chunks of 24 images; round 0 gives chunks 0 and 1 to processes 0 and 1, round 1 chunks 2 and 3.
    # Process 1 fails in its second chunk, so the journal holds round 0: 48 images.
    failed = launch_eval(tmp_path / "journal", tmp_path / "failed", 2, FAIL_RANK="1", FAIL_AFTER="3")
    assert failed.returncode != 0 and "injected failure" in failed.stderr
    progress = json.loads((tmp_path / "journal" / "progress.json").read_text())
    assert progress["chunks"] == 2 and progress["n_done"] == 48
    shutil.copytree(tmp_path / "journal", tmp_path / "journal-copy")

    for processes, journal in ((2, tmp_path / "journal"), (1, tmp_path / "journal-copy")):
        resumed = launch_eval(journal, tmp_path / f"resumed-{processes}", processes)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resumed from 48" in resumed.stdout
        assert (tmp_path / f"resumed-{processes}" / "rows.csv").read_bytes() == (tmp_path / "clean" / "rows.csv").read_bytes()
        assert (json.loads((tmp_path / f"resumed-{processes}" / "aggregates.json").read_text())
                == json.loads((tmp_path / "clean" / "aggregates.json").read_text()))  # IS and FID included
        assert resumed.stdout.split("samples")[1] == clean.stdout.split("samples")[1]

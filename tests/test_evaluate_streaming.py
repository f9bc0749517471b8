"""Streaming evaluation: flat memory as the number of images grows, and resume after an interruption."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from bench.evaluate import PROGRESS, evaluate
from bench.methods.base import Method
from bench.metrics import MetricOptions, build_metrics
from bench.metrics.stats import Bootstrap
from conftest import result_file

WEIGHT_FREE = ["psnr", "ssim", "psnr_y", "ciede2000", "auc", "auc_rebalanced", "colorfulness", "colorfulness_gt"]


class Tint(Method):
    """A deterministic, training-free stand-in method whose outputs differ from the truth in colour."""

    needs_training = False

    def __init__(self, fail_after: int | None = None):
        super().__init__(None, None)
        self.calls, self.fail_after = 0, fail_after

    def predict_ab(self, L: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError(f"injected failure in batch {self.calls}")
        return torch.cat([(L - 50) * 0.4, torch.full_like(L, 12.0)], 1)


class Images(torch.utils.data.Dataset):
    """``n`` small images, each a pure function of its index (like an EvalView of tiles)."""

    fixed_size = True

    def __init__(self, n: int, size: int = 24):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        g = torch.Generator().manual_seed(k)
        base = torch.randint(0, 256, (3, 1, 1), generator=g)
        noise = torch.randint(-40, 41, (3, self.size, self.size), generator=g)
        return (base + noise).clamp(0, 255).to(torch.uint8), k

    def item_id(self, k: int) -> str:
        return f"img{k:05d}"


class StandInInception(nn.Module):
    """Cheap features of Inception's shape for IS (1008 logits) and a compact pool vector for FID."""

    def __init__(self, pool: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(48, pool + 1008, generator=g) / 48
        self.pool = pool

    def forward(self, x: torch.Tensor):
        f = nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1) @ self.proj
        return f[:, : self.pool], f[:, self.pool :] * 20


def metrics_with_sets() -> dict:
    return build_metrics(WEIGHT_FREE + ["is", "fid"], MetricOptions(inception=StandInInception()))


def run(n: int, work_dir: Path | None, method: Method, chunk: int = 20):
    return evaluate(method, Images(n), metrics_with_sets(), device=torch.device("cpu"), batch_size=8, progress=False,
                    work_dir=work_dir, identity={"test": 1}, chunk_images=chunk, bootstrap=Bootstrap(resamples=200))


def test_interrupted_evaluation_resumes_to_the_same_result(tmp_path: Path) -> None:
    clean = run(100, None, Tint())
    work = tmp_path / "partial"
    with pytest.raises(RuntimeError, match="injected failure in batch 8"):
        run(100, work, Tint(fail_after=7))  # 7 batches of 8 = 56 images scored; a chunk is saved at >= 20: 24, 48
    progress = json.loads((work / PROGRESS).read_text())
    assert progress["chunks"] == 2 and progress["n_done"] == 48
    method = Tint()
    resumed = run(100, work, method)
    assert resumed.resumed_from == 48 and method.calls == 7  # images 48..99 only: 52 images = 7 batches
    pd.testing.assert_frame_equal(resumed.rows, clean.rows)
    assert resumed.aggregates == clean.aggregates
    assert [s[0] for s in resumed.samples] == [s[0] for s in clean.samples]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(resumed.samples, clean.samples))
    assert clean.aggregates["is"]["mean"] > 1 and clean.aggregates["fid"]["mean"] > 0


def test_a_journal_of_another_evaluation_is_not_resumed(tmp_path: Path) -> None:
    work = tmp_path / "partial"
    with pytest.raises(RuntimeError):
        run(60, work, Tint(fail_after=4))
    method = Tint()
    other = evaluate(method, Images(60), build_metrics(["psnr"]), device=torch.device("cpu"), batch_size=8, progress=False,
                     work_dir=work, identity={"test": 2}, chunk_images=20)
    assert other.resumed_from == 0 and len(other.rows) == 60 and method.calls == 8


def test_runner_resumes_and_writes_the_same_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.methods.gray import Gray
    from bench.runner import RunSpec, evaluate_one, train_one

    def spec(results: Path) -> RunSpec:
        return RunSpec(dataset="samples", results=results, overrides=(("train.batch_size", "8"),), bootstrap=100, eval_chunk=16)

    metrics = ["psnr", "ssim", "ciede2000", "auc", "auc_rebalanced", "colorfulness_gt"]
    clean = evaluate_one(spec(tmp_path / "a"), "gray", "test", metrics, train_one(spec(tmp_path / "a"), "gray"))

    calls = {"n": 0}
    original = Gray.predict_ab

    def flaky(self, L):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected")
        return original(self, L)

    monkeypatch.setattr(Gray, "predict_ab", flaky)
    s = spec(tmp_path / "b")
    with pytest.raises(RuntimeError, match="injected"):
        evaluate_one(s, "gray", "test", metrics, train_one(s, "gray"))
    folder_b = tmp_path / "b/eval/samples/test"
    failed_path = result_file(folder_b, "gray", failed=True)
    partial = folder_b / failed_path.name.replace(".failed.json", ".partial")
    assert json.loads(failed_path.read_text())["status"] == "failed" and (partial / PROGRESS).exists()
    resumed = evaluate_one(s, "gray", "test", metrics, train_one(s, "gray"))
    assert resumed["timings"]["resumed_from"] == 16 and resumed["status"] == "ok"
    a = result_file(tmp_path / "a/eval/samples/test", "gray").with_suffix(".csv").read_bytes()
    assert a == result_file(folder_b, "gray").with_suffix(".csv").read_bytes() and len(a.splitlines()) == 49
    assert resumed["metrics"] == clean["metrics"]
    assert all(m["ci95"][0] <= m["mean"] <= m["ci95"][1] for m in clean["metrics"].values())
    assert not partial.exists() and not failed_path.exists()  # the journal is done; the failure is superseded
    # 48 tiles of 3 photos: intervals resample the photos, and the result says so
    assert clean["statistics"]["source_images"] == 3 and "source images" in clean["statistics"]["ci"]


RSS_CHILD = textwrap.dedent("""
    import resource, sys, tempfile, torch
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_evaluate_streaming import Images, Tint, metrics_with_sets
    from bench.evaluate import evaluate
    from bench.metrics.stats import Bootstrap
    torch.set_num_threads(1)

    def run(n):
        with tempfile.TemporaryDirectory() as tmp:
            return evaluate(Tint(), Images(n), metrics_with_sets(), device=torch.device("cpu"), batch_size=16,
                            progress=False, work_dir=Path(tmp) / "partial", identity={{}}, chunk_images=128,
                            bootstrap=Bootstrap(resamples=100))

    run(48)  # every code path once: imports, allocator pools, kernels
    warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = int(sys.argv[1])
    result = run(n)
    assert len(result.rows) == n and result.aggregates["is"]["n"] == n and result.aggregates["auc_rebalanced"]["n"] == n
    print(warm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def peak_rss_kib(n: int) -> tuple[int, int]:
    """(peak RSS after a warm-up evaluation, peak RSS after evaluating ``n`` images), KiB, in a fresh process."""
    code = RSS_CHILD.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    warm, peak = map(int, out.stdout.strip().splitlines()[-1].split())
    return warm, peak


# What an evaluation keeps per image, by design: IS's 1008 float32 logits (4 KiB; the stand-in's FID features
# are folded into running sums), the rebalanced AuC's rows for the bins the image occupies, one float per
# per-image metric and the id. Measured growth: about 16 KiB per image (the logits are concatenated once at
# the end; the rest is the allocator). Keeping the 24 px output and truth as float32 Lab would add 14 KiB.
PER_IMAGE_BUDGET_KIB = 24


def test_peak_memory_is_flat_in_the_number_of_images() -> None:
    """2,000 images end within 20% of the peak RSS of 200: images are dropped once scored, set-level
    metrics keep compact features. The 20% (over ~0.8 GB of imported libraries) is loose for 24 px images,
    so the growth beyond a warm-up run is also held to a per-image budget."""
    (warm_s, small), (warm_l, large) = peak_rss_kib(200), peak_rss_kib(2000)
    assert large <= 1.2 * small, f"peak RSS {large} KiB for 2000 images vs {small} KiB for 200"
    per_image = ((large - warm_l) - (small - warm_s)) / 1800
    assert per_image <= PER_IMAGE_BUDGET_KIB, f"{per_image:.1f} KiB more peak RSS per extra image (budget {PER_IMAGE_BUDGET_KIB})"

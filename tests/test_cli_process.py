"""What only a real process shows: Ctrl-C (a SIGINT) ends with exit status 130 and says how to resume,
progress without a terminal is plain lines, and ``bench list methods`` imports no torch."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ARGS = ["--method", "kmeans32", "--set", "train.steps=12", "--set", "train.batch_size=8", "--set", "train.image_size=32",
        "--set", "train.prepare_images=4", "--set", "train.log_every=2", "--set", "train.ckpt_every=4",
        "--set", "params.width=4"]

# A real SIGINT to the process itself at training step 6 (after the checkpoint of step 4), then bench's own
# entry point, as the console script runs it: exit status and messages are the real ones.
INTERRUPTED = textwrap.dedent("""
    import os, signal, sys
    from bench.methods.kmeans_cnn import KMeansCNN
    original = KMeansCNN.training_step
    def training_step(self, L, ab, step):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        yield from original(self, L, ab, step)
    KMeansCNN.training_step = training_step
    from bench.cli import main
    main(sys.argv[1:], prog_name="bench")
""")


def bench(args, tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a subprocess with stdout and stderr to pipes (no terminal), progress lines unthrottled."""
    env = {**os.environ, "BENCH_RESULTS": str(tmp_path / "results"), "BENCH_PROGRESS_SECONDS": "0",
           "TORCH_HOME": str(tmp_path / "torch-home")}
    cmd = [sys.executable, "-c", code or "import sys; from bench.cli import main; main(sys.argv[1:], prog_name='bench')", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def test_ctrl_c_exits_130_then_the_same_command_resumes_with_progress_lines(tmp_path):
    r = bench(["train", *ARGS], tmp_path, INTERRUPTED)
    assert r.returncode == 130, r.stderr
    ckpt = next((tmp_path / "results" / "train" / "kmeans32").glob("samples-s0-*/checkpoint.pt"))
    assert (f"kmeans32: training interrupted after step 6 of 12; the checkpoint of step 4 is kept at {ckpt}: "
            "run the same command again to resume from step 4") in r.stderr
    assert "interrupted (Ctrl-C): exit status 130" in r.stderr and "Aborted" not in r.stderr and "Traceback" not in r.stderr
    # No terminal: plain lines (no carriage returns), every log_every (2) steps here, as the run went.
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("train kmeans32: ")]
    assert [re.match(r"train kmeans32: step (\d+)/12", ln).group(1) for ln in lines] == ["2", "4", "6"], r.stderr
    assert re.fullmatch(r"train kmeans32: step 2/12 \(16%\) \| loss_main \d+\.\d+ \| \d+\.\d img/s \| elapsed 0:00:\d\d \| ETA 0:\d\d:\d\d",
                        lines[0]), lines[0]
    assert "\r" not in r.stderr

    # The same settings through `bench run`: training resumes from step 4, says so, then evaluation reports.
    r = bench(["run", "--methods", "kmeans32", *ARGS[2:], "--metrics", "psnr"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"kmeans32: trained 12 steps \(resumed from step 4: 8 steps this time\) in", r.stdout), r.stdout
    steps = [re.match(r"train kmeans32: step (\d+)/12", ln).group(1) for ln in r.stderr.splitlines() if ln.startswith("train kmeans32")]
    assert steps == ["6", "8", "10", "12"], r.stderr
    evaluated = [ln for ln in r.stderr.splitlines() if ln.startswith("evaluate kmeans32 on samples/test: ")]
    assert evaluated and evaluated[-1].startswith("evaluate kmeans32 on samples/test: 48/48 images (100%) | ")
    assert re.search(r"\d+/48 images \(\d+%\) \| [\d.]+ img/s \| elapsed \d:\d\d:\d\d \| ETA \d:\d\d:\d\d", evaluated[0]), evaluated[0]


def test_list_methods_imports_no_torch(tmp_path):
    code = ("import sys; from click.testing import CliRunner; from bench.cli import main; "
            "r = CliRunner().invoke(main, ['list', 'methods']); assert r.exit_code == 0, r.output; "
            "assert 'kmeans32' in r.output and 'no training' in r.output, r.output; "
            "assert 'torch' not in sys.modules, 'bench list methods imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

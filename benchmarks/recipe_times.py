"""Seconds per 100 training steps of each method's CPU recipe, end to end through ``bench train`` (real
data loading from `samples`, colour conversion, logging, checkpoints), for the README's methods table.

    .venv/bin/python benchmarks/recipe_times.py [--steps 100] [--methods kmeans32,unet,...]

Each method trains ``--steps`` steps of its ``cpu`` recipe (its own batch and crop size) in a fresh
results folder; the time is the training loop's own (``train.json`` ``seconds``: no start-up, no
preparation). The load average and the CPU share of other processes during each run are printed beside
it: on a 2-core machine a second busy process slows these timings several-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = "kmeans32,zhang-small,zhang,unet,cgan,wgan_gp,autoencoder-ab,autoencoder-rgb,grid361-centroid,grid361-topk,zhang-vgg19"


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def children_jiffies() -> int:
    t = os.times()
    return int((t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--methods", default=METHODS)
    args = ap.parse_args()
    bench = Path(sys.executable).with_name("bench")
    print(f"| method | recipe (cpu) | s / {args.steps} steps | images/s | load avg | others' CPU |")
    print("|---|---|---:|---:|---:|---:|")
    for m in args.methods.split(","):
        with tempfile.TemporaryDirectory() as res:
            b0, t0, c0 = *busy_jiffies(), children_jiffies()
            subprocess.run([str(bench), "--results", res, "train", "--method", m, "--dataset", "samples", "--recipe", "cpu",
                            "--device", "cpu", "--no-progress", "--set", f"train.steps={args.steps}",
                            "--set", f"train.ckpt_every={max(1, args.steps // 2)}"], check=True, stdout=subprocess.DEVNULL)
            b1, t1, c1 = *busy_jiffies(), children_jiffies()
            meta = json.loads(next(Path(res).glob("train/*/*/train.json")).read_text())
            others = max(0.0, ((b1 - b0) - (c1 - c0)) / max(1, t1 - t0)) * os.cpu_count()
            r = meta["recipe"]["train"]
            print(f"| `{m}` | {r['image_size']} px, batch {r['batch_size']} | {meta['seconds']:.1f} | {meta['images_per_s']:.1f} "
                  f"| {os.getloadavg()[0]:.2f} | {others:.2f} cores |", flush=True)


if __name__ == "__main__":
    main()

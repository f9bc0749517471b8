"""Run by tests/test_distributed.py, as one process or under torchrun: trains a BatchNorm-free probe
method (per-process BatchNorm statistics would make N processes differ from one by design, see
bench.distributed) on `samples` into the results folder given as argv[1].

NOISE=1: the loss draws random numbers (each process its own stream), which resume must restore.
STOP_AT=k in the environment: every process raises KeyboardInterrupt at step k (as a Ctrl-C that
torchrun forwards to all of them), after the checkpoint of step k."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from bench.datasets import DATASETS
from bench.methods import METHODS, Method, Update
from bench.recipes import load_recipe


class Probe(Method):
    recipe = {"adapter": "ddp-probe", "training": "supervised",
              "sizes": {"cpu": {"steps": 8, "batch_size": 4, "image_size": 32, "lr": 1e-2, "log_every": 2,
                                "ckpt_every": 2, "prepare_images": 0}}}

    def __init__(self, params, train):
        super().__init__(params, train)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def training_step(self, L, ab, step):
        if os.environ.get("STOP_AT") and step == int(os.environ["STOP_AT"]):
            raise KeyboardInterrupt
        noise = 1 + 0.01 * torch.rand(L.shape[0], 1, 1, 1) if os.environ.get("NOISE") else 1  # per-process noise
        loss = (self.net(L / 100 * noise) - ab / 110).abs().mean()
        yield Update("main", loss)

    def predict_ab(self, L):
        return self.net(L / 100) * 110


METHODS.add("ddp-probe", Probe, description="BatchNorm-free probe for the distributed tests")

if __name__ == "__main__":
    from bench.train import train

    torch.set_num_threads(1)
    out = train(load_recipe("ddp-probe", "cpu"), DATASETS.get("samples")("train"), results=Path(sys.argv[1]),
                seed=0, device=torch.device("cpu"), progress=False)
    print(f"rank {os.environ.get('RANK', 0)}: {out.status} {out.run_dir}")

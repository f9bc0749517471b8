"""Run by tests/test_distributed.py, as one process or under torchrun: evaluates the training-free Tint
method of test_evaluate_streaming on 100 small images with every weight-free metric plus IS and FID (on a
stand-in network), journaled in argv[1]; rank 0 writes the rows and aggregates to argv[2].

FAIL_RANK=r FAIL_AFTER=k in the environment: process r raises on its (k+1)-th batch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_evaluate_streaming import Images, Tint, metrics_with_sets  # noqa: E402

from bench import distributed  # noqa: E402
from bench.evaluate import evaluate  # noqa: E402
from bench.metrics.stats import Bootstrap  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    d = distributed.init(torch.device("cpu"))
    fail = os.environ.get("FAIL_AFTER") if int(os.environ.get("FAIL_RANK", "-1")) == d.rank else None
    out = evaluate(Tint(fail_after=int(fail) if fail else None), Images(100), metrics_with_sets(),
                   device=torch.device("cpu"), batch_size=8, progress=False, work_dir=Path(sys.argv[1]),
                   identity={"test": 1}, chunk_images=20, bootstrap=Bootstrap(resamples=200), dist=d)
    if d.is_main:
        out.rows.to_csv(Path(sys.argv[2]) / "rows.csv", index=False, float_format="%.17g")
        (Path(sys.argv[2]) / "aggregates.json").write_text(json.dumps(out.aggregates, sort_keys=True))
        print(f"resumed from {out.resumed_from}; samples {[s[0] for s in out.samples]}")

"""Metrics that need pretrained weights: Inception Score and FID (Inception v3) and LPIPS (AlexNet).

Nothing is downloaded. Each metric looks for its weights file up front; when it is missing the metric is
*unavailable*: the result says so with the file name and where to put it, and the run goes on.

* IS and FID use torch-fidelity's Inception v3 (``inception-v3-compat``: the TF 2015-12-05 graph and
  weights, file ``weights-inception-2015-12-05-6726825d.pth``) with its TF1-compatible bilinear resize to
  299 x 299, one forward pass per image giving both the 2048-d pool features (FID) and the 1008
  ``logits_unbiased`` (IS). IS is torchmetrics' ``InceptionScore`` fed those logits through an identity
  feature module; FID keeps torchmetrics' state and formula but takes the matrix square root by a
  symmetric eigendecomposition (see ``frechet_distance``: 15x faster on CPU). IS shuffles the
  images into splits with ``torch.randperm`` on the global RNG; we run it inside
  ``torch.random.fork_rng`` seeded with a fixed seed, so the score is reproducible and the caller's RNG
  is left untouched.
* LPIPS uses torchmetrics' LPIPS (v0.1 linear layers, shipped inside torchmetrics) on torchvision's
  ImageNet AlexNet (``alexnet-owt-7be5be79.pth`` in the torch hub cache).

torch-fidelity and torchvision load these files with ``torch.load(weights_only=False)``; we first load
each with ``weights_only=True``, which refuses any file that holds more than tensors, so the second load
cannot run code.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from bench.metrics.base import METRICS, Batch, Metric, SetMetric
from bench.store import file_sha256

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub naming: the file name carries its SHA-256 prefix
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
ALEXNET_SHA256_PREFIX = "7be5be79"  # torch hub naming, as for Inception: the file name carries its SHA-256 prefix


class WeightsError(RuntimeError):
    """A weights file that exists but cannot be used (the message names it)."""


def hub_checkpoints() -> Path:
    """Where torch.hub (and so torch-fidelity and torchvision) caches weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_tensors_only(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with an error that names the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a plain weights file that torch.load(weights_only=True) accepts ({exc})") from None


# --------------------------------------------------------------------------------------------------
# Inception v3 features (shared by IS and FID: one forward pass per image)


def locate_inception(explicit: str | None) -> tuple[Path | None, str]:
    """The Inception weights file, or None and the reason with what to do."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            return None, f"--inception-weights {path}: no such file (expected torch-fidelity's {INCEPTION_FILE})"
        return path, ""
    path = hub_checkpoints() / INCEPTION_FILE
    if path.is_file():
        return path, ""
    return None, (f"Inception weights not found: put {INCEPTION_FILE} (torch-fidelity's Inception v3 converted from "
                  f"TF 2015-12-05) in {hub_checkpoints()}/ or pass --inception-weights PATH "
                  "(or set $BENCH_INCEPTION_WEIGHTS)")


_EXTRACTORS: dict[tuple[str, str], nn.Module] = {}


def inception_extractor(path: Path, device: torch.device) -> nn.Module:
    """torch-fidelity's Inception v3 giving (pool 2048, logits_unbiased 1008) for uint8 RGB, built once per device."""
    key = (f"{path}:{path.stat().st_mtime_ns}", str(device))
    if key not in _EXTRACTORS:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        load_tensors_only(path)  # see the module docstring: proves the file is tensors only
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path))
        _EXTRACTORS[key] = net.to(device).eval()
    return _EXTRACTORS[key]


class _Identity(nn.Module):
    """Hands precomputed features to torchmetrics' IS/FID (``num_features`` tells FID their size)."""

    def __init__(self, num_features: int = 0):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


class _InceptionMetric(SetMetric):
    needs_weights: ClassVar[str | None] = f"Inception v3, {INCEPTION_FILE}"

    def available(self) -> tuple[bool, str]:
        if self.options.inception is not None:
            return True, ""
        if importlib.util.find_spec("torch_fidelity") is None:
            return False, "needs the torch-fidelity package: pip install torch-fidelity"
        path, why = locate_inception(self.options.inception_path())
        return path is not None, why

    def _features(self, batch: Batch, which: str) -> tuple[Tensor, Tensor]:
        extractor = self.options.inception
        if extractor is None:
            path, why = locate_inception(self.options.inception_path())
            if path is None:
                raise WeightsError(why)
            extractor = inception_extractor(path, batch.pred.device)

        def run() -> tuple[Tensor, Tensor]:
            with torch.no_grad():
                pool, logits = extractor(batch.image(which))
            return pool.float().cpu(), logits.float().cpu()

        return batch.cached(("inception", which, id(extractor)), run)

    def weights_info(self) -> dict[str, Any]:
        if self.options.inception is not None:
            return {"weights": f"stand-in feature extractor {type(self.options.inception).__name__} (not comparable with published numbers)"}
        path, _ = locate_inception(self.options.inception_path())
        return checked_weights(path, INCEPTION_SHA256_PREFIX, f"torch-fidelity's {INCEPTION_FILE}")


def checked_weights(path: Path, sha256_prefix: str, standard: str) -> dict[str, Any]:
    """What a result records about a weights file: its name and SHA-256, and whether it is the ``standard``
    file (its published SHA-256 prefix); a file of another content is flagged, never trusted by its name."""
    digest = file_sha256(path)
    info: dict[str, Any] = {"weights": path.name, "weights_sha256": digest, "standard_weights": digest.startswith(sha256_prefix)}
    if not info["standard_weights"]:
        info["warning"] = f"{path} is not {standard} (SHA-256 {digest[:16]}...): scores are not comparable with published ones"
    return info


_INCEPTION_NOTE = ("torch-fidelity Inception v3 'inception-v3-compat' (TF 2015-12-05 weights, "
                   f"{INCEPTION_FILE}); uint8 RGB resized to 299x299 with torch-fidelity's TF1-compatible bilinear")


@METRICS.register("is", "Inception Score of the outputs (torchmetrics; TF 2015-12-05 Inception, logits_unbiased, 10 splits)")
class InceptionScore(_InceptionMetric):
    name = "is"
    convention = (f"{_INCEPTION_NOTE}; logits_unbiased (1008 classes, no bias); torchmetrics InceptionScore: images "
                  "shuffled by torch.randperm under a fixed seed (fork_rng, seed 0 unless set), 10 splits, mean of per-split "
                  "exp(E KL(p(y|x) || p(y))); std over splits stored as std_splits; ci95: percentile bootstrap of the mean of the "
                  "10 per-split scores (a bootstrap over images would duplicate images inside splits and bias IS down)")

    def reset(self) -> None:
        self._pending: list[Tensor] = []
        self._logits: list[Tensor] = []

    def update(self, batch: Batch) -> None:
        self._pending.append(self._features(batch, "pred")[1])

    def take_chunk(self) -> dict[str, Any]:
        if not self._pending:
            return {}
        chunk = {"logits": torch.cat(self._pending)}
        self._pending = []
        self.replay(chunk)
        return chunk

    def replay(self, chunk: dict[str, Any]) -> None:
        if chunk:
            self._logits.append(chunk["logits"])

    def compute(self, stats: Any, clusters: Any = None) -> dict[str, Any]:  # ci95 over splits, not images
        from torchmetrics.image.inception import InceptionScore as TMInceptionScore

        from bench.metrics.stats import mean_ci

        if not self._logits:
            return {"mean": None, "n": 0, "ci95": None}
        logits = torch.cat(self._logits)
        splits = self.options.is_splits
        # torchmetrics shuffles with torch.randperm on the global RNG, chunks the shuffled logits into
        # ``splits`` parts and scores each. We draw the same permutation under a fixed seed (fork_rng: the
        # caller's RNG is untouched) and hand torchmetrics one split at a time (splits=1), so its float
        # temporaries are one split's size, not ~7 copies of the whole set's logits; tested equal to one
        # splits=10 call in tests/test_metrics_learned.py.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options.seed)
            order = torch.randperm(logits.shape[0])
        size = math.ceil(logits.shape[0] / splits)
        per_split = []
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")  # "will save all extracted features in buffer" (they are logits); std of 1 split
            for idx in order.split(size):
                tm = TMInceptionScore(feature=_Identity(), splits=1)
                tm.update(logits[idx])
                # splits=1: its shuffle inside the split changes only the float summation order; seeded, so a
                # resumed evaluation gives the same bits as an uninterrupted one.
                torch.manual_seed(self.options.seed)
                per_split.append(float(tm.compute()[0]))
        per_split = np.asarray(per_split)
        mean = per_split.mean()
        std = per_split.std(ddof=1) if len(per_split) > 1 else float("nan")  # torchmetrics: unbiased std over splits
        std_value = float(std)
        return {
            "mean": float(mean), "n": int(logits.shape[0]), "ci95": mean_ci(per_split, stats),
            "std_splits": std_value if math.isfinite(std_value) else None, "splits": splits,
            "split_scores": [round(float(v), 6) for v in per_split], "shuffle_seed": self.options.seed,
            **self.weights_info(),
        }


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)) for symmetric PSD covariances, in float64.

    Written here rather than taken from torchmetrics because its ``_compute_fid`` takes the eigenvalues of
    the non-symmetric C1 C2 with ``torch.linalg.eigvals``: 30-70 s for 2048 x 2048 on 2 CPU cores. Here
    tr((C1 C2)^(1/2)) = sum sqrt(eig(S C2 S)) with S = C1^(1/2), a symmetric matrix: two ``eigh`` calls,
    about 15x faster. Tested equal to torchmetrics and to scipy's sqrtm formula in tests/test_metrics_learned.py.
    """
    w1, v1 = torch.linalg.eigh(cov1)
    root1 = (v1 * w1.clamp(min=0).sqrt()) @ v1.T
    middle = root1 @ cov2 @ root1
    lam = torch.linalg.eigvalsh((middle + middle.T) / 2)
    value = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * lam.clamp(min=0).sqrt().sum()
    return float(value)


class _Moments:
    """Running float64 sum and sum of outer products of feature vectors (what FID needs; torchmetrics' FID
    keeps the same state)."""

    def __init__(self, dim: int):
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, feats: Tensor) -> None:
        f = feats.to(torch.float64)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        mean = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)  # unbiased, as torchmetrics
        return mean, cov


@METRICS.register("fid", "Frechet Inception Distance of outputs vs ground truth (TF 2015-12-05 Inception, pool3)")
class FID(_InceptionMetric):
    name = "fid"
    higher_is_better = False
    convention = (f"{_INCEPTION_NOTE}; 2048-d pool3 features of the outputs vs of the ground truth of the same images; "
                  "Gaussian fits with float64 running sums and unbiased covariances (as torchmetrics' FID), exact matrix "
                  "square root by symmetric eigendecomposition; biased upwards for small sets (compare only at equal n); "
                  "ci95 not computed (a 2048-d set statistic: no per-image values)")

    def reset(self) -> None:
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._pred: _Moments | None = None
        self._target: _Moments | None = None

    def update(self, batch: Batch) -> None:
        self._pending.append((self._features(batch, "pred")[0], self._features(batch, "target")[0]))

    def take_chunk(self) -> dict[str, Any]:
        if not self._pending:
            return {}
        chunk = {"pred": torch.cat([p for p, _ in self._pending]), "target": torch.cat([t for _, t in self._pending])}
        self._pending = []
        self.replay(chunk)
        return chunk

    def replay(self, chunk: dict[str, Any]) -> None:
        if not chunk:
            return
        if self._pred is None:
            self._pred, self._target = _Moments(chunk["pred"].shape[1]), _Moments(chunk["pred"].shape[1])
        self._pred.add(chunk["pred"])
        self._target.add(chunk["target"])

    def compute(self, stats: Any, clusters: Any = None) -> dict[str, Any]:  # no ci95 (no per-image values)
        n = 0 if self._pred is None else self._pred.n
        out: dict[str, Any] = {"mean": None, "n": n, "ci95": None}
        if n < 2:
            out["reason"] = f"FID needs at least 2 images; got {n}"
            return out
        value = frechet_distance(*self._pred.mean_cov(), *self._target.mean_cov())
        return {**out, "mean": max(value, 0.0), **self.weights_info()}


# --------------------------------------------------------------------------------------------------
# LPIPS


_LPIPS_NETS: dict[str, nn.Module] = {}


@METRICS.register("lpips", "LPIPS v0.1 perceptual distance to the ground truth (AlexNet; torchmetrics)")
class LPIPS(Metric):
    name = "lpips"
    higher_is_better = False
    needs_weights = f"torchvision ImageNet AlexNet, {ALEXNET_FILE}"
    convention = ("LPIPS v0.1 (Zhang et al. 2018): torchvision ImageNet AlexNet features + the linear layers shipped in "
                  "torchmetrics; uint8 RGB scaled to [-1, 1]; images at their evaluated size (no resize); mean of per-image values")

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("torchvision") is None:
            return False, "needs torchvision"
        path = hub_checkpoints() / ALEXNET_FILE
        if not path.is_file():
            return False, (f"LPIPS backbone weights not found: put torchvision's {ALEXNET_FILE} (ImageNet AlexNet) in "
                           f"{hub_checkpoints()}/")
        return True, ""

    def _net(self, device: torch.device) -> nn.Module:
        path = hub_checkpoints() / ALEXNET_FILE
        key = f"{path}:{path.stat().st_mtime_ns}:{device}"
        if key not in _LPIPS_NETS:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            load_tensors_only(path)  # see the module docstring
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _LPIPS_NETS[key] = LearnedPerceptualImagePatchSimilarity(net_type="alex").net.to(device).eval()
        return _LPIPS_NETS[key]

    def weights_info(self) -> dict[str, Any]:
        """The AlexNet file hashed like Inception's: a file of another content is flagged, never trusted by name."""
        return checked_weights(hub_checkpoints() / ALEXNET_FILE, ALEXNET_SHA256_PREFIX, f"torchvision's {ALEXNET_FILE}")

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        net = self._net(pred.device)
        with torch.no_grad():
            d = net(pred.float() / 255.0, target.float() / 255.0, normalize=True)
        return d.reshape(pred.shape[0]).double()

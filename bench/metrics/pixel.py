"""Weight-free metrics: PSNR and SSIM (RGB as NTIRE 2019, BT.601 Y, CIELAB ab), CIEDE2000, AuC (plain and
class-rebalanced) and colourfulness. Each registers itself in :data:`bench.metrics.base.METRICS`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from bench.metrics.base import AB_DATA_RANGE, METRICS, PSNR_CAP, Batch, Metric, SetMetric

# --------------------------------------------------------------------------------------------------
# PSNR and SSIM: RGB (NTIRE 2019), BT.601 Y, and CIELAB ab.

_PSNR_NOTE = f"mean of per-image PSNR; identical images capped at {PSNR_CAP:g} dB"
_SSIM_NOTE = ("Gaussian window 11x11 sigma 1.5, K1=0.01 K2=0.03, population covariance, 5 px border of the SSIM map "
              "excluded (as skimage), channel mean, mean of per-image SSIM")
_Y_NOTE = "BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255 from the uint8 RGB (skimage rgb2ycbcr; float, not rounded; 16..235)"
_AB_NOTE = ("a, b of CIELAB (D65, skimage constants) of the uint8 sRGB images (float32); "
            f"data_range={AB_DATA_RANGE:g} (the scale of OpenCV's 8-bit Lab a+128, b+128, unrounded)")


@METRICS.register("psnr", "PSNR in dB, RGB, data range 255, no border crop, mean of per-image values")
class PSNR(Metric):
    name = "psnr"
    unit = "dB"
    convention = f"RGB uint8 output vs ground truth; data_range=255; no border crop; {_PSNR_NOTE}"

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        from bench.metrics.functional import psnr

        return psnr(pred, target, data_range=255.0, cap=PSNR_CAP)


@METRICS.register("ssim", "SSIM, RGB, Gaussian 11x11 sigma 1.5, data range 255, mean of per-image values")
class SSIM(Metric):
    name = "ssim"
    convention = f"RGB uint8 output vs ground truth; data_range=255; {_SSIM_NOTE}"

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        from bench.metrics.functional import ssim

        return ssim(pred, target, data_range=255.0)


@METRICS.register("psnr_y", "PSNR in dB of the BT.601 Y channel, data range 255")
class PSNRY(Metric):
    name = "psnr_y"
    unit = "dB"
    convention = f"{_Y_NOTE}; data_range=255; no border crop; {_PSNR_NOTE}"

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import psnr

        return psnr(batch.y("pred"), batch.y("target"), data_range=255.0, cap=PSNR_CAP)


@METRICS.register("ssim_y", "SSIM of the BT.601 Y channel, data range 255")
class SSIMY(Metric):
    name = "ssim_y"
    convention = f"{_Y_NOTE}; data_range=255; {_SSIM_NOTE}"

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import ssim

        return ssim(batch.y("pred").float(), batch.y("target").float(), data_range=255.0)


@METRICS.register("psnr_ab", "PSNR in dB of the CIELAB a, b channels only (colour, not lightness)")
class PSNRab(Metric):
    name = "psnr_ab"
    unit = "dB"
    convention = f"{_AB_NOTE}; MSE over both channels; no border crop; {_PSNR_NOTE}"

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import psnr

        return psnr(batch.lab("pred")[:, 1:], batch.lab("target")[:, 1:], data_range=AB_DATA_RANGE, cap=PSNR_CAP)


@METRICS.register("psnr_l", "PSNR in dB of the CIELAB L channel: how far the output's lightness drifts from the input's")
class PSNRL(Metric):
    """The lightness check. The input's L is the ground truth's, so a method that keeps it loses only what
    uint8 rounding and gamut clipping take (37-61 dB in the CI baseline); a method that outputs RGB itself (the
    ``autoencoder-rgb`` recipe) shows here how far its own L drifts."""

    name = "psnr_l"
    unit = "dB"
    convention = ("L of CIELAB (D65, skimage constants) of the uint8 output vs of the ground truth (the input's L), "
                  f"float32; data_range=100; no border crop; {_PSNR_NOTE}")

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import psnr

        return psnr(batch.lab("pred")[:, :1], batch.lab("target")[:, :1], data_range=100.0, cap=PSNR_CAP)


@METRICS.register("ssim_ab", "SSIM of the CIELAB a, b channels only")
class SSIMab(Metric):
    name = "ssim_ab"
    convention = f"{_AB_NOTE}; {_SSIM_NOTE} (mean over a and b)"

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import ssim

        return ssim(batch.lab("pred")[:, 1:].float(), batch.lab("target")[:, 1:].float(), data_range=AB_DATA_RANGE)


# --------------------------------------------------------------------------------------------------
# Weight-free colour metrics.


@METRICS.register("ciede2000", "Mean CIEDE2000 colour difference (delta E 2000) per pixel")
class CIEDE2000(Metric):
    name = "ciede2000"
    higher_is_better = False
    unit = "dE00"
    convention = ("CIEDE2000 (Sharma et al. 2005; kL=kC=kH=1, as skimage.color.deltaE_ciede2000) between CIELAB (D65, "
                  "float32) of the uint8 output and of the ground truth, mean over pixels, mean of per-image values")

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import ciede2000

        return ciede2000(batch.lab("pred"), batch.lab("target")).to(torch.float64).mean(dim=(1, 2))


_AUC_NOTE = ("per-pixel ab error = Euclidean distance between the ab of CIELAB (D65, float32) of the uint8 output and "
             "of the ground truth; cumulative fraction of pixels with error <= t at the 151 thresholds t = 0, 1, ..., 150; "
             "AuC = mean of the 151 fractions (1 = perfect; a constant error d gives (151 - ceil(d))/151) (Zhang et al. 2016)")


@METRICS.register("auc", "Zhang 2016 AuC of the cumulative per-pixel ab-error curve, thresholds 0..150")
class AuC(Metric):
    name = "auc"
    convention = f"{_AUC_NOTE}; per image, mean of per-image values (= pixel-pooled when all images have one size)"

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import ab_error_area

        return ab_error_area(batch.lab("pred")[:, 1:], batch.lab("target")[:, 1:]).mean(dim=(1, 2))


@METRICS.register("auc_rebalanced", "Zhang 2016 class-rebalanced AuC: pixels weighted by 1/p(ground-truth ab bin)")
class AuCRebalanced(SetMetric):
    name = "auc_rebalanced"
    convention = (f"{_AUC_NOTE}; each pixel weighted by 1/p(q), q = the ground truth's bin on Zhang's 10-unit ab grid "
                  "(round(ab/10)), p = the empirical distribution of q over all pixels of the evaluated set (no prior, no "
                  "smoothing); equals the mean over occupied bins of the per-bin AuC; set-level; ci95 by bootstrap over images "
                  "with the weights of the whole set held fixed")

    # State per image: only the bins its ground truth occupies (a photo uses a few dozen of the 529), as
    # flat (image, bin, pixel count, sum of per-pixel AuC) rows -- not a dense (images x 529) table.

    def reset(self) -> None:
        self._pending: list[dict[str, Tensor]] = []
        self._rows: list[dict[str, Tensor]] = []  # image index made global
        self._n = 0

    def update(self, batch: Batch) -> None:
        from bench.metrics.functional import ab_bin_index, ab_error_area, per_bin_sums

        target_ab = batch.lab("target")[:, 1:]
        area = ab_error_area(batch.lab("pred")[:, 1:], target_ab)
        counts, sums = per_bin_sums(area, ab_bin_index(target_ab))
        image, bin_ = (counts > 0).nonzero(as_tuple=True)
        self._pending.append({"n": len(batch), "image": image.to(torch.int32).cpu(), "bin": bin_.to(torch.int16).cpu(),
                              "count": counts[image, bin_].float().cpu(), "sum": sums[image, bin_].float().cpu()})

    def take_chunk(self) -> dict[str, Any]:
        if not self._pending:
            return {}
        offsets = np.cumsum([0] + [p["n"] for p in self._pending[:-1]])
        chunk = {
            "n": int(sum(p["n"] for p in self._pending)),
            "image": torch.cat([p["image"] + int(o) for p, o in zip(self._pending, offsets)]),
            **{k: torch.cat([p[k] for p in self._pending]) for k in ("bin", "count", "sum")},
        }
        self._pending = []
        self.replay(chunk)
        return chunk

    def replay(self, chunk: dict[str, Any]) -> None:
        if chunk:
            self._rows.append({**chunk, "image": chunk["image"].to(torch.int64) + self._n})
            self._n += int(chunk["n"])

    def compute(self, stats: Any, clusters: Any = None) -> dict[str, Any]:
        from bench.metrics.functional import AB_BINS
        from bench.metrics.stats import rebalanced_auc, rebalanced_auc_ci

        if not self._n:
            return {"mean": None, "n": 0, "ci95": None}
        image = torch.cat([r["image"] for r in self._rows])
        bin_ = torch.cat([r["bin"] for r in self._rows]).to(torch.int64)
        count = torch.cat([r["count"] for r in self._rows]).double()
        total = torch.cat([r["sum"] for r in self._rows]).double()
        C = torch.bincount(bin_, weights=count, minlength=AB_BINS)
        S = torch.bincount(bin_, weights=total, minlength=AB_BINS)
        w = torch.where(C > 0, 1.0 / C.clamp(min=1.0), torch.zeros_like(C))[bin_]
        a = torch.bincount(image, weights=w * total, minlength=self._n).numpy()  # per image: sum_q w_q s_iq
        b = torch.bincount(image, weights=w * count, minlength=self._n).numpy()  # per image: sum_q w_q c_iq
        return {"mean": rebalanced_auc(C.numpy(), S.numpy()), "n": self._n, "ci95": rebalanced_auc_ci(a, b, stats, clusters),
                "occupied_bins": int((C > 0).sum())}


_CF_NOTE = ("Hasler & Suesstrunk 2003: rg = R - G, yb = (R + G)/2 - B on the uint8 sRGB values (0..255, not linearised); "
            "M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), population std over the image; mean of per-image M")
_CF_ABS_NOTE = ("as colorfulness but with rg = |R - G|, yb = |(R + G)/2 - B| (the implementation DDColor reports; not the "
                "paper's definition; |.| raises the mean term and lowers the spread term, so it can be larger or smaller)")
_CF_GT_NOTE = ("of the ground truth of the same images: the reference to read the outputs' value against (higher is not "
               "better here; it does not depend on the method)")


class _Colorfulness(Metric):
    # Neither way is better: a washed-out output scores low, an over-saturated one high; read the value
    # against the ground truth's (the *_gt metrics). Reports then bold no "best" value.
    higher_is_better = None
    absolute: ClassVar[bool] = False
    of: ClassVar[str] = "pred"

    def score_batch(self, batch: Batch) -> Tensor:
        from bench.metrics.functional import colorfulness

        return colorfulness(batch.image(self.of), absolute=self.absolute)


@METRICS.register("colorfulness", "Hasler-Suesstrunk colourfulness of the outputs (signed rg/yb, the paper's)")
class Colorfulness(_Colorfulness):
    name = "colorfulness"
    convention = f"of the outputs; {_CF_NOTE}; compare with colorfulness_gt"


@METRICS.register("colorfulness_gt", "Hasler-Suesstrunk colourfulness of the ground truth (reference for colorfulness)")
class ColorfulnessGT(_Colorfulness):
    name = "colorfulness_gt"
    of = "target"
    convention = f"{_CF_GT_NOTE}; {_CF_NOTE}"


@METRICS.register("colorfulness_abs", "Colourfulness of the outputs, absolute-value rg/yb variant (as DDColor reports)")
class ColorfulnessAbs(_Colorfulness):
    name = "colorfulness_abs"
    absolute = True
    convention = f"of the outputs; {_CF_ABS_NOTE}; compare with colorfulness_abs_gt"


@METRICS.register("colorfulness_abs_gt", "Absolute-value colourfulness of the ground truth (reference for colorfulness_abs)")
class ColorfulnessAbsGT(_Colorfulness):
    name = "colorfulness_abs_gt"
    absolute = True
    of = "target"
    convention = f"{_CF_GT_NOTE}; {_CF_ABS_NOTE}"

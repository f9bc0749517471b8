"""The report's pictures (matplotlib, Agg backend): comparison grids, loss curves, per-image distributions.

Pure drawing: callers hand over arrays and tables read from the result store; nothing here computes a
metric. Every figure is written atomically (temporary file, then rename) so a report folder never holds
half a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bench.store import atomic_path

# Names come from result files: never let matplotlib read "$...$" in a method name as mathtext.
_RC = {"text.parse_math": False, "font.size": 9, "axes.titlesize": 9, "figure.dpi": 100}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` as PNG atomically, then close it (figures are not garbage-collected by pyplot)."""
    plt = _pyplot()
    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)


def grid_inches(n_rows: int, n_cols: int, biggest: int) -> tuple[float, float, float]:
    """(cell, width, height) in inches of a comparison grid; cells grow with the images (about one
    pixel per pixel, from 1.55 to 3 inches) so large photos stay legible."""
    cell = min(3.0, max(1.55, biggest / 100))
    return cell, cell * n_cols + 0.6, cell * n_rows + 0.45


def grid_pixels(n_rows: int, n_cols: int, biggest: int) -> tuple[int, int]:
    """The PNG size of a comparison grid (what :func:`comparison_grid` writes)."""
    _, w, h = grid_inches(n_rows, n_cols, biggest)
    return round(w * _RC["figure.dpi"]), round(h * _RC["figure.dpi"])


def comparison_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[str], path: Path) -> None:
    """Rows of images (one row per image id), each with one HxWx3 uint8 array per column.

    ``columns`` names the columns (grayscale input, each method, ground truth); the row label is the id.
    """
    plt = _pyplot()
    with plt.rc_context(_RC):
        n_rows, n_cols = len(rows), len(columns)
        biggest = max((max(img.shape[:2]) for _, imgs in rows for img in imgs), default=64)
        cell, width, height = grid_inches(n_rows, n_cols, biggest)
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.04})
        for r, (image_id, images) in enumerate(rows):
            if len(images) != n_cols:
                raise ValueError(f"grid row {image_id!r} has {len(images)} images for {n_cols} columns")
            for c, img in enumerate(images):
                ax = axes[r, c]
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(_shorten(columns[c], 22), fontsize=8)
                if c == 0:
                    ax.set_ylabel(_shorten(image_id, 24), fontsize=7)
        fig.subplots_adjust(left=0.35 / width + 0.02, right=0.99, top=1 - 0.3 / height, bottom=0.01)
        save_figure(fig, path)


def loss_curves(runs: dict[str, "object"], path: Path, validation: dict[str, "object"] | None = None) -> list[str]:
    """Small multiples: one panel per method, one line per ``loss_*`` column of its ``losses.csv``; then,
    when some runs validated, one more row with two panels, validation PSNR and SSIM, a line per method.

    ``runs`` and ``validation`` map a label to a pandas DataFrame with a ``step`` column (validation:
    ``val_psnr`` and ``val_ssim``). Losses of different methods live on different scales (cross-entropy, L1,
    adversarial), so they do not share an axis; validation scores do, so they share one. Returns the panel
    titles, in drawing order.
    """
    plt = _pyplot()
    validation = validation or {}
    titles: list[str] = []
    with plt.rc_context(_RC):
        n = len(runs)
        cols = max(min(n, 3), 2 if validation else 1)
        loss_rows = -(-n // cols)
        nrows = loss_rows + (1 if validation else 0)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.6 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.set_visible(False)
        for ax, (label, frame) in zip(axes[:loss_rows].flat, runs.items()):
            ax.set_visible(True)
            loss_cols = [c for c in frame.columns if c.startswith("loss")] or [c for c in frame.columns if c not in ("step", "images_per_s")]
            for col in loss_cols:
                ax.plot(frame["step"], frame[col], label=col, linewidth=1.2)
            ax.set_title(_shorten(label, 40))
            titles.append(_shorten(label, 40))
            ax.set_xlabel("step")
            if len(loss_cols) == 1:
                ax.set_ylabel(loss_cols[0])
            ax.grid(alpha=0.3)
            if len(loss_cols) > 1:
                ax.legend(fontsize=7)
        if validation:
            for ax, (col, title) in zip(axes[-1], (("val_psnr", "validation PSNR (dB)"), ("val_ssim", "validation SSIM"))):
                ax.set_visible(True)
                for label, frame in validation.items():
                    ax.plot(frame["step"], frame[col], marker="o", markersize=3, linewidth=1.2, label=_shorten(label, 24))
                ax.set_title(f"{title}, held-out training images")
                titles.append(title)
                ax.set_xlabel("step")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, path)
    return titles


def metric_distributions(per_image: dict[str, "object"], metrics: Sequence[tuple[str, str]], path: Path) -> None:
    """One panel per metric: a box per method of its per-image values (the mean marked as a triangle).

    ``per_image`` maps a method label to its per-image DataFrame; ``metrics`` is (column, axis label).
    """
    plt = _pyplot()
    with plt.rc_context(_RC):
        n = len(metrics)
        cols = min(n, 2)
        nrows = -(-n // cols)
        labels = list(per_image)
        width = max(3.8, 0.7 * len(labels) + 1.5)
        fig, axes = plt.subplots(nrows, cols, figsize=(width * cols, 2.9 * nrows), squeeze=False)
        for ax in axes.flat[n:]:
            ax.set_visible(False)
        for ax, (col, axis_label) in zip(axes.flat, metrics):
            data = [per_image[m][col].dropna().to_numpy() if col in per_image[m] else np.array([]) for m in labels]
            keep = [i for i, d in enumerate(data) if d.size]
            ax.boxplot([data[i] for i in keep], showmeans=True, widths=0.6, flierprops={"markersize": 2})
            ax.set_xticks(range(1, len(keep) + 1), [_shorten(labels[i], 14) for i in keep], rotation=20, ha="right")
            ax.set_title(axis_label)
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        save_figure(fig, path)


def _shorten(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"

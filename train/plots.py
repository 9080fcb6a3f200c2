"""PNG plots of a detector's evaluation (matplotlib, Agg backend: no display needed).

* ``roc.png``: the ROC curve with the AUROC and the operating point at the fitted threshold;
* ``histogram.png``: normalised scores of normal vs anomalous test images, threshold at 1.0;
* ``top_scoring.png``: the highest-scoring test images, with their anomaly heatmaps overlaid
  when the detector makes maps (``edge_runtime.heatmaps.overlay``: 0 blue, 1 threshold, 2+ red).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgessl.edge_runtime.heatmaps import overlay
from edgessl.edge_runtime.data.metrics import roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_plot(labels: np.ndarray, scores: np.ndarray, operating_point: tuple[float, float], auroc: float,
             path: Path) -> Path:
    plt = _pyplot()
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.scatter(*operating_point, c="red", zorder=3, label=f"threshold: FPR {operating_point[0]:.3f}, "
                                                          f"TPR {operating_point[1]:.3f}")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def histogram_plot(labels: np.ndarray, normalised: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    labels = np.asarray(labels, bool)
    lo, hi = np.percentile(normalised, [0.5, 99.5])
    bins = np.linspace(min(lo, 0.0), max(hi, 1.5), 50)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.clip(normalised[~labels], bins[0], bins[-1]), bins, alpha=0.6, label=f"normal ({(~labels).sum()})")
    ax.hist(np.clip(normalised[labels], bins[0], bins[-1]), bins, alpha=0.6, label=f"anomalous ({labels.sum()})")
    ax.axvline(1.0, c="red", ls="--", label="threshold (1.0)")
    ax.set(xlabel="normalised anomaly score", ylabel="images", title="Scores of the test images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def top_scoring_plot(images: list[np.ndarray], maps: list[np.ndarray] | None, scores: np.ndarray,
                     titles: list[str], path: Path) -> Path:
    """``images`` at the model input size (uint8), ``maps`` normalised at the same size, or None."""
    plt = _pyplot()
    rows = 2 if maps is not None else 1
    fig, axes = plt.subplots(rows, len(images), figsize=(1.8 * len(images), 2.0 * rows), squeeze=False)
    for j, img in enumerate(images):
        axes[0, j].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        axes[0, j].set_title(f"{scores[j]:.2f}\n{titles[j]}", fontsize=7)
        if maps is not None:
            axes[1, j].imshow(overlay(img, maps[j]))
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("Highest normalised scores" + (" (heatmap: 0 blue, 1 threshold, 2+ red)" if maps is not None else ""),
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

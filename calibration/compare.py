"""How an INT8 model's outputs compare with fp32's on the same images: the gate's figures.

* feature cosine per image ``cos(f_fp32, f_int8)`` of each output (flattened): mean and 5th percentile;
* Spearman rank correlation of the detector's raw scores (Pearson correlation of average ranks);
* AUROC of each precision and its change, when the images include labelled anomalies;
* for a classifier bundle, ``classifier_figures``: accuracy and the positive class's AUROC, each
  precision and the change.
"""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.data.metrics import auroc, average_ranks, row_cosine

from edgessl.edge_runtime.data.classifier_figures import classifier_figures


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks); 1.0 for constant identical inputs."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else 1.0


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], ref_scores: np.ndarray | None,
            got_scores: np.ndarray | None, labels: np.ndarray | None = None,
            classes: np.ndarray | None = None, positive: int | None = None) -> dict:
    """The gate's figures for one INT8 model against fp32.

    Scores None: a bundle with no detector (no score figures). ``labels``: per image 1 = anomaly,
    0 = normal, -1 = left out of the AUROC; or None. ``classes``: per image its classifier class
    (-1: left out), for a bundle with a classifier head; ``positive``: its positive class's index.
    """
    out: dict = {"images": int(len(ref["embedding"]))}
    for name in ref:
        c = row_cosine(ref[name], got[name])
        out[f"{name}_cosine_mean"] = float(c.mean())
        out[f"{name}_cosine_p5"] = float(np.percentile(c, 5))
    if classes is not None:
        out.update(classifier_figures(ref["probabilities"], got["probabilities"], classes, positive))
    if ref_scores is None:
        return out
    out["score_spearman"] = spearman(ref_scores, got_scores)
    rel = np.abs(got_scores - ref_scores) / max(float(np.abs(ref_scores).max()), 1e-30)
    out["score_rel_diff_max"] = float(rel.max())
    if labels is not None:
        m = labels >= 0
        y = labels[m]
        if 0 < y.sum() < len(y):
            a32, a8 = auroc(y, ref_scores[m]), auroc(y, got_scores[m])
            out.update(auroc_fp32=a32, auroc_int8=a8, auroc_change=a8 - a32, auroc_images=int(m.sum()),
                       anomalies=int(y.sum()))
    return out

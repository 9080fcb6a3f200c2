"""Operating thresholds from held-out normal scores alone, and the score normalisation.

**Rule** (an order-statistic / conformal bound). Let ``s_(1) <= ... <= s_(n)`` be the raw scores of
``n`` held-out normal images, exchangeable with future normal images (continuous scores). With
the threshold ``t = s_(k)`` and the decision *anomalous iff raw >= t*, the false-positive rate
on new normal images, ``FPR = P(X >= s_(k))``, is distributed as ``Beta(n + 1 - k, k)``, so

    P(FPR <= a) = P(Binomial(n, a) >= n + 1 - k).

We take the smallest ``k`` for which that probability is at least ``confidence`` (e.g. 0.9),
for the target rate ``a`` (e.g. 0.01): the lowest threshold whose FPR is at most the target
with the stated confidence. It exists only when ``k = n`` qualifies, i.e. when
``1 - (1 - a)^n >= confidence``, so ``n >= log(1 - confidence) / log(1 - a)`` (230 images for
1% at 90%).

**Too few images.** With fewer, the tightest target the data supports at that confidence is

    a_min(n) = 1 - (1 - confidence)^(1/n)       (k = n: the largest held-out score; 3.8% for n = 60 at 90%),

and ``fit_threshold`` uses it (recording the ``requested_target_fpr`` beside the achieved
``target_fpr``) unless ``strict``, which raises ``EdgesslError`` saying how many images are needed.

**Cross-fitting** (``edgessl fit``): the held-out scores are each normal training image's score
under a detector fitted without it (K folds); the shipped detector is fitted on all of them. The
rule's exchangeability then holds for the fold detectors, not exactly for the shipped one: it
was fitted on n instead of n (K-1)/K images, so its scores on new normal images are, if anything,
a little lower, and the FPR bound is approximate (cross-conformal methods carry a worst case of
about twice the target; in practice the FPR on held-out normals stays at or under the target, a
test on real data checks it).

**Normalisation** (affine, stored with the threshold)::

    normalised = (raw - offset) / scale,   offset = median held-out normal score,
                                           scale  = raw_threshold - offset

so the median normal maps to 0 and the threshold to 1.0. **Decision**: anomalous iff
``raw >= raw_threshold``, the same as ``normalised >= 1.0`` (``is_anomaly`` compares raw scores,
so rounding can never flip an image at the boundary). Anomaly maps normalise the same way.

For another precision (INT8), score the same held-out images with that model and call
``fit_threshold`` again with the record's ``target_fpr`` and ``confidence``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .files import read_regular, write_atomic
from .jsonio import parse_json
from .errors import EdgesslError
from .records import record_from_dict


def binomial_sf(m: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) >= m)``, summed in log space (exact to float rounding)."""
    if m <= 0:
        return 1.0
    if m > n:
        return 0.0
    j = np.arange(m, n + 1)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    log_pmf = log_fact[n] - log_fact[j] - log_fact[n - j] + j * math.log(p) + (n - j) * math.log1p(-p)
    top = log_pmf.max()
    return float(min(1.0, math.exp(top) * np.exp(log_pmf - top).sum()))


def fpr_confidence(n: int, k: int, target_fpr: float) -> float:
    """``P(FPR <= target_fpr)`` for the threshold at the ``k``-th smallest of ``n`` held-out scores."""
    return binomial_sf(n + 1 - k, n, target_fpr)


def required_holdout(target_fpr: float, confidence: float) -> int:
    """The fewest held-out normal scores for which the rule can meet the target."""
    _check_rates(target_fpr, confidence)
    n = max(1, math.ceil(math.log1p(-confidence) / math.log1p(-target_fpr)))
    while fpr_confidence(n, n, target_fpr) < confidence:  # guard the float rounding of the bound
        n += 1
    return n


def achievable_fpr(n: int, confidence: float) -> float:
    """``a_min(n)``: the smallest target ``n`` held-out scores support at ``confidence``."""
    _check_rates(0.5, confidence)
    a = -math.expm1(math.log1p(-confidence) / max(1, n))
    while fpr_confidence(n, n, a) < confidence:  # guard the float rounding of the bound
        a = math.nextafter(a, 1.0)
    return a


def order_statistic_rank(n: int, target_fpr: float, confidence: float) -> int:
    """The smallest ``k`` (1-based) with ``P(FPR of s_(k) <= target_fpr) >= confidence``."""
    need = required_holdout(target_fpr, confidence)
    if n < need:
        raise EdgesslError(
            f"{n} held-out normal images are too few for a false-positive rate of {target_fpr:g} at "
            f"{confidence:g} confidence: the rule needs at least {need}. Add normal images, "
            f"or raise --target-fpr (or lower --confidence)")
    lo, hi = 1, n  # fpr_confidence increases with k
    while lo < hi:
        mid = (lo + hi) // 2
        if fpr_confidence(n, mid, target_fpr) >= confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _check_rates(target_fpr: float, confidence: float) -> None:
    if not 0.0 < target_fpr < 1.0:
        raise EdgesslError(f"target false-positive rate must be in (0, 1), got {target_fpr}")
    if not 0.0 < confidence < 1.0:
        raise EdgesslError(f"confidence must be in (0, 1), got {confidence}")


@dataclass(frozen=True)
class Threshold:
    """A threshold at a target FPR, its normalisation, and the held-out scores it came from."""

    target_fpr: float
    confidence: float
    n_holdout: int
    k: int  # 1-based rank of raw_threshold among the sorted held-out scores
    raw_threshold: float
    offset: float  # normalised = (raw - offset) / scale
    scale: float
    achieved_confidence: float  # P(FPR <= target_fpr) at this k (>= confidence)
    holdout_fpr: float  # fraction of held-out scores >= raw_threshold
    holdout_summary: dict  # min, median, mean, std, max of the held-out raw scores
    requested_target_fpr: float | None = None  # what was asked, when too few images moved target_fpr above it
    holdout_quantiles: tuple[float, ...] = ()  # the held-out raw scores' 0, 1, ..., 100th percentiles (drift)

    def normalise(self, raw: np.ndarray | float) -> np.ndarray | float:
        """``(raw - offset) / scale``: median normal -> 0, threshold -> 1."""
        return (np.asarray(raw, np.float64) - self.offset) / self.scale

    def is_anomaly(self, raw: np.ndarray | float) -> np.ndarray | bool:
        """``raw >= raw_threshold`` (equivalently ``normalise(raw) >= 1``)."""
        return np.asarray(raw, np.float64) >= self.raw_threshold

    def to_dict(self) -> dict:
        """The record as JSON stores it (sequences as lists)."""
        return {**asdict(self), "holdout_quantiles": list(self.holdout_quantiles)}

    @classmethod
    def from_dict(cls, d: dict) -> "Threshold":
        """The record ``d``; ``EdgesslError`` for an unknown, missing or mistyped field, or a threshold,
        offset or scale that is not finite (the scale positive): such a record would decide nothing."""
        t = record_from_dict(cls, d, "threshold")
        if not all(math.isfinite(v) for v in (t.raw_threshold, t.offset, t.scale)) or t.scale <= 0:
            raise EdgesslError(f"threshold: raw_threshold and offset must be finite and scale positive (got "
                               f"{t.raw_threshold}, {t.offset}, {t.scale})")
        return t

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> "Threshold":
        path = Path(path)
        if not path.is_file():
            raise EdgesslError(f"{path}: no threshold (fit one with `edgessl fit`)")
        return cls.from_dict(parse_json(read_regular(path, "threshold record"), str(path)))


def fit_threshold(holdout_scores: np.ndarray, target_fpr: float, confidence: float, *, strict: bool) -> Threshold:
    """The rule above applied to raw scores of held-out normal images. Too few for ``target_fpr``:
    ``strict`` raises, otherwise the target becomes ``achievable_fpr`` (``requested_target_fpr`` keeps the ask)."""
    s = np.sort(np.asarray(holdout_scores, np.float64).ravel())
    if not np.isfinite(s).all():
        raise EdgesslError("held-out normal scores contain NaN or infinity; check the detector and the images")
    n = len(s)
    requested = None
    if not strict and n < required_holdout(target_fpr, confidence):
        requested, target_fpr = target_fpr, achievable_fpr(n, confidence)
    k = order_statistic_rank(n, target_fpr, confidence)
    t = float(s[k - 1])
    median = float(np.median(s))
    if t <= median:
        raise EdgesslError(
            f"the threshold ({t:g}) equals the median held-out normal score: the detector gives too few "
            "distinct scores to normalise; check that the backbone and images are not degenerate")
    summary = {"min": float(s[0]), "median": median, "mean": float(s.mean()), "std": float(s.std()),
               "max": float(s[-1])}
    return Threshold(target_fpr, confidence, n, k, t, median, t - median,
                     fpr_confidence(n, k, target_fpr), float((s >= t).mean()), summary, requested,
                     tuple(float(q) for q in np.percentile(s, np.arange(101))))


def rederive_threshold(reference: Threshold, scores: np.ndarray, reference_scores: np.ndarray,
                       recorded: np.ndarray | None) -> tuple[Threshold, np.ndarray]:
    """Another precision's threshold (INT8, a TensorRT engine) from the held-out normals
    ``reference`` came from, with its rule, target and confidence; returns it and the held-out scores.

    ``scores`` and ``reference_scores``: the new model's and the fp32 model's raw scores of those
    normals under the shipped detector. With their cross-fitted fp32 scores ``recorded``, image i's
    held-out score is its recorded score plus the change the new precision makes to its score,
    ``s_i + (q_i - r_i)``: the fold detectors that produced ``s_i`` do not ship, the network's
    precision is what moves. Without (plain validation normals), its own score ``q_i``."""
    held = np.asarray(scores, np.float64) if recorded is None else recorded + (scores - reference_scores)
    target = reference.requested_target_fpr or reference.target_fpr
    return fit_threshold(held, target, reference.confidence, strict=False), held

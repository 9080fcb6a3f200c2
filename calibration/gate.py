"""The accuracy gate, and what to do when an INT8 model fails it.

Pass when, against fp32 on held-out images, for every model output (``embedding``, and ``patches``
for the patch detector): mean per-image cosine >= ``min_cosine_mean``, its 5th percentile >=
``min_cosine_p5``; score Spearman >= ``min_spearman``, and (when labelled anomalies
exist) ``|AUROC_int8 - AUROC_fp32| <= max_auroc_change``. A bundle with a classifier head: also
``accuracy_fp32 - accuracy_int8 <= max_accuracy_drop`` and, with a positive class,
``|positive AUROC change| <= max_auroc_change``; one with no detector has no score criteria. The
classifier's own outputs (``logits``, ``probabilities``) are judged by those figures, not by cosine
(theirs is reported).

On failure, a sensitivity analysis ranks the quantized nodes by what quantizing *each alone* costs
(``1 - mean embedding cosine`` of the model with only that node quantized, on a subset of the
held-out images); the costliest are kept in float, 1, 2, 4, ... of them, until the gate passes or
``max_float_nodes`` is reached. Every attempt is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

from tqdm import tqdm

from edgessl.edge_runtime.data.classifier_figures import TASK_JUDGED
from edgessl.edge_runtime.errors import EdgesslError


class GateFailed(EdgesslError):
    """An INT8 model missed the gate even with layers kept in float; ``report`` has every figure."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class GateCriteria:
    """What an INT8 model must reach; the first four are ``calibrate``'s options (``CalibrateConfig``)."""

    min_cosine_mean: float
    max_auroc_change: float
    max_float_nodes: int
    max_accuracy_drop: float
    min_cosine_p5: float = 0.97
    min_spearman: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def gate_failures(metrics: dict, criteria: GateCriteria) -> list[str]:
    """The criteria a model's figures (``compare.compare``) miss; empty when it passes."""
    failed = []
    for key, value in metrics.items():
        output = key.rsplit("_cosine_", 1)[0]
        if output in TASK_JUDGED:
            continue
        if key.endswith("_cosine_mean") and value < criteria.min_cosine_mean:
            failed.append(f"{output} mean cosine {value:.5f} < {criteria.min_cosine_mean}")
        if key.endswith("_cosine_p5") and value < criteria.min_cosine_p5:
            failed.append(f"{output} 5th-percentile cosine {value:.5f} < {criteria.min_cosine_p5}")
    if "score_spearman" in metrics and metrics["score_spearman"] < criteria.min_spearman:
        failed.append(f"score Spearman {metrics['score_spearman']:.4f} < {criteria.min_spearman}")
    if "auroc_change" in metrics and abs(metrics["auroc_change"]) > criteria.max_auroc_change:
        failed.append(f"AUROC change {metrics['auroc_change']:+.4f} beyond +-{criteria.max_auroc_change}")
    if "accuracy_change" in metrics and -metrics["accuracy_change"] > criteria.max_accuracy_drop:
        failed.append(f"accuracy change {metrics['accuracy_change']:+.4f} below -{criteria.max_accuracy_drop}")
    if "positive_auroc_change" in metrics and abs(metrics["positive_auroc_change"]) > criteria.max_auroc_change:
        failed.append(f"positive-class AUROC change {metrics['positive_auroc_change']:+.4f} beyond "
                      f"+-{criteria.max_auroc_change}")
    return failed


Quantize = Callable[[tuple[str, ...], Optional[tuple[str, ...]]], object]  # (exclude, only) -> model


def sensitivity(nodes: list[str], quantize: Quantize, cost: Callable[[object], float]) -> list[dict]:
    """Each node's cost when it alone is quantized, costliest first."""
    ranked = [{"node": n, "cost": float(cost(quantize((), (n,))))}
              for n in tqdm(nodes, desc="sensitivity", unit="node", leave=False)]
    return sorted(ranked, key=lambda r: -r["cost"])


def run_gate(quantize: Quantize, evaluate: Callable[[object], dict], nodes: list[str],
             criteria: GateCriteria, sensitivity_cost: Callable[[object], float]) -> dict:
    """Quantize, judge, and on failure keep the costliest nodes in float and retry (module docstring).

    Returns ``{"passed", "model", "metrics", "float_nodes", "attempts", "sensitivity"}``.
    """
    model = quantize((), None)
    metrics = evaluate(model)
    failed = gate_failures(metrics, criteria)
    attempts = [{"float_nodes": [], "metrics": metrics, "failed": failed}]
    ranked: list[dict] = []
    if failed and nodes and criteria.max_float_nodes > 0:
        ranked = sensitivity(nodes, quantize, sensitivity_cost)
        k = 1
        while failed and k <= min(criteria.max_float_nodes, len(ranked)):
            kept = [r["node"] for r in ranked[:k]]
            model = quantize(tuple(kept), None)
            metrics = evaluate(model)
            failed = gate_failures(metrics, criteria)
            attempts.append({"float_nodes": kept, "metrics": metrics, "failed": failed})
            k *= 2
    return {"passed": not failed, "model": model, "metrics": metrics, "float_nodes": attempts[-1]["float_nodes"],
            "failed": failed, "attempts": attempts, "sensitivity": ranked}

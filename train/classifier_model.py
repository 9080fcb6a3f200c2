"""The exported network with a fine-tuned classifier: a feature model plus a linear head.

Outputs: the feature model's own (``embedding`` first, then any others), then
``logits = W embedding + b`` ``(B, K)`` and ``probabilities = softmax(logits)`` ``(B, K)``, the
softmax ``p_k = exp(l_k - max l) / sum_j exp(l_j - max l)`` in the graph, so the device only
reads it.
"""

from __future__ import annotations

import torch
from torch import nn

CLASSIFIER_OUTPUTS = ("logits", "probabilities")


class ClassifierModel(nn.Module):
    """``features`` (a module with ``output_names`` that include ``embedding``) followed by ``head``."""

    def __init__(self, features: nn.Module, head: nn.Linear):
        super().__init__()
        self.features, self.head = features, head
        self.embedding_index = list(features.output_names).index("embedding")

    @property
    def output_names(self) -> list[str]:
        return [*self.features.output_names, *CLASSIFIER_OUTPUTS]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = tuple(self.features(x))
        logits = self.head(outputs[self.embedding_index])
        return (*outputs, logits, torch.softmax(logits, dim=1))

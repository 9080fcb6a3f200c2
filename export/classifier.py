"""A run's fine-tuned classifier head (``edgessl finetune``) on its way into the bundle: read,
checked against the backbone, and described in the manifest's ``classifier`` section.

The head itself travels inside the ONNX graph (``train.classifier_model``: ``logits`` and
``probabilities`` outputs); the section records the class names in output order, the positive
("abnormal") class when the user names one, and the head's provenance from ``finetune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.files import file_sha256

PROVENANCE_KEYS = ("mode", "data", "label_fraction", "seed", "labelled_images", "labelled_set_sha256",
                   "test_accuracy", "source_run")


@dataclass
class Head:
    """The classifier of a run: its linear layer, class names (output order) and positive class."""

    layer: object  # torch.nn.Linear (K x D)
    classes: list[str]
    positive_class: str | None
    provenance: dict
    sha256: str


def positive_class_name(classes: list[str], given: str | None) -> str | None:
    """``given`` (a class name or index) as a class name; None stays None."""
    if given is None:
        return None
    if given in classes:
        return given
    if given.isdigit() and int(given) < len(classes):
        return classes[int(given)]
    raise EdgesslError(f"--positive-class {given!r} is not a class of the classifier (classes: {', '.join(classes)})")


def read_head(run: Path, meta: dict, feature_dim: int, positive_class: str | None) -> Head | None:
    """The run's head (None when it has none; then ``positive_class`` is refused), checked to fit a
    backbone of ``feature_dim`` features."""
    from edgessl.train.finetune import load_head

    if "head" not in meta:
        if positive_class is not None:
            raise EdgesslError(f"--positive-class: {run} has no classifier head (make one with `edgessl finetune`)")
        return None
    layer, classes = load_head(run)
    if layer.in_features != feature_dim:
        raise EdgesslError(f"{run}: its classifier head takes {layer.in_features} features but the backbone gives "
                           f"{feature_dim} (a head for another backbone); fine-tune this run's backbone again")
    if layer.out_features != len(classes) or len(classes) < 2:
        raise EdgesslError(f"{run}: its classifier head has {layer.out_features} outputs for {len(classes)} class "
                           "names; fine-tune again")
    finetune = meta.get("finetune", {})
    return Head(layer, classes, positive_class_name(classes, positive_class),
                {k: finetune.get(k) for k in PROVENANCE_KEYS}, file_sha256(run / meta["head"]["file"]))


def classifier_section(head: Head) -> dict:
    """The manifest's ``classifier`` section."""
    return {"classes": head.classes, "positive_class": head.positive_class,
            "outputs": {"logits": "W embedding + b", "probabilities": "softmax(logits) over classes"},
            "head_sha256": head.sha256, "provenance": head.provenance}

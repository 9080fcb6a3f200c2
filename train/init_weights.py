"""``pretrain --init-weights FILE``: start the backbone from weights the user has (domain-adaptive pretraining).

``FILE`` is a torchvision-layout state dict of the same architecture: ``.pth`` / ``.pt`` (read with
``torch.load(weights_only=True)``, so no code in the file runs) or ``.safetensors``. torchvision's
names map onto the backbone's stages:

* resnet18: ``conv1`` / ``bn1`` -> ``stages.0.0`` / ``stages.0.1``, ``layerN`` -> ``stages.N``;
* mobilenet_v3_small: ``features.i`` -> ``stages.S.i``, S the stage holding block ``i`` (0 | 1 | 2-3 | 4-8 | 9-).

The classifier (``fc``, ``classifier``) is dropped. A missing key, an unexpected one or a shape
that differs (another architecture, or a small-image stem against ImageNet's 7x7 conv) is a
one-line error naming the first mismatch.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from edgessl.edge_runtime.errors import EdgesslError

from .backbones import Backbone
from .checkpoint import load_weights

HEADS = ("fc.", "classifier.")
MOBILENET_STAGE_STARTS = (0, 1, 2, 4, 9)  # first torchvision block of each stage


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise EdgesslError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EdgesslError(f"{path}: not a readable state dict ({type(exc).__name__}: {first[:160]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise EdgesslError(f"{path}: not a state dict of tensors")
    return state


def _resnet_name(key: str) -> str:
    key = re.sub(r"^conv1\.", "stages.0.0.", key)
    key = re.sub(r"^bn1\.", "stages.0.1.", key)
    return re.sub(r"^layer([1-4])\.", r"stages.\1.", key)


def _mobilenet_name(key: str) -> str:
    m = re.match(r"^features\.(\d+)\.(.*)$", key)
    if not m:
        return key
    block = int(m.group(1))
    stage = max(i for i, start in enumerate(MOBILENET_STAGE_STARTS) if block >= start)
    return f"stages.{stage}.{block}.{m.group(2)}"  # the stages are slices of ``features``: indices kept


def to_backbone_names(state: dict[str, torch.Tensor], backbone_name: str) -> dict[str, torch.Tensor]:
    """torchvision names to the backbone's (already-backbone names pass through), heads dropped."""
    rename = _resnet_name if backbone_name == "resnet18" else _mobilenet_name
    return {rename(k): v for k, v in state.items() if not k.startswith(HEADS)}


def load_init_weights(backbone: Backbone, path: str | Path) -> None:
    """Load ``path`` into ``backbone`` in place, or raise ``EdgesslError`` naming the first mismatch."""
    path = Path(path)
    state = to_backbone_names(read_state_dict(path), backbone.config.name)
    load_weights(backbone, state, f"{path} ({backbone.config.name}, {backbone.config.in_channels} channel(s), "
                                  f"{backbone.config.image_size} px)")

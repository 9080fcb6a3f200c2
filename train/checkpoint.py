"""Run directories: safetensors weights beside JSON metadata. Loading never unpickles.

    RUN_DIR/model.safetensors   backbone weights (what evaluation, fitting and export use)
    RUN_DIR/model.json          {"format", "version", "backbone", "preprocess", "method", ...}
    RUN_DIR/state.safetensors   method + optimizer tensors, to resume training
    RUN_DIR/state.json          epoch, step, optimizer hyper-parameters, scaler state
    RUN_DIR/config.yaml         the resolved command configuration
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from edgessl import __version__
from edgessl.edge_runtime.files import write_atomic
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .backbones import Backbone, BackboneConfig, build_backbone

FORMAT = "edgessl-checkpoint"
VERSION = 1


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (``write_atomic``)."""
    write_atomic(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file atomically (``write_atomic``)."""
    write_atomic(Path(path), save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))


def save_model(run_dir: Path, backbone: Backbone, spec: PreprocessSpec, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` and ``model.json`` for a backbone and its preprocessing."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(run_dir / "model.safetensors", backbone.state_dict())
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "tool_version": __version__,
        "backbone": backbone.config.to_dict(),
        "feature_dim": backbone.feature_dim,
        "preprocess": spec.to_dict(),
        **(extra or {}),
    }
    write_json(run_dir / "model.json", meta)


def read_model_meta(run_dir: Path) -> dict:
    path = Path(run_dir) / "model.json"
    if not path.is_file():
        raise EdgesslError(f"{run_dir}: not a run directory (no model.json; train one with `edgessl pretrain`)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise EdgesslError(f"{path}: not an edgessl checkpoint")
    if meta.get("version") != VERSION:
        raise EdgesslError(f"{path}: checkpoint format version {meta.get('version')} is not supported (expected {VERSION})")
    return meta


def legacy_stem(config: dict) -> int:
    """The stem of a run saved before the stem was recorded (edgessl 0.1.0): stride 1 up to 40 px."""
    size = config.get("image_size", 32)
    return 1 if size <= 40 else 2 if size <= 96 else 0


def load_model(run_dir: Path, map_location: str = "cpu") -> tuple[Backbone, PreprocessSpec, dict]:
    """The backbone, its preprocessing spec and the metadata of a run directory."""
    run_dir = Path(run_dir)
    meta = read_model_meta(run_dir)
    backbone = build_backbone(BackboneConfig(**{"stem_stride": legacy_stem(meta["backbone"]), **meta["backbone"]}))
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise EdgesslError(f"{run_dir}: model.safetensors is missing")
    load_weights(backbone, load_file(str(weights), device=map_location), str(weights))
    backbone.eval()
    return backbone, PreprocessSpec.from_dict(meta["preprocess"]), meta


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Load a state dict, turning a shape or key mismatch into a one-line error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"shape of {wrong[0]}: {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
        raise EdgesslError(f"{name}: weights do not fit this model ({detail}); was it trained with another backbone?")
    module.load_state_dict(state)


def optimizer_tensors(optimizers: list[torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], list]:
    """Optimizer state split into tensors (for safetensors) and JSON-able parameter groups."""
    tensors, groups = {}, []
    for o, opt in enumerate(optimizers):
        sd = opt.state_dict()
        for pid, st in sd["state"].items():
            for key, val in st.items():
                tensors[f"optim{o}.{pid}.{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
        groups.append(sd["param_groups"])
    return tensors, groups


def restore_optimizers(optimizers: list[torch.optim.Optimizer], tensors: dict[str, torch.Tensor], groups: list) -> None:
    for o, opt in enumerate(optimizers):
        state: dict[int, dict[str, torch.Tensor]] = {}
        prefix = f"optim{o}."
        for name, val in tensors.items():
            if name.startswith(prefix):
                pid, key = name[len(prefix):].split(".", 1)
                state.setdefault(int(pid), {})[key] = val
        opt.load_state_dict({"state": state, "param_groups": groups[o]})

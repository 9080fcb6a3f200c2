"""The float type PyTorch computes in: bf16 autocast + channels-last where the hardware does bf16
natively, fp32 elsewhere. Decided at run time, never hard-coded (hosts differ from day to day).

``auto`` picks ``bf16`` on a CUDA GPU that supports it and on a CPU with native bf16 arithmetic
(AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``: oneDNN then runs bf16 convolutions and matmuls
at about twice the fp32 rate); on other CPUs bf16 would be emulated, slower than fp32, so ``auto``
keeps ``fp32``. ``fp32`` and ``bf16`` force the choice.

Under bf16 the weights stay fp32 (autocast casts per op) and everything returned to numpy is cast
back to float32, so checkpoints, detectors and exported models do not change type.

One choice per process: each command (``pretrain``, ``finetune``, ``evaluate``, ``fit``) calls
``select`` with its ``--precision``; the training loop and feature extraction read it through
``active``. ``fit`` and ``evaluate`` keep fp32 under ``auto`` (see ``select``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from edgessl.edge_runtime.errors import EdgesslError

from .config import PRECISIONS

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")

_selected = "auto"


def cpu_flags(text: str) -> set[str]:
    """The feature flags of a ``/proc/cpuinfo`` text (the first ``flags`` line)."""
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Where ``/proc/cpuinfo`` is
    not readable (not Linux), oneDNN's own check answers."""
    try:
        return bool(cpu_flags(CPUINFO.read_text()) & set(NATIVE_BF16_FLAGS))
    except OSError:
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check and check())


def resolve(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``precision`` (one of ``PRECISIONS``) on ``device``."""
    if precision not in PRECISIONS:
        raise EdgesslError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def select(precision: str, shipped: bool = False) -> str:
    """Set this process's choice (checked); returns it.

    ``shipped``: what is computed goes into a bundle or judges one (``fit``'s memory bank and the
    threshold fitted on held-out scores, which the device compares with its own fp32/int8 scores;
    ``evaluate``'s scores against that threshold): there ``auto`` means ``fp32``, so the threshold's
    false-positive bound is about the model that ships; ``bf16`` must be asked for.
    """
    global _selected
    resolve(precision, torch.device("cpu"))  # validates the name
    _selected = "fp32" if shipped and precision == "auto" else precision
    return _selected


@dataclass(frozen=True)
class Compute:
    """How to run a network on one device: autocast type (None: fp32) and memory format."""

    device: torch.device
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return "fp32" if self.dtype is None else "bf16"

    @property
    def channels_last(self) -> bool:
        """Channels-last pays on CUDA and with oneDNN's bf16 kernels."""
        return self.device.type == "cuda" or self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def module(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on the device, channels-last where that pays."""
        module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch on the device, channels-last where that pays."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def active(device: torch.device | str) -> Compute:
    """The selected precision, resolved for ``device``."""
    device = torch.device(device)
    return Compute(device, torch.bfloat16 if resolve(_selected, device) == "bf16" else None)

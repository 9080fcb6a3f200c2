"""TensorRT's own INT8 calibration cache (the fallback for TensorRT 10 builds with a calibrator).

Format (what ``IInt8Calibrator::writeCalibrationCache`` writes and ``readCalibrationCache`` returns)::

    TRT-<version number>-EntropyCalibration2
    <tensor name>: <scale as the hex of its float32 bits, big-endian>

one line per network tensor, ``scale = absmax / 127`` (symmetric int8). The version number is
``major*10000 + minor*100 + patch`` from TensorRT 10 on (``10.3.0`` -> ``100300``) and
``major*1000 + minor*100 + patch`` before (``8.6.1`` -> ``8601``). Tensor names are the ONNX
tensor names, which TensorRT's ONNX parser keeps. TensorRT 11 has no calibrators: use the Q/DQ
model there. A cache is tied to the TensorRT version in its header.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edgessl.edge_runtime.files import write_atomic
from edgessl.edge_runtime.errors import EdgesslError

ALGORITHM = "EntropyCalibration2"
INT8_MAX = 127.0


def version_number(version: str) -> int:
    """TensorRT's integer version as it appears in cache headers."""
    try:
        major, minor, patch = (int(p) for p in (version.split(".") + ["0", "0"])[:3])
    except ValueError:
        raise EdgesslError(f"not a TensorRT version: {version!r} (e.g. 10.3.0)") from None
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def hex_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text.strip().rjust(8, "0")))[0]


def cache_text(ranges: dict[str, tuple[float, float]], tensorrt_version: str, algorithm: str = ALGORITHM) -> str:
    """The cache for symmetric ranges ``name -> (rmin, rmax)``: ``scale = max(|rmin|, |rmax|) / 127``."""
    lines = [f"TRT-{version_number(tensorrt_version)}-{algorithm}"]
    for name, (lo, hi) in ranges.items():
        absmax = max(abs(lo), abs(hi))
        lines.append(f"{name}: {scale_hex(absmax / INT8_MAX if absmax > 0 else 0.0)}")
    return "\n".join(lines) + "\n"


def write_cache(path: Path, ranges: dict[str, tuple[float, float]], tensorrt_version: str) -> None:
    write_atomic(Path(path), cache_text(ranges, tensorrt_version).encode())


def read_cache(path: Path) -> tuple[int, str, dict[str, float]]:
    """``(version number, algorithm, name -> scale)`` of a TensorRT calibration cache."""
    lines = Path(path).read_text().splitlines()
    head = lines[0].split("-") if lines else []
    if len(head) < 3 or head[0] != "TRT" or not head[1].isdigit():
        raise EdgesslError(f"{path}: not a TensorRT calibration cache (header {lines[:1]})")
    scales = {}
    for line in lines[1:]:
        if line.strip():
            name, _, value = line.rpartition(":")
            scales[name] = hex_scale(value)
    return int(head[1]), "-".join(head[2:]), scales

"""Options several commands share, each written once: the bundle a command loads and what it must
prove, how a source is scored, the frame selection written into ``--data``, and the PyTorch
device and precision."""

from __future__ import annotations

from edgessl.edge_runtime.backends.base import CHOICES as BACKENDS
from edgessl.edge_runtime.pipeline_options import PRECISIONS
from edgessl.edge_runtime.data.datasets import SPLITS
from edgessl.edge_runtime.data.source_text import SourceOptions
from edgessl.train.config import PRECISIONS as TORCH_PRECISIONS

from .options import Opt

RUN_DIR = "RUN_DIR"
BUNDLE_HELP = "bundle directory (from `edgessl export`)"

TRUST = (
    Opt("--public-key", "refuse the bundle unless it is signed with this Ed25519 key (`edgessl sign`)",
        metavar="KEY.pub"),
    Opt("--expect-sha256", "refuse the bundle unless its sha256 (of manifest.json, `edgessl bundle inspect` "
                           "prints it) is HASH", metavar="HASH"),
    Opt("--no-delta", "ignore the bundle's adaptation delta (adapt/, `edgessl adapt`): the base detector and threshold"),
    Opt("--require-signed-delta", "refuse an adaptation delta unless it is signed with --public-key "
                                  "(`edgessl sign --delta`, off the device)"),
)

# The model a bundle command runs, and what the bundle must prove.
MODEL = (
    Opt("--backend", "inference backend; auto = the best available: tensorrt > ort-tensorrt > ort-cuda > ort-cpu",
        choices=BACKENDS),
    Opt("--precision", "the bundle's model: fp32, or int8 (the CPU model on ort-cpu, the Q/DQ TensorRT model on "
                       "GPUs)", choices=PRECISIONS),
    Opt("--threads", "ONNX Runtime intra-op threads (0: one per core)"),
    Opt("--dla-core", "run the engine built for DLA core N (Jetson; `build-engine --dla-core N`) on the "
                      "native tensorrt backend", metavar="N"),
    *TRUST,
)
BUNDLE = (Opt("--bundle", BUNDLE_HELP, metavar="BUNDLE", required=True), *MODEL)

MAX_PIXELS = Opt("--max-pixels", "refuse, before decoding, an image, video frame or DICOM of more pixels (0: the "
                                "default for the bundle's input size, docs/runtime.md)", metavar="N")
SCORING = (
    Opt("--batch-size", "images per inference call (offline sources; live ones score each frame)"),
    Opt("--queue-size", "decoded frames waiting at most (live sources drop the oldest)"),
    Opt("--no-progress", "turn off: a progress bar on offline sources (of 50 images or more, or of unknown length)"),
    MAX_PIXELS,
)

SPLIT = Opt("--split", "split of a .npz/MVTec source", choices=SPLITS)

def _selection(flag: str, help: str, **kw) -> Opt:
    """A frame selection option: written into --data's source string (``selected_data``); unset,
    the string's own value stands."""
    return Opt(flag, help, override=True, of=SourceOptions, **kw)


SELECTION = (
    _selection("--topic", "bag image topic (default: the bag's only image topic)"),
    _selection("--every", "keep every N-th frame of footage", metavar="N"),
    _selection("--fps", "keep at most F frames per second of footage (bag stamps, video frame rate; 0: no "
                        "limit)", metavar="F"),
    _selection("--max-frames", "keep at most N frames per video or bag (0: no limit)", metavar="N"),
    _selection("--dedup", "skip a frame within T grey levels (32x32 thumbnails) of the last kept one (0 keeps "
                          "every frame)", metavar="T"),
    _selection("--dicom-modality", "keep only these DICOM modalities, e.g. CR,DX", metavar="M[,M]"),
)

COMPUTE = (
    Opt("--device", "auto (a GPU when present), cpu, cuda, cuda:N"),
)


def torch_precision(auto: str) -> Opt:
    """``--torch-precision``, saying what ``auto`` means for this command."""
    return Opt("--torch-precision", f"PyTorch compute precision: auto = {auto}", choices=TORCH_PRECISIONS)

"""What selects and checks the model a caller runs: the bundle, the backend, the precision, the
threads, and what the bundle must prove (a signature, a pinned hash; docs/trust.md)."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "int8")  # int8: the CPU model on ort-cpu, the Q/DQ TensorRT model on GPUs


@dataclass
class TrustOptions:
    """``public_key``: refuse the bundle unless signed with this Ed25519 key; ``expect_sha256``:
    refuse it unless its sha256 (of manifest.json) is this; ``delta``: use the adaptation delta
    (``adapt/``) when there is one (False: ignore it); ``require_signed_delta``: refuse an adaptation delta not signed with
    ``public_key``."""

    public_key: str | None = None
    expect_sha256: str | None = None
    delta: bool = True
    require_signed_delta: bool = False


@dataclass
class BundleOptions(TrustOptions):
    """The bundle directory, the backend (``backends.base.CHOICES``; auto: the best available), the
    precision (``PRECISIONS``), ONNX Runtime's intra-op threads (0: one per core) and the DLA core
    whose engine to run (None: the GPU's)."""

    bundle: str = ""
    backend: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    dla_core: int | None = None

    def pipeline(self, threshold: float | None = None):
        """The ``Pipeline`` these options describe (bundle verified, signature and pin checked when given)."""
        from .backends.ort import OrtOptions
        from .pipeline import Pipeline

        return Pipeline.load(self.bundle, backend=self.backend, precision=self.precision, threshold=threshold,
                             options=OrtOptions(intra_op_threads=self.threads), public_key=self.public_key,
                             expect_sha256=self.expect_sha256, dla_core=self.dla_core, delta=self.delta,
                             require_signed_delta=self.require_signed_delta)

"""Config dataclass fields that carry their own command-line help, and the options every command
that loads a bundle shares.

A command's options are generated from its config dataclass (``commands/options.py``), so a
default is written once, here in the field. ``option`` is ``dataclasses.field`` plus the help
text, the allowed values and how the option is spelled when the field name is not the spelling.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any, Sequence

from .backends.base import CHOICES as BACKENDS

PRECISIONS = ("fp32", "int8")


def option(default: Any = MISSING, help: str = "", *, choices: Sequence | None = None, metavar: str | None = None,
           name: str | None = None, aliases: Sequence[str] = (), required: bool = False, factory=MISSING):
    """A dataclass field whose metadata says how ``--NAME`` (default: the field's name with dashes)
    reads on the command line. ``aliases`` are hidden old spellings; ``required`` options may come
    from ``--config``; a list field takes one or more values and a command-line list replaces the
    file's."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "metavar": metavar,
            "name": name, "aliases": tuple(aliases), "required": required}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: to reuse another command's default
    rather than write it again."""
    return cls.__dataclass_fields__[name].default


@dataclass
class TrustOptions:
    """What a bundle must prove before it is used (docs/trust.md)."""

    public_key: str | None = option(None, "refuse the bundle unless it is signed with this Ed25519 key "
                                          "(`edgessl sign`)", metavar="KEY.pub")
    expect_sha256: str | None = option(None, "refuse the bundle unless its sha256 (of manifest.json, "
                                             "`edgessl bundle inspect` prints it) is HASH", metavar="HASH")


@dataclass
class BundleOptions(TrustOptions):
    """What selects the model a command runs: the bundle, the backend and the precision (and, from
    ``TrustOptions``, what the bundle must prove)."""

    bundle: str = option("", "bundle directory (from `edgessl export`)", metavar="BUNDLE", required=True)
    backend: str = option("auto", "inference backend; auto = the best available: "
                                  "tensorrt > ort-tensorrt > ort-cuda > ort-cpu", choices=BACKENDS)
    precision: str = option("fp32", "fp32, or int8 (the CPU model on ort-cpu, the Q/DQ TensorRT model on GPUs)",
                            choices=PRECISIONS)
    threads: int = option(0, "ONNX Runtime intra-op threads (0: one per core)")

    def pipeline(self, threshold: float | None = None):
        """The ``Pipeline`` these options describe (bundle verified, signature and pin checked when given)."""
        from .backends.ort import OrtOptions
        from .pipeline import Pipeline

        return Pipeline.load(self.bundle, backend=self.backend, precision=self.precision, threshold=threshold,
                             options=OrtOptions(intra_op_threads=self.threads), public_key=self.public_key,
                             expect_sha256=self.expect_sha256)

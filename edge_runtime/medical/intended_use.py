"""What a bundle is for: the modalities and image sizes triage accepts before scoring.

Stored (optionally) in the manifest as ``intended_use``, set by ``edgessl operating-point``::

    {"modalities": ["CR", "DX"], "reference_size": 28, "size_factor": 8.0,
     "statement": "...", "banner": "NOT FOR DIAGNOSIS ..."}

**Modality**: a DICOM study whose ``Modality`` is not in ``modalities`` is not scored (an empty
list accepts any; PNG and ``.npz`` inputs carry no modality and are not checked).
**Size**: with ``L`` the image's longer side and ``R`` the ``reference_size`` (the median longer
side of the validation images; the model's input size when not recorded), an image is scored only
when ``R / size_factor <= L <= R * size_factor``. Far outside that range the image is not what the
model was validated on (a 2048 px radiograph given to a 28 px model, a thumbnail, a 1x1 file).
**Statement** and **banner**: what the results say the bundle is for, in every DICOM SR
(``sr.triage_sr``) and burned into every heatmap overlay (``sr.overlay_sc``); a manufacturer sets
them in the manifest, the defaults (``STATEMENT``, ``BANNER``) say triage, not diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE_FACTOR = 8.0
STATEMENT = ("Worklist triage aid: orders studies for reading by how unlike the normal training images they "
             "look. Not for diagnosis; every study is still read by a qualified reader.")
BANNER = "NOT FOR DIAGNOSIS - triage aid only"


@dataclass(frozen=True)
class IntendedUse:
    modalities: tuple[str, ...] = ()
    reference_size: int = 0  # 0: the model's input size
    size_factor: float = SIZE_FACTOR
    statement: str = STATEMENT
    banner: str = BANNER

    @classmethod
    def from_manifest(cls, manifest: dict) -> "IntendedUse":
        d = manifest.get("intended_use") or {}
        image_size = int(manifest.get("preprocess", {}).get("image_size", 0))
        return cls(modalities=tuple(d.get("modalities", ())),
                   reference_size=int(d.get("reference_size") or image_size),
                   size_factor=float(d.get("size_factor", SIZE_FACTOR)),
                   statement=str(d.get("statement") or STATEMENT), banner=str(d.get("banner") or BANNER))

    def to_dict(self) -> dict:
        return {"modalities": list(self.modalities), "reference_size": self.reference_size,
                "size_factor": self.size_factor, "statement": self.statement, "banner": self.banner}

    def size_range(self) -> tuple[float, float]:
        return self.reference_size / self.size_factor, self.reference_size * self.size_factor

    def reason(self, image: np.ndarray, modality: str = "") -> str:
        """Why this image is outside the intended use ("" when it is inside)."""
        if modality and self.modalities and modality not in self.modalities:
            return (f"modality {modality} is not one this bundle was made for ({', '.join(self.modalities)})")
        if self.reference_size:
            lo, hi = self.size_range()
            side = max(image.shape[:2])
            if not lo <= side <= hi:
                h, w = image.shape[:2]
                return (f"image size {w}x{h} is outside what this bundle was made for (longer side "
                        f"{lo:g}-{hi:g} px: {self.size_factor:g}x around {self.reference_size} px)")
        return ""


def reference_size(images_shapes: list[tuple[int, ...]]) -> int:
    """The median longer side of some images (0 for none)."""
    return int(np.median([max(s[:2]) for s in images_shapes])) if images_shapes else 0

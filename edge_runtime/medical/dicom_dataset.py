"""DICOM files as a training dataset, decoded by the triage reader (``dicom.DicomFile``: rescale,
VOI window, MONOCHROME1, bit depths, multi-frame), so a frame trains as triage scores it.

``DICOM`` is the ``DICOM`` kind of ``data.registry``'s table. Each file's header is
read when the source is opened: a file that is not DICOM, has no pixel data or cannot be decoded
is counted and listed; ``--dicom-modality`` keeps only the given modalities (others are counted
as skipped by ``modality``). A multi-frame file gives one image per frame (``file#frame``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.cache import digest, file_identity
from ..data.image_datasets import ImageDataset
from ..data.registry import SourceKind
from ..data.source_report import SourceReport
from ..data.source_text import SourceOptions
from ..errors import EdgesslError
from .dicom import DicomFile, is_dicom_file


class DicomDataset(ImageDataset):
    """Frames of DICOM files: ``items[i] = (file, frame)``; the last file's frames are kept decoded."""

    def __init__(self, source: str, items: list[tuple[Path, int, bool]], labels: np.ndarray,
                 class_names: list[str]):
        super().__init__(source, "all", labels, class_names)
        self.items = items  # (path, frame, multi-frame?)
        self._decoded: tuple[Path, list[np.ndarray]] | None = None

    def image(self, i: int) -> np.ndarray:
        path, frame, _ = self.items[i]
        if self._decoded is None or self._decoded[0] != path:
            self._decoded = (path, list(DicomFile(path).frames()))
        return self._decoded[1][frame]

    def name(self, i: int) -> str:
        path, frame, multi = self.items[i]
        return f"{path}#{frame}" if multi else str(path)

    def identity(self) -> str:
        return digest([file_identity(sorted({p for p, _, _ in self.items})), [(str(p), k) for p, k, _ in self.items]])


def open_dicom(paths: list[Path], labels: list[int], class_names: list[str], options: SourceOptions) -> DicomDataset:
    report = SourceReport(str(paths[0].parent) if len(paths) > 1 else str(paths[0]))
    wanted = options.modalities
    items, item_labels = [], []
    for path, label in zip(paths, labels):
        report.read += 1
        try:
            f = DicomFile(path)
            if wanted and f.info.modality.upper() not in wanted:
                report.skip("modality")
                continue
            f.check_decodable()
        except EdgesslError as exc:
            report.skip("error", str(exc))
            continue
        items += [(path, k, f.info.frames > 1) for k in range(f.info.frames)]
        item_labels += [label] * f.info.frames
    report.kept = len(items)
    ds = DicomDataset(report.source, items, np.asarray(item_labels, np.int64), class_names)
    ds.report = report
    return ds


DICOM = SourceKind("DICOM", is_dicom_file, open_dicom)

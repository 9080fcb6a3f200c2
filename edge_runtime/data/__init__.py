"""Datasets, metrics and bundle evaluation: torch-free, shared by training and the device, so a
frame decodes and a score is judged the same on both sides. The user's own data (video, bags,
DICOM, lists, nested folders) comes in through ``user_data``, with frame selection and a disk cache
(docs/data-sources.md)."""

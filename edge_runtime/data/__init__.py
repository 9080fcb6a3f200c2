"""Datasets, metrics and bundle evaluation: torch-free, shared by training and the device, so a
frame decodes and a score is judged the same on both sides."""

"""Anomaly-detector scoring in numpy: the code evaluation and the device both run."""

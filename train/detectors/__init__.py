"""Fitting the anomaly detectors on normal-image features (torch allowed here)."""

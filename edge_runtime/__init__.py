"""Torch-free device runtime: bundles, preprocessing, backends, detector scoring.

Nothing here imports torch or another edgessl stage; the other stages import from here.
"""

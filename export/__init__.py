"""Checkpoint to bundle: ONNX export with verification, manifest writing, TensorRT engine building."""

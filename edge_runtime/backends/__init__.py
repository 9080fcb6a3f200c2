"""Inference backends: ONNX Runtime (CPU, CUDA, TensorRT providers) and native TensorRT."""

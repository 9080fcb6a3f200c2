"""INT8 post-training quantization: calibration data, Q/DQ models, the accuracy gate."""

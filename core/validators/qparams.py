"""qparams validator: compares a TFLite model's quantization parameters with PyTorch's (QAT work)."""

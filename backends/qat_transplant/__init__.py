"""QAT transplant backend: PyTorch eager QAT scales and zero points carried into int8 TFLite."""

"""onnx-tf backend: PyTorch -> ONNX -> onnx-tf -> SavedModel -> TFLiteConverter."""

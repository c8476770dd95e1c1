"""What runs inside a worker: the worker itself, the reference and ONNX-export stages, model loading."""

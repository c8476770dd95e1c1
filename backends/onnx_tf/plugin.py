"""Plugin module of the onnx-tf backend (hooks are added by the onnx-tf work)."""

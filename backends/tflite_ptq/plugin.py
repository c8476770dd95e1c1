"""Plugin module of the tflite-ptq quantizer (hooks are added by the onnx-tf work)."""

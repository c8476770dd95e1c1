"""tflite-ptq quantizer: TFLiteConverter post-training quantization of a SavedModel."""

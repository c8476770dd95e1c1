"""AI Edge Torch backend (litert-torch and the last tf-nightly ai-edge-torch)."""

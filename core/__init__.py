"""liteport: convert PyTorch models to TensorFlow Lite through pinned converter backends.

The host package never imports torch or TensorFlow at import time; converters run in
their own environments and exchange only files and JSON with the host.
"""

__version__ = "0.1.0"

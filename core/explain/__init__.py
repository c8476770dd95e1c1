"""Per-layer divergence localisation (``liteport explain``): where a converted model drifts from PyTorch.

Pure logic shared by the host and the workers, below the stages in the import layers:

* ``names``: the module-path spellings converters leave in tensor names (torch-free, numpy-free);
* ``thresholds``: per-layer thresholds per mode and the value-agreement bar for float matches;
* ``match``: PyTorch module outputs <-> TFLite tensors (names, graph outputs, values, float anchor);
* ``layers``: per-layer metrics, the error a layer adds, the first divergent layer, op groups, hints;
* ``document``: the ``liteport-explain/1`` document and its plain-text table.

``match`` and ``layers`` import numpy and run inside the validation runtime's worker; the host
imports only ``names``, ``thresholds`` and ``document``.
"""

"""Built-in graph rewrites: ops some backend lacks, replaced by equivalent forms it has.

A rewrite is a plugin like a backend (``liteport_rewrites`` registers it, ``liteport_rewrite``
applies it to the model's ``torch.export`` graph in the torch environment) and uses only
``liteport.api``. The chain tries a rewritten model when an attempt fails with ``unsupported_op``
(or ``invalid_model``, or ``quantizer_error``) naming an op a rewrite declares; the validator
judges it like any attempt.
Each built-in answers a failure measured on the zoo (see ``liteport.rewrites.plugin``).
"""

"""liteport's pytest plugin for backend authors: the conformance suite every backend passes.

Enable it explicitly (it is not auto-loaded): ``pytest -p liteport.testing --liteport-backend NAME``
or ``pytest_plugins = ["liteport.testing"]`` in a root ``conftest.py``. The suite checks that the
backend's registration record is valid, that its hooks match the hookspecs, that every declared
mode converts ``zoo:tiny_cnn`` and validates through the real pipeline, that an unsupported op is
reported as ``unsupported_op`` and that error messages are one line. ``liteport.testing.checks``
holds the same checks as plain functions.
"""

from __future__ import annotations

# pytest imports this module for ``-p liteport.testing`` and loads the hooks and fixtures from here.
pytest_plugins = ["liteport.testing.plugin"]

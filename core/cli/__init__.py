"""The ``liteport`` command line, one module per group of commands; ``main`` is the entry point."""

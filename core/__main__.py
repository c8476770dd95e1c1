"""``python -m liteport`` is the ``liteport`` command."""

from liteport.cli.main import main

if __name__ == "__main__":
    main()

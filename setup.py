"""Finds liteport's packages: core/ is the ``liteport`` package and backends/ is ``liteport.backends``.

pyproject.toml cannot find packages under a remapped folder, so the list is computed here
rather than kept by hand (a hand list once left ``liteport.reports`` out of the wheel).
"""

from setuptools import find_packages, setup

packages = ["liteport", *(f"liteport.{name}" for name in find_packages("core"))]
packages += ["liteport.backends", *(f"liteport.backends.{name}" for name in find_packages("backends"))]
setup(packages=packages)

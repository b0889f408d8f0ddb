"""The one compiled module (everything else is in pyproject.toml): HDF5's shuffle undone in C,
with the time sum fused in (src/insitu/catalog/_shuffle.c)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("insitu.catalog._shuffle", ["src/insitu/catalog/_shuffle.c"])])

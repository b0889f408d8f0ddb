"""The one compiled module (everything else is in pyproject.toml): HDF5's shuffle undone in C,
with the time sum fused in (src/insitu/formats/netcdf/_shuffle.c). Optional: without a C
compiler the package installs and unshuffles in NumPy, slower."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "insitu.formats.netcdf._shuffle",
            ["src/insitu/formats/netcdf/_shuffle.c"],
            optional=True,
        )
    ]
)

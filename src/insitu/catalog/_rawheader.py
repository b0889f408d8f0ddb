"""What a header reader hands to :mod:`insitu.catalog.headers`: a file's variables,
dimensions and attributes as plain values, before the scan describes them.

Two readers fill it: :mod:`insitu.catalog._hdf5` for netCDF-4 files (straight from the
HDF5 layout, the fast path) and :func:`from_netcdf4` for everything netCDF-C opens.
Attribute values are JSON-ready (numbers, strings, lists), as netCDF4-python returns them
once converted by :func:`jsonable`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RawHeader", "RawVariable", "from_netcdf4", "jsonable"]


@dataclass(slots=True)
class RawVariable:
    """One variable: what the catalog records, and how to read its raw values.

    ``read`` returns the stored values, without masking or scaling, in the variable's
    ``shape``; it is only called for the time axis and the latitude/longitude coordinates.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict[str, Any]
    read: Callable[[], np.ndarray[Any, Any]]

    @property
    def size(self) -> int:
        """Number of values."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(slots=True)
class RawHeader:
    """A file's header: data model, dimensions (in netCDF's order), variables, attributes."""

    data_model: str
    dims: dict[str, int]
    variables: list[RawVariable]
    global_attrs: dict[str, Any]


def jsonable(value: Any) -> Any:
    """A netCDF attribute value as JSON-ready Python values."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def from_netcdf4(ds: Any) -> RawHeader:
    """The header of an open ``netCDF4.Dataset``."""
    variables = [
        RawVariable(
            name,
            tuple(var.dimensions),
            tuple(int(n) for n in var.shape),
            "str" if var.dtype is str else str(var.dtype),
            _attrs(var),
            _reader(var),
        )
        for name, var in ds.variables.items()
    ]
    return RawHeader(
        ds.data_model,
        {name: len(dim) for name, dim in ds.dimensions.items()},
        variables,
        _attrs(ds),
    )


def _attrs(obj: Any) -> dict[str, Any]:
    return {k: jsonable(obj.getncattr(k)) for k in obj.ncattrs()}


def _reader(var: Any) -> Callable[[], np.ndarray[Any, Any]]:
    def read() -> np.ndarray[Any, Any]:
        # Raw values: netCDF4's masked arrays cost more than the whole rest of a header.
        var.set_auto_maskandscale(False)
        return np.asarray(var[:])

    return read

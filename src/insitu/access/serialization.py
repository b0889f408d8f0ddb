"""Writing a selected dataset as CF NetCDF4, a long CSV table or JSON.

The functions take a dataset already in memory (read by the caller), so every failure to
read happens before the first byte of an answer. NetCDF keeps the source's encoding where
it still fits a subset (dtype, fill value, packing, time units and calendar) and drops
what described the source's storage (``_ChunkSizes``, chunk shapes, ``DODS_EXTRA``). CSV
and JSON show netCDF's default fill value as missing, as the netCDF guide says readers
should (``mask_default_fill``), and write missing values as empty cells and null.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu.access.selection import time_text
from insitu.formats import mask_default_fill

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["clean_attrs", "time_dims", "to_csv", "to_json", "write_netcdf"]

_KEEP_ENCODING = ("dtype", "_FillValue", "missing_value", "scale_factor", "add_offset")
_TIME_ENCODING = ("units", "calendar")
_SERVER_ATTRS = re.compile(r"^(_ChunkSizes|DODS|_NCProperties)")  # storage details of a source


def time_dims(ds: xr.Dataset) -> set[str]:
    """Dimensions whose coordinate holds decoded times."""
    return {str(d) for d in ds.dims if d in ds.coords and ds[d].dtype.kind in "MO"}


def clean_attrs(attrs: dict[Any, Any]) -> dict[str, Any]:
    """Attributes without those that describe the source's storage."""
    return {str(k): v for k, v in attrs.items() if not _SERVER_ATTRS.match(str(k))}


def write_netcdf(ds: xr.Dataset, path: str, *, variables: list[str], history: str) -> None:
    """``ds`` as CF NetCDF4 at ``path``; ``history`` goes first in the history attribute.

    ``variables`` (the data, not coordinates or bounds) are compressed, in chunks of whole
    fields; time dimensions are unlimited.
    """
    out = ds.copy()
    out.attrs = clean_attrs(ds.attrs)
    previous = out.attrs.get("history")
    out.attrs["history"] = history + (f"\n{previous}" if previous else "")
    out.attrs.setdefault("Conventions", "CF-1.8")  # the source's own version when it has one
    encoding: dict[str, dict[str, Any]] = {}
    tdims = [d for d in out.dims if d in time_dims(out)]
    for name, var in out.variables.items():
        var.attrs = clean_attrs(var.attrs)
        enc = {k: var.encoding[k] for k in _KEEP_ENCODING if k in var.encoding}
        if var.dtype.kind in "MO" or "calendar" in var.encoding:
            enc.update({k: var.encoding[k] for k in _TIME_ENCODING if k in var.encoding})
        # Keep the source's choice: no fill value where it declared none (CF coordinates
        # must not have one), rather than xarray's default NaN.
        enc.setdefault("_FillValue", None)
        if name in variables and var.ndim and var.dtype.kind in "fiu":
            enc.update(zlib=True, complevel=4, shuffle=True, chunksizes=_chunks(var, tdims))
        var.encoding = {}
        encoding[str(name)] = enc
    out.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=encoding, unlimited_dims=tdims)


def _chunks(var: xr.Variable, tdims: list[Any]) -> tuple[int, ...]:
    """Whole fields per chunk, about 1 MiB of time steps: netCDF's default for an unlimited
    dimension is one step per chunk, which compresses small fields poorly."""
    step = max(1, var.dtype.itemsize * math.prod(n for d, n in var.sizes.items() if d not in tdims))
    per = max(1, 2**20 // step)
    return tuple(min(n, per) if d in tdims else max(n, 1) for d, n in var.sizes.items())


def _text_dataset(ds: xr.Dataset, names: list[str]) -> xr.Dataset:
    """The variables as CSV and JSON show them: netCDF's default fill value is missing."""
    out = ds[names]
    for name in names:
        out = mask_default_fill(out, name)
    return out


def _column(da: xr.DataArray) -> np.ndarray[Any, Any]:
    values = np.asarray(da.values)
    if values.dtype.kind in "MO":
        return np.asarray(time_text(values.ravel()), dtype=object).reshape(values.shape)
    return values


def to_csv(ds: xr.Dataset, names: list[str]) -> bytes:
    """One row per point of the variables ``names``: coordinates (or indices), then values.

    Variables of different dimensions are broadcast to all of them; times are ISO text.
    """
    import pandas as pd
    import xarray as xr

    ds = _text_dataset(ds, names)
    dims = list(dict.fromkeys(str(d) for n in names for d in ds[n].dims))
    shape = [ds.sizes[d] for d in dims]
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for axis, dim in enumerate(dims):
        coord = _column(ds[dim]) if dim in ds.coords else np.arange(shape[axis])
        inner = math.prod(shape[axis + 1 :])
        columns[dim] = np.tile(np.repeat(coord, inner), math.prod(shape[:axis]))
    for da in xr.broadcast(*(ds[n] for n in names)):
        columns[str(da.name)] = _column(da.transpose(*dims)).ravel()
    return pd.DataFrame(columns).to_csv(index=False, na_rep="", lineterminator="\n").encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _data(da: xr.DataArray) -> Any:
    values = _column(da)
    if values.dtype.kind == "f":
        out = values.astype(object)
        out[~np.isfinite(values)] = None
        return out.tolist()
    return values.tolist()


def to_json(ds: xr.Dataset, names: list[str], header: dict[str, Any]) -> bytes:
    """``{header..., dims, coords, data_vars: {name: {dims, attrs, data}}, attrs}``."""
    ds = _text_dataset(ds, names)

    def entry(da: xr.DataArray) -> dict[str, Any]:
        attrs = {k: _jsonable(v) for k, v in clean_attrs(da.attrs).items()}
        return {"dims": [str(d) for d in da.dims], "attrs": attrs, "data": _data(da)}

    body = {
        **header,
        "dims": {str(d): int(n) for d, n in ds.sizes.items()},
        "coords": {str(c): entry(ds[c]) for c in ds.coords},
        "data_vars": {n: entry(ds[n]) for n in names},
        "attrs": {k: _jsonable(v) for k, v in clean_attrs(ds.attrs).items()},
    }
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()

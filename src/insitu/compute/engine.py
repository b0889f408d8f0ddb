"""The streaming engine: time sums file by file, in bounded memory, combined in a tree.

The measured ceiling of this kind of work is decompression (about 0.35-0.40 GB/s per core
for zlib NetCDF), and xarray's general path costs several times a bare loop. So the time
mean of a dataset is computed here without xarray on the hot path:

* one task per file (file-aligned partitions; the catalog knows each file's records),
* each task reads its file in slabs of at most ``chunk_bytes`` and accumulates a float64
  sum and an integer count per grid point, skipping ``_FillValue``/``missing_value``/NaN,
* partial results are combined pairwise in a tree of fan-in 8,
* scale and offset are applied once at the end (a mean commutes with them).

Run it on process-based workers (``insitu cluster``) so that no two threads share HDF5.
Its results equal the xarray path's to float64 rounding; the tests check that.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from insitu.errors import DataError

__all__ = [
    "FilePart",
    "combine_partials",
    "file_field_sums",
    "file_time_sum",
    "files_time_sum",
    "stream_field_mean",
    "stream_time_mean",
    "time_sum_graph",
]

_FANIN = 8
_LEAVES = 32  # leaf tasks per graph: enough to balance a few dozen workers


@dataclass(frozen=True, slots=True)
class FilePart:
    """Records ``start:stop`` of variable ``name`` in one file."""

    path: str
    name: str
    start: int
    stop: int


Partial = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


def files_time_sum(parts: Sequence[FilePart], chunk_bytes: int) -> Partial:
    """Sum and count over time of several files, accumulated in one pair of arrays.

    Grouping files into one task keeps the partial results few: each partial is a full
    float64 grid that must travel between workers.
    """
    total, count = file_time_sum(parts[0], chunk_bytes)
    for part in parts[1:]:
        file_time_sum(part, chunk_bytes, (total, count))
    return total, count


def file_time_sum(part: FilePart, chunk_bytes: int, into: Partial | None = None) -> Partial:
    """Sum and count over time (axis 0) of one file's records, skipping missing values.

    Adds to ``into`` (and returns it) when given.
    """
    import netCDF4
    from xarray.backends.locks import HDF5_LOCK  # uncontended on single-threaded workers

    try:
        with HDF5_LOCK, netCDF4.Dataset(part.path, "r") as nc:
            var = nc.variables[part.name]
            var.set_auto_maskandscale(False)
            shape = var.shape[1:]
            per_record = max(1, int(np.prod(shape, dtype=np.int64)) * var.dtype.itemsize)
            step = max(1, chunk_bytes // per_record)
            chunking = var.chunking()
            if isinstance(chunking, list) and chunking[0] > 1:
                step = max(chunking[0], (step // chunking[0]) * chunking[0])
            fills = _fills(var)
            if into is None:
                total = np.zeros(shape, dtype=np.float64)
                count = np.zeros(shape, dtype=np.int64)
            else:
                total, count = into
            for lo in range(part.start, part.stop, step):
                raw = np.asarray(var[lo : min(lo + step, part.stop)])
                _accumulate(raw, fills, total, count)
            return total, count
    except (OSError, RuntimeError, KeyError, IndexError) as exc:
        raise DataError(
            f"Cannot read {part.name!r} records {part.start}:{part.stop} of {part.path}: {exc}. "
            "The file changed or became unreadable since the scan; rescan its collection."
        ) from exc


def _fills(var: Any) -> list[Any]:
    """Values that mean 'missing': declared ones, else netCDF's default fill for floats.

    As :func:`insitu.compute.operations.mask_default_fill`, so both engines agree.
    """
    import netCDF4

    fills = [v for v in (_attr(var, "_FillValue"), _attr(var, "missing_value")) if v is not None]
    if not fills and var.dtype.kind == "f":
        fills = [netCDF4.default_fillvals[var.dtype.str[1:]]]
    return fills


def _attr(var: Any, name: str) -> Any:
    if name not in var.ncattrs():
        return None
    value = np.asarray(var.getncattr(name)).ravel()
    return value[0] if value.size else None


def _accumulate(
    raw: np.ndarray[Any, Any],
    fills: list[Any],
    total: np.ndarray[Any, Any],
    count: np.ndarray[Any, Any],
) -> None:
    """Add the float64 sum and the count of valid values over axis 0 of ``raw``."""
    big = [abs(float(f)) for f in fills]
    if raw.dtype.kind == "f" and big and min(big) >= 1e15:
        # Fast path: a huge fill value (1e20, 9.97e36) or a NaN dominates any sum it enters,
        # so one plain pass finds the few points that need the careful, masked sum.
        s = np.add.reduce(raw, axis=0, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(s) < min(big) / 2)
        n = np.full(s.shape, raw.shape[0], dtype=np.int64)
        if bad.any():
            sub = raw[:, bad]
            ok = ~np.isnan(sub)
            for fill in fills:
                ok &= sub != raw.dtype.type(fill)
            s[bad] = np.add.reduce(sub, axis=0, dtype=np.float64, where=ok)
            n[bad] = np.count_nonzero(ok, axis=0)
        total += s
        count += n
        return
    valid: np.ndarray[Any, Any] | None = None
    for fill in fills:
        ok = raw != raw.dtype.type(fill)
        valid = ok if valid is None else valid & ok
    if raw.dtype.kind == "f":
        nan_ok = ~np.isnan(raw)
        valid = nan_ok if valid is None else valid & nan_ok
    s = np.add.reduce(raw, axis=0, dtype=np.float64, where=valid if valid is not None else True)
    total += s
    count += raw.shape[0] if valid is None else np.count_nonzero(valid, axis=0)


def combine_partials(parts: Sequence[Partial]) -> Partial:
    """Add partial sums and counts."""
    total = parts[0][0].copy()
    count = parts[0][1].copy()
    for s, n in parts[1:]:
        total += s
        count += n
    return total, count


def time_sum_graph(parts: Sequence[FilePart], chunk_bytes: int) -> Any:
    """A Dask ``Delayed`` that evaluates to the (sum, count) over all parts."""
    from dask.base import tokenize
    from dask.delayed import Delayed

    token = tokenize([(p.path, p.name, p.start, p.stop, _stat(p.path)) for p in parts])
    graph: dict[Any, Any] = {}
    level = []
    per_task = max(1, -(-len(parts) // _LEAVES))
    for i in range(0, len(parts), per_task):
        key = (f"insitu-tsum-{token}", i // per_task)
        graph[key] = (files_time_sum, list(parts[i : i + per_task]), chunk_bytes)
        level.append(key)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), _FANIN):
            key = (f"insitu-tcombine-{depth}-{token}", j // _FANIN)
            graph[key] = (combine_partials, list(level[j : j + _FANIN]))
            nxt.append(key)
        level = nxt
    return Delayed(level[0], graph)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)


def _finalize(partial: Partial, scale: float, offset: float, dtype: str) -> np.ndarray[Any, Any]:
    total, count = partial
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean = mean * scale + offset
    mean[count == 0] = np.nan
    return mean.astype(dtype)


def stream_time_mean(
    template: Any,
    variable: str,
    parts: Sequence[FilePart],
    encoding: dict[str, Any],
    chunk_bytes: int,
) -> Any:
    """``template`` (a lazy xarray time-mean result) with its data from the engine."""
    import dask.array as da
    from dask.delayed import delayed

    target = template[variable]
    scale = float(np.asarray(encoding.get("scale_factor", 1.0)).ravel()[0])
    offset = float(np.asarray(encoding.get("add_offset", 0.0)).ravel()[0])
    summed = time_sum_graph(parts, chunk_bytes)
    final = delayed(_finalize, pure=True)(summed, scale, offset, str(target.dtype))
    array = da.from_delayed(final, shape=target.shape, dtype=target.dtype)
    out = template.copy()
    out[variable] = target.copy(data=array)
    return out


def file_field_sums(
    part: FilePart, weights: np.ndarray[Any, Any], chunk_bytes: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Per record: area-weighted sum of valid values and the sum of their weights.

    ``weights`` has the shape of the variable's last two dimensions (latitude, longitude).
    """
    import netCDF4
    from xarray.backends.locks import HDF5_LOCK

    try:
        with HDF5_LOCK, netCDF4.Dataset(part.path, "r") as nc:
            var = nc.variables[part.name]
            var.set_auto_maskandscale(False)
            fills = _fills(var)
            per_record = max(1, int(np.prod(var.shape[1:], dtype=np.int64)) * var.dtype.itemsize)
            step = max(1, chunk_bytes // per_record)
            nums, dens = [], []
            for lo in range(part.start, part.stop, step):
                raw = np.asarray(var[lo : min(lo + step, part.stop)])
                valid = ~np.isnan(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
                for fill in fills:
                    valid &= raw != raw.dtype.type(fill)
                x = np.where(valid, raw, 0).astype(np.float64, copy=False)
                nums.append(np.einsum("...ij,ij->...", x, weights))
                dens.append(np.einsum("...ij,ij->...", valid.astype(np.float64), weights))
            return np.concatenate(nums), np.concatenate(dens)
    except (OSError, RuntimeError, KeyError, IndexError) as exc:
        raise DataError(
            f"Cannot read {part.name!r} records {part.start}:{part.stop} of {part.path}: {exc}. "
            "The file changed or became unreadable since the scan; rescan its collection."
        ) from exc


def _field_finalize(
    sums: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    scale: float,
    offset: float,
    dtype: str,
) -> np.ndarray[Any, Any]:
    num, den = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = num / np.where(den > 0, den, np.nan)
    return (mean * scale + offset).astype(dtype)


def stream_field_mean(
    template: Any,
    variable: str,
    parts: Sequence[FilePart],
    weights: np.ndarray[Any, Any],
    encoding: dict[str, Any],
    chunk_bytes: int,
) -> Any:
    """``template`` (a lazy xarray field-mean result) with its data from the engine.

    One task per file; each returns its records' weighted sums, so nothing but one value
    per record and level travels between workers.
    """
    import dask.array as da
    from dask.delayed import delayed

    target = template[variable]
    scale = float(np.asarray(encoding.get("scale_factor", 1.0)).ravel()[0])
    offset = float(np.asarray(encoding.get("add_offset", 0.0)).ravel()[0])
    rest = target.shape[1:]
    pieces = []
    for part in parts:
        sums = delayed(file_field_sums, pure=True)(part, weights, chunk_bytes)
        final = delayed(_field_finalize, pure=True)(sums, scale, offset, str(target.dtype))
        pieces.append(
            da.from_delayed(final, shape=(part.stop - part.start, *rest), dtype=target.dtype)
        )
    out = template.copy()
    out[variable] = target.copy(data=da.concatenate(pieces, axis=0))
    return out

"""The streaming engine: time and field means file by file, in bounded memory.

The measured ceiling of this kind of work is decompression (about 0.35-0.40 GB/s per core
for zlib NetCDF), and xarray's general path costs several times a bare loop. So the time
and field means of a dataset are computed here without xarray on the hot path:

* tasks are runs of whole files (the catalog knows each file's records); a task reads its
  files in slabs of at most ``chunk_bytes`` and keeps one accumulator for all of them,
* compressed chunks are read and inflated directly (:mod:`insitu.formats` through
  :mod:`insitu.compute.reader`: ISA-L's inflate, about twice as fast as netCDF-C's zlib),
  netCDF-C where the layout is other,
* the time mean has one task per worker thread (``leaves``), so only one float64 grid per
  worker travels to the final sum; the field mean sends one value per record and has
  more, smaller tasks, which balance better,
* sums are float64 over the raw values; ``_FillValue``/``missing_value``/NaN are skipped,
  and a count per grid point is only kept where one of them occurred; where the chunks
  are shuffled and deflated (CMOR's layout), the reader makes the time mean's sum over
  the records, or the field mean's sum of every row, while it unshuffles,
* scale and offset are applied once at the end (a mean commutes with them).

Every task is a pure function of its files, so a worker lost mid-run only means its
tasks run again elsewhere. Run it on process-based workers (``insitu cluster``) so that
no two threads share HDF5. Its results equal the xarray path's to float64 rounding; the
tests check that.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from insitu.compute.reader import FilePart, slabs
from insitu.errors import DataError
from insitu.formats import record_sum, row_sums

__all__ = [
    "FieldWeights",
    "FilePart",
    "combine_partials",
    "file_time_sum",
    "files_field_means",
    "files_time_sum",
    "scale_and_offset",
    "stream_field_mean",
    "stream_time_mean",
    "time_sum_graph",
]

_FANIN = 8
_LOOP_MIN = 2**15  # values per record above which a time sum adds record by record
_FIELD_TASKS = 32  # field-mean tasks per dataset: results are tiny, so many balance best

Array = np.ndarray[Any, Any]
# Sum over time and the number of values in it: a plain int where no value was missing.
Partial = tuple[Array, "Array | int"]


def _runs(parts: Sequence[FilePart], tasks: int) -> list[list[FilePart]]:
    """``parts`` cut into at most ``tasks`` consecutive runs of nearly equal length."""
    tasks = max(1, min(tasks, len(parts)))
    bounds = [round(i * len(parts) / tasks) for i in range(tasks + 1)]
    return [list(parts[a:b]) for a, b in pairwise(bounds) if b > a]


def _huge(raw: Array, fills: list[Any]) -> float | None:
    """Half the smallest fill, when every fill is huge and ``raw`` is floating point.

    A huge fill (1e20, 9.97e36) or a NaN dominates any sum it enters, so one plain float64
    pass over the values tells, from the sums alone, where the careful masked sum is needed.
    """
    big = [abs(float(f)) for f in fills]
    if raw.dtype.kind == "f" and big and min(big) >= 1e15:
        return min(big) / 2
    return None


def _valid(raw: Array, fills: list[Any]) -> Array | None:
    """Where ``raw`` holds a value (not a fill, not NaN); None if nothing can be missing."""
    valid: Array | None = None
    for fill in fills:
        ok = raw != raw.dtype.type(fill)
        valid = ok if valid is None else valid & ok
    if raw.dtype.kind == "f":
        nan_ok = ~np.isnan(raw)
        valid = nan_ok if valid is None else valid & nan_ok
    return valid


def _plain(s: Array, lim: float) -> bool:
    """True if no sum in ``s`` met a fill or a NaN (both comparisons fail on NaN)."""
    return bool(s.max() < lim) and bool(s.min() > -lim)


class _TimeSum:
    """Running float64 sum over time; counts missing values only once one is seen."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.total = np.zeros(shape, dtype=np.float64)
        self.records = 0
        self.missing: Array | None = None
        self._slab_sum = np.empty(shape, dtype=np.float64)

    def add(self, raw: Array, fills: list[Any], summed: Array | None = None) -> None:
        """Add the records of ``raw``; ``summed``: their plain float64 sum, if known."""
        n = raw.shape[0]
        self.records += n
        lim = _huge(raw, fills)
        if lim is not None:
            s = self._plain_sum(raw) if summed is None else summed
            if _plain(s, lim):
                self.total += s
                return
            with np.errstate(invalid="ignore"):
                bad = ~(np.abs(s) < lim)
            sub = raw[:, bad]
            ok = _valid(sub, fills)
            assert ok is not None  # floating point: NaN can always occur
            s[bad] = np.add.reduce(sub, axis=0, dtype=np.float64, where=ok)
            self.total += s
            self._missing()[bad] += n - np.count_nonzero(ok, axis=0)
            return
        valid = _valid(raw, fills)
        where = True if valid is None else valid
        self.total += np.add.reduce(raw, axis=0, dtype=np.float64, where=where)
        if valid is not None:
            missing = n - np.count_nonzero(valid, axis=0)
            if missing.any():
                self._missing()[...] += missing

    def _plain_sum(self, raw: Array) -> Array:
        """The float64 sum of ``raw`` over its records, in a buffer reused for every slab.

        Record by record into float64 when records are large: numpy then converts each
        record in cache-sized pieces as it adds, about twice as fast as a reduction along
        the first axis with ``dtype=float64`` (BENCHMARKS.md, "Direct chunk reads").
        """
        s = self._slab_sum
        if raw[0].size < _LOOP_MIN:
            np.add.reduce(raw, axis=0, dtype=np.float64, out=s)
        else:
            record_sum(raw, s)
        return s

    def _missing(self) -> Array:
        if self.missing is None:
            self.missing = np.zeros(self.total.shape, dtype=np.int64)
        return self.missing

    def partial(self) -> Partial:
        if self.missing is None:
            return self.total, self.records
        return self.total, self.records - self.missing


def files_time_sum(parts: Sequence[FilePart], chunk_bytes: int) -> Partial:
    """Sum and count over time of several files' records, skipping missing values.

    All files share one accumulator: each partial is a full float64 grid that may have to
    travel between workers, so a task returns one whatever the number of its files.
    """
    acc: _TimeSum | None = None
    for part in parts:
        for slab in slabs(part, chunk_bytes, sums=True):
            if acc is None:
                acc = _TimeSum(slab.raw.shape[1:])
            acc.add(slab.raw, slab.fills, slab.total)
    if acc is None:
        raise DataError(f"No records to sum in {parts[0].path if parts else 'no file'}.")
    return acc.partial()


def file_time_sum(part: FilePart, chunk_bytes: int) -> Partial:
    """Sum and count over time (axis 0) of one file's records, skipping missing values."""
    return files_time_sum([part], chunk_bytes)


def combine_partials(parts: Sequence[Partial]) -> Partial:
    """Add partial sums and counts."""
    total = parts[0][0].copy()
    count: Array | int = parts[0][1]
    for s, n in parts[1:]:
        total += s
        count = count + n
    return total, count


def time_sum_graph(parts: Sequence[FilePart], chunk_bytes: int, leaves: int) -> Any:
    """A Dask ``Delayed`` that evaluates to the (sum, count) over all parts.

    ``leaves`` tasks read the files (one per worker thread is best: see the module notes);
    their partials are added in a tree of fan-in 8.
    """
    from dask.base import tokenize
    from dask.delayed import Delayed

    token = tokenize([(p.path, p.name, p.start, p.stop, _stat(p.path)) for p in parts], leaves)
    graph: dict[Any, Any] = {}
    level = []
    for i, run in enumerate(_runs(parts, leaves)):
        key = (f"insitu-tsum-{token}", i)
        graph[key] = (files_time_sum, run, chunk_bytes)
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


def scale_and_offset(encoding: dict[str, Any]) -> tuple[float, float]:
    """A variable's ``scale_factor`` and ``add_offset`` from its encoding (1 and 0 if none)."""
    scale = float(np.asarray(encoding.get("scale_factor", 1.0)).ravel()[0])
    offset = float(np.asarray(encoding.get("add_offset", 0.0)).ravel()[0])
    return scale, offset


def _finalize(partial: Partial, scale: float, offset: float, dtype: str) -> Array:
    total, count = partial
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean = mean * scale + offset
    mean[np.broadcast_to(np.asarray(count) == 0, mean.shape)] = np.nan
    return mean.astype(dtype)


def stream_time_mean(
    template: Any,
    variable: str,
    parts: Sequence[FilePart],
    encoding: dict[str, Any],
    chunk_bytes: int,
    leaves: int,
) -> Any:
    """``template`` (a lazy xarray time-mean result) with its data from the engine.

    ``leaves``: how many tasks read the files; the number of worker threads is best.
    """
    import dask.array as da
    from dask.delayed import delayed

    target = template[variable]
    scale, offset = scale_and_offset(encoding)
    summed = time_sum_graph(parts, chunk_bytes, leaves)
    final = delayed(_finalize, pure=True)(summed, scale, offset, str(target.dtype))
    array = da.from_delayed(final, shape=target.shape, dtype=target.dtype)
    out = template.copy()
    out[variable] = target.copy(data=array)
    return out


class FieldWeights:
    """Area weights of the (latitude, longitude) grid, in the form the sums need.

    On a grid with equal longitude weights in each row (every regular lat-lon grid) a
    weighted sum is a float64 sum along each row followed by one weight per row; this
    avoids converting every value to float64 and cuts the cost of a field mean to about
    that of a time mean. Other grids use the full 2-D weights.
    """

    def __init__(self, weights: Array) -> None:
        w = np.asarray(weights, dtype=np.float64)
        self.full = w
        rows = w.mean(axis=1)
        self.rows: Array | None = (
            rows if np.allclose(w, rows[:, None], rtol=1e-12, atol=0.0) else None
        )
        self.total = float(w.sum())

    def __dask_tokenize__(self) -> str:
        from dask.base import tokenize

        return tokenize(self.full)

    def sums(self, raw: Array, fills: list[Any], rows: Array | None = None) -> tuple[Array, Array]:
        """Per record (and level): weighted sum of the valid values and of their weights.

        ``rows``: the float64 sums along the last axis of ``raw``, if the reader made them
        (:func:`insitu.formats.row_sums`, fills included).
        """
        lim = _huge(raw, fills)
        if self.rows is not None and lim is not None:
            if rows is None:
                rows = row_sums(raw)
            if _plain(rows, lim):
                num = rows @ self.rows
                return num, np.full(num.shape, self.total)
        valid = _valid(raw, fills)
        if valid is None:
            valid = np.ones(raw.shape, dtype=bool)
        if self.rows is not None:
            rows = np.add.reduce(raw, axis=-1, dtype=np.float64, where=valid)
            return rows @ self.rows, np.count_nonzero(valid, axis=-1) @ self.rows
        x = np.where(valid, raw, 0).astype(np.float64, copy=False)
        num = np.einsum("...ij,ij->...", x, self.full)
        return num, np.einsum("...ij,ij->...", valid.astype(np.float64), self.full)


def files_field_means(
    parts: Sequence[FilePart],
    weights: FieldWeights,
    chunk_bytes: int,
    scale: float,
    offset: float,
    dtype: str,
    bounds: str | None = None,
) -> Any:
    """Area-weighted mean of every record (and level) of several files, in file order.

    With ``bounds`` (the name of the time bounds variable), returns ``(means, raw bounds)``:
    the bounds' undecoded values of the same records, read while the file is at hand.
    """
    nums, dens = [], []
    edges: list[Array] = []
    for part in parts:
        for slab in slabs(part, chunk_bytes, rows=weights.rows is not None):
            num, den = weights.sums(slab.raw, slab.fills, slab.rows)
            nums.append(num)
            dens.append(den)
        if bounds is not None:
            of = FilePart(part.path, bounds, part.start, part.stop, part.direct)
            edges.extend(slab.raw for slab in slabs(of, chunk_bytes))
    num, den = np.concatenate(nums), np.concatenate(dens)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = num / np.where(den > 0, den, np.nan)
    means = (mean * scale + offset).astype(dtype)
    return means if bounds is None else (means, np.concatenate(edges))


def _time_bounds(template: Any, time: str, bounds: str | None) -> tuple[Any, str] | None:
    """The template's time bounds and their stored dtype, when the engine can read them:
    present, along time first, with the units and calendar they were decoded from."""
    if bounds is None or bounds not in template.variables:
        return None
    var = template[bounds]
    enc = var.encoding
    if var.dims[:1] != (time,) or "units" not in enc or "dtype" not in enc:
        return None
    return var, str(np.dtype(enc["dtype"]))


def stream_field_mean(
    template: Any,
    variable: str,
    parts: Sequence[FilePart],
    weights: Array,
    encoding: dict[str, Any],
    chunk_bytes: int,
    bounds: str | None = None,
) -> Any:
    """``template`` (a lazy xarray field-mean result) with its data from the engine.

    ``weights`` has the shape of the variable's last two dimensions (latitude, longitude).
    Runs of files are one task each; each returns its records' means, so nothing but one
    value per record and level travels between workers. The weights are one graph key,
    sent to each worker once. ``bounds``: the time bounds variable, read by the same tasks
    (instead of one more task per file); the caller passes it only when every file counts
    time in the same units, and it is decoded once with those units and calendar.
    """
    import dask.array as da
    import xarray as xr
    from dask.delayed import delayed

    target = template[variable]
    scale, offset = scale_and_offset(encoding)
    rest = target.shape[1:]
    edges = _time_bounds(template, str(target.dims[0]), bounds)
    w = delayed(FieldWeights(weights), pure=True)
    pieces, edge_pieces = [], []
    for run in _runs(parts, _FIELD_TASKS):
        records = sum(p.stop - p.start for p in run)
        if edges is None:
            means = delayed(files_field_means, pure=True)(
                run, w, chunk_bytes, scale, offset, str(target.dtype)
            )
        else:
            means, raw = delayed(files_field_means, pure=True, nout=2)(
                run, w, chunk_bytes, scale, offset, str(target.dtype), bounds
            )
            shape = (records, *edges[0].shape[1:])
            edge_pieces.append(da.from_delayed(raw, shape=shape, dtype=edges[1]))
        pieces.append(da.from_delayed(means, shape=(records, *rest), dtype=target.dtype))
    out = template.copy()
    out[variable] = target.copy(data=da.concatenate(pieces, axis=0))
    if edges is not None:
        from insitu.catalog import decoded_bounds

        var, _ = edges
        attrs = {k: var.encoding[k] for k in ("units", "calendar") if k in var.encoding}
        encoded = xr.Variable(var.dims, da.concatenate(edge_pieces, axis=0), attrs=attrs)
        # Decoded to the template's type, as the catalog decodes them: xarray's decode_cf
        # would compute the first and the last task here to find the type.
        decoded = decoded_bounds(encoded, str(bounds), {}, var.dtype)
        if decoded is not None:  # else keep the template's own (lazy) reads
            out[str(bounds)] = var.copy(data=decoded.data)
    return out

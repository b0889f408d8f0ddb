"""Field means of many small datasets in a few tasks.

An ensemble is often hundreds of datasets of a few hundred kB each (the demo archive: 42
``Amon`` ``ta`` datasets, 21 MB in all). On the per-dataset path each one costs a lazy
xarray dataset, an xarray operation graph and a streaming-engine graph in the client
(about 0.1 s), and the combined graph holds hundreds of tasks per dataset once the
results are aligned on one time axis: the scheduler, not the reading, sets the time.

Here the client sends each worker thread a few batches of :class:`SmallDataset` (what
the catalog knows of a dataset: its files in time order, their records, the encoded time
axis), and one task reads and reduces every dataset of its batch with plain NumPy
(:func:`insitu.compute.engine.files_field_means`, the streaming engine's own loop) and
returns each result as a small in-memory xarray Dataset; its attributes, coordinates and
type are those :func:`insitu.compute.operations.field_mean` gives
(:func:`~insitu.compute.operations.field_mean_like`). Nothing else travels.

A dataset the batch path cannot take (variables that are not (time, ..., lat, lon), no
area bounds to read) comes back as None and goes on the per-dataset path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu import formats
from insitu.catalog import sorted_members, time_values
from insitu.compute.engine import FieldWeights, FilePart, files_field_means, scale_and_offset
from insitu.compute.operations import area_weights, axes, field_mean_like
from insitu.errors import DataError

if TYPE_CHECKING:
    import xarray as xr

    from insitu.catalog import LocatedFile, VariableInfo

__all__ = ["SMALL_BYTES", "SmallDataset", "batches", "small_dataset", "small_field_means"]

SMALL_BYTES = 64 * 2**20  # datasets up to this size on disk take the batch path
_EAGER_LIMIT = 4 * 2**20  # static variables up to this size are read with the first file
_BATCHES_PER_THREAD = 2  # a few per thread, so that one slow batch does not hold the rest


@dataclass(frozen=True, slots=True)
class SmallDataset:
    """What a worker needs to reduce one dataset, without the catalog.

    ``paths`` are the files in time order, ``records`` their numbers of time steps,
    ``variables`` the first file's variables (from the index), ``time`` the encoded time
    axis of all files in the first file's ``time_units``.
    """

    dataset_id: str
    variable: str
    paths: tuple[str, ...]
    records: tuple[int, ...]
    variables: tuple[VariableInfo, ...]
    time_var: str
    time_units: str
    calendar: str | None
    time: np.ndarray[Any, Any]
    size: int
    direct: bool = True


def small_dataset(
    dataset_id: str, variable: str, located: Sequence[LocatedFile], direct: bool
) -> SmallDataset | None:
    """The batch path's description of a dataset (``located``: its files, as the catalog
    locates them), or None when it is not for the batch path: larger than
    :data:`SMALL_BYTES`, files that differ in their variables, or a file without
    ``variable``, without time steps or without dates."""
    if not located:
        return None
    paths = {f.record.path: f.path for f in located}
    records = sorted_members([f.record for f in located])
    first = records[0]
    names = {v.name for v in first.variables}
    size = sum(r.size for r in records)
    if (
        size > SMALL_BYTES
        or first.time_var is None
        or not first.time_units
        or variable not in names
        or any(r.n_times <= 0 or {v.name for v in r.variables} != names for r in records)
    ):
        return None
    return SmallDataset(
        dataset_id,
        variable,
        tuple(paths[r.path] for r in records),
        tuple(r.n_times for r in records),
        first.variables,
        first.time_var,
        first.time_units,
        first.calendar,
        time_values(records, np.dtype("float64")),
        size,
        direct,
    )


def batches(datasets: Sequence[SmallDataset], threads: int) -> list[list[SmallDataset]]:
    """``datasets`` dealt into a few batches per worker thread, of nearly equal bytes
    (largest first, each to the lightest batch so far)."""
    n = max(1, min(len(datasets), threads * _BATCHES_PER_THREAD))
    out: list[list[SmallDataset]] = [[] for _ in range(n)]
    load = [0] * n
    for ds in sorted(datasets, key=lambda d: d.size, reverse=True):
        i = load.index(min(load))
        out[i].append(ds)
        load[i] += ds.size
    return [b for b in out if b]


def small_field_means(batch: Sequence[SmallDataset], chunk_bytes: int) -> list[xr.Dataset | None]:
    """The field mean of every dataset of ``batch`` (a Dask task), as the per-dataset path
    computes it; None for a dataset whose layout the batch path does not take."""
    return [_field_mean(ds, chunk_bytes) for ds in batch]


def _opened(job: SmallDataset) -> xr.Dataset:
    """The dataset decoded as the catalog opens it, with its static variables and time
    axis read and its data variable a placeholder of the right shape (no values read)."""
    import xarray as xr

    first = job.paths[0]
    load = [
        v.name
        for v in job.variables
        if job.time_var not in v.dims
        and (_nbytes(v) <= _EAGER_LIMIT or (len(v.dims) == 1 and v.dims[0] == v.name))
    ]
    try:
        found = formats.reader_for(first).encoded(first, load)
    except (OSError, RuntimeError) as exc:
        raise DataError(
            f"Cannot open {first}: {exc}. Rescan its collection with 'insitu catalog scan'."
        ) from exc
    n = sum(job.records)
    raw: dict[str, xr.Variable] = {}
    for info in job.variables:
        var = found.variables.get(info.name)
        if var is None:
            raise DataError(
                f"{first} has no variable {info.name!r} any more; rescan its collection "
                "with 'insitu catalog scan'."
            )
        if info.name == job.time_var:
            dated = formats.with_time_units(var.attrs, job.time_units, job.calendar)
            dtype = var.dtype if dated is var.attrs else np.dtype("float64")
            raw[info.name] = xr.Variable(info.dims, job.time.astype(dtype, copy=False), dated)
        elif info.name == job.variable:
            shape = tuple(
                n if d == job.time_var else s for d, s in zip(info.dims, info.shape, strict=True)
            )
            zeros = np.broadcast_to(np.zeros((), dtype=var.dtype), shape)
            raw[info.name] = xr.Variable(info.dims, zeros, var.attrs)
        elif var.values is not None:
            raw[info.name] = xr.Variable(info.dims, var.values, var.attrs)
    return xr.decode_cf(xr.Dataset(raw, attrs=found.attrs))


def _nbytes(info: VariableInfo) -> int:
    try:
        itemsize = np.dtype(info.dtype).itemsize
    except TypeError:
        return 0
    return int(np.prod(info.shape, dtype=np.int64)) * itemsize


def _field_mean(job: SmallDataset, chunk_bytes: int) -> xr.Dataset | None:
    ds = _opened(job)
    da = ds[job.variable]
    ax = axes(da)
    dims = tuple(map(str, da.dims))
    if (
        ax.time != job.time_var
        or ax.lat is None
        or ax.lon is None
        or dims[0] != ax.time
        or (ax.lat, ax.lon) != dims[-2:]
    ):
        return None
    weights = area_weights(ds, da).transpose(ax.lat, ax.lon).values
    parts = [
        FilePart(p, job.variable, 0, n, job.direct)
        for p, n in zip(job.paths, job.records, strict=True)
    ]
    scale, offset = scale_and_offset(dict(da.encoding))
    dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.dtype("float64")
    means = files_field_means(parts, FieldWeights(weights), chunk_bytes, scale, offset, str(dtype))
    # The default fill (masked by the operation, and skipped by the engine) changes values
    # only: the placeholder stands for the masked variable as well.
    return field_mean_like(da, means).to_dataset()

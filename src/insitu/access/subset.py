"""Subsets of a dataset as NetCDF, CSV or JSON, planned before anything is read.

:func:`parse_subset_query` turns the query parameters into a :class:`SubsetQuery` (400 for
a malformed value). :func:`plan_subset` opens the dataset lazily (only files that overlap
the time range), applies the selection to the in-memory coordinates, and computes the
answer's size from shapes and dtypes: a selection that is empty is a 400 naming the
coverage, one that is too big a 413 saying how to narrow it. Only then does
:func:`write_subset` read the data and build the whole answer (a temporary NetCDF file or
bytes), so the HTTP layer can send it knowing it is complete.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from insitu.access.selection import (
    Range,
    TimeRange,
    data_variables,
    dataset_axes,
    parse_isel,
    parse_range,
    parse_time,
    parse_variables,
    select_coordinate,
    time_key_of,
)
from insitu.access.serialization import time_dims, to_csv, to_json, write_netcdf
from insitu.errors import InvalidQuery, TooLarge

if TYPE_CHECKING:
    import xarray as xr

    from insitu.catalog import Catalog, DatasetRecord, FileRecord

__all__ = [
    "FORMATS",
    "READ_FACTOR",
    "ReadCost",
    "SubsetAnswer",
    "SubsetPlan",
    "SubsetQuery",
    "file_identities",
    "human_bytes",
    "open_for_time",
    "parse_subset_query",
    "plan_subset",
    "read_cost",
    "write_subset",
]

# format -> (file suffix, media type)
FORMATS = {
    "netcdf": (".nc", "application/x-netcdf"),
    "csv": (".csv", "text/csv; charset=utf-8"),
    "json": (".json", "application/json"),
}
_FILENAME_OK = re.compile(r"[^A-Za-z0-9._-]+")
# The default of access.subset_read_factor: a request may read this many times what it may
# return (files are read in whole chunks).
READ_FACTOR = 16


@dataclass(frozen=True, slots=True)
class SubsetQuery:
    """What a subset request asks for, parsed and normalised."""

    variables: tuple[str, ...] | None
    time: TimeRange | None
    ranges: tuple[Range, ...]
    isel: tuple[tuple[str, slice], ...]
    format: str

    def key(self) -> tuple[Any, ...]:
        """A canonical form: equal for requests that select the same thing."""
        return (
            self.variables,
            (self.time.lo, self.time.hi) if self.time else None,
            tuple((r.name, r.lo, r.hi, r.point) for r in self.ranges),
            tuple((d, s.start, s.stop, s.step) for d, s in self.isel),
            self.format,
        )

    def text(self) -> str:
        """The selection as query parameters (for provenance)."""
        parts = [f"variables={','.join(self.variables)}"] if self.variables else []
        if self.time:
            parts.append(self.time.text())
        parts += [r.text() for r in self.ranges]
        if self.isel:
            parts.append("isel=" + ",".join(_slice_text(d, s) for d, s in self.isel))
        return "&".join(parts) or "everything"


def _slice_text(dim: str, s: slice) -> str:
    start = "" if s.start is None else s.start
    stop = "" if s.stop is None else s.stop
    return f"{dim}:{start}:{stop}" + (f":{s.step}" if s.step else "")


def parse_subset_query(
    *,
    variables: str | None = None,
    time: str | None = None,
    lat: str | None = None,
    lon: str | None = None,
    level: str | None = None,
    isel: str | None = None,
    format: str = "netcdf",
) -> SubsetQuery:
    """Check every parameter's form; :class:`InvalidQuery` names the bad one."""
    fmt = (format or "netcdf").strip().lower()
    if fmt not in FORMATS:
        raise InvalidQuery(f"format={format!r} is not one of {', '.join(FORMATS)}.")
    ranges = tuple(
        r
        for r in (parse_range("lat", lat), parse_range("lon", lon), parse_range("level", level))
        if r is not None
    )
    return SubsetQuery(
        variables=parse_variables(variables),
        time=parse_time(time),
        ranges=ranges,
        isel=tuple(parse_isel(isel).items()),
        format=fmt,
    )


def file_identities(files: list[FileRecord]) -> tuple[tuple[str, int, int], ...]:
    """What identifies the content of a dataset's files (for ETags)."""
    return tuple((f.path, f.size, f.mtime_ns) for f in files)


def human_bytes(n: float) -> str:
    """``12.3 MiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def open_for_time(catalog: Catalog, record: DatasetRecord, time: TimeRange | None) -> xr.Dataset:
    """The dataset opened lazily over the files that overlap ``time`` (all without it).

    The range is first compared with the dataset's coverage (400 if they do not meet) and
    clipped to it, so the dates handed to xarray are ones its calendar can index.
    """
    if time is None:
        return catalog.open_dataset(record.dataset_id)
    if record.tkey_start is None or record.tkey_end is None:
        raise InvalidQuery(
            f"{time.text()}: dataset {record.dataset_id!r} has no time axis; drop time=."
        )
    if time.lo > record.tkey_end or time.hi < record.tkey_start:
        raise InvalidQuery(
            f"{time.text()} selects nothing: dataset {record.dataset_id!r} covers "
            f"{record.time_start} to {record.time_end}."
        )
    start = time.start if time.lo > record.tkey_start else None
    end = time.end if time.hi < record.tkey_end else None
    if start is not None:
        _check_date(start, record)
    if end is not None:
        _check_date(end, record)
    ds = catalog.open_dataset(record.dataset_id, time=slice(start, end))
    tdim = next((d for d in ds.dims if str(d) in time_dims(ds)), None)
    if tdim is None or ds.sizes[tdim] == 0:
        raise InvalidQuery(
            f"{time.text()} selects no time step: dataset {record.dataset_id!r} covers "
            f"{record.time_start} to {record.time_end} with gaps between its steps."
        )
    return ds


def _check_date(text: str, record: DatasetRecord) -> None:
    """A day (Feb 30 in 'standard') or second (60) the calendar lacks is a 400, not a crash."""
    import cftime

    parts = [int(p) for p in re.split(r"[-T:]", text.lstrip("-"))]
    if len(parts) < 3:
        return
    year = -parts[0] if text.startswith("-") else parts[0]
    try:
        cftime.datetime(year, *parts[1:], calendar=record.calendar or "standard")
    except ValueError:
        raise InvalidQuery(
            f"Time {text!r} is not a date of the {record.calendar or 'standard'!r} calendar "
            f"of dataset {record.dataset_id!r}."
        ) from None


@dataclass
class SubsetPlan:
    """A checked selection: the lazy dataset to write and what it will cost."""

    record: DatasetRecord
    query: SubsetQuery
    ds: xr.Dataset
    variables: list[str]
    files: list[FileRecord] = field(default_factory=list)
    nbytes: int = 0


def plan_subset(
    catalog: Catalog,
    record: DatasetRecord,
    files: list[FileRecord],
    query: SubsetQuery,
    *,
    max_bytes: int,
    read_factor: int = READ_FACTOR,
) -> SubsetPlan:
    """Open, select and size a subset without reading data: 400 or 413 before any byte."""
    ds = open_for_time(catalog, record, query.time)
    known = data_variables(ds)
    names = list(query.variables or known)
    missing = [v for v in names if v not in ds.data_vars]
    if missing:
        raise InvalidQuery(
            f"variables={','.join(names)}: {', '.join(map(repr, missing))} not in dataset "
            f"{record.dataset_id!r}; it has {', '.join(known)}."
        )
    ax = dataset_axes(ds, names)
    dims = list(dict.fromkeys(str(d) for n in names for d in ds[n].dims))
    # NetCDF answers carry the cell bounds of their coordinates (CF), whatever their names.
    bounds = [ds[d].attrs.get("bounds") for d in dims if d in ds.coords]
    keep = names + [b for b in bounds if isinstance(b, str) and b in ds.variables]
    out = ds[list(dict.fromkeys(keep))]
    if query.time is not None and (ax.time is None or ax.time not in dims):
        raise InvalidQuery(
            f"{query.time.text()}: variables {names} have no time dimension (they have "
            f"{dims}); drop time=."
        )
    selected: set[str] = set()
    for rng in query.ranges:
        dim = {"lat": ax.lat, "lon": ax.lon, "level": ax.vertical}[rng.name]
        if dim is None:
            raise InvalidQuery(
                f"{rng.text()}: variables {names} have no {rng.name} dimension (they have "
                f"{dims}); use isel=DIM:START:STOP to select by index."
            )
        out = select_coordinate(out, dim, rng, circular=rng.name == "lon")
        selected.add(dim)
    for dim, sl in query.isel:
        if dim not in dims:
            raise InvalidQuery(
                f"isel names dimension {dim!r}, which variables {names} do not have; "
                f"they have {', '.join(dims)}."
            )
        if dim in selected or (dim == ax.time and query.time is not None):
            raise InvalidQuery(
                f"Dimension {dim!r} is selected both by coordinate and by isel; use one."
            )
        n = out.sizes[dim]
        if not range(n)[sl]:
            raise InvalidQuery(
                f"isel={_slice_text(dim, sl)} selects nothing: {dim!r} has {n} "
                f"positions here (0 to {n - 1})."
            )
        out = out.isel({dim: sl})
    plan = SubsetPlan(record, query, out, names)
    plan.nbytes = _answer_bytes(out, names, query.format)
    if plan.nbytes > max_bytes:
        raise TooLarge(_too_large(plan, max_bytes))
    refusal = read_cost(files, out, list(map(str, out.data_vars)), ax.time).refusal(
        f"The subset of {record.dataset_id!r} is small, but making it", max_bytes, read_factor
    )
    if refusal:
        raise TooLarge(refusal)
    plan.files = _files_used(out, ax.time, files)
    return plan


@dataclass(frozen=True, slots=True)
class ReadCost:
    """What a selection reads from files: bytes, files touched, and the largest share."""

    nbytes: int
    files: int
    largest: int

    def refusal(self, what: str, max_bytes: int, read_factor: int = READ_FACTOR) -> str | None:
        """The 413 message if this is more than one request may read (``read_factor``
        times ``max_bytes``), else None."""
        limit = read_factor * max_bytes
        if self.nbytes <= limit:
            return None
        head = (
            f"{what} would read about {human_bytes(self.nbytes)} from {self.files} "
            f"file(s), more than the service reads for one request ({read_factor} x its "
            f"limit of {human_bytes(max_bytes)} per answer = {human_bytes(limit)})."
        )
        job = "submit a job (POST /api/v1/jobs) that computes the result next to the data."
        if self.files > 1 and self.largest <= limit:
            fit = max(1, limit // self.largest)
            return (
                f"{head} Files are read whole, whatever the spatial cut: narrow "
                f"time=START/END to about {fit} of the {self.files} files, or {job}"
            )
        return f"{head} Even one of its files is more than that: {job[0].upper()}{job[1:]}"


def read_cost(
    files: list[FileRecord], selected: xr.Dataset | None, names: list[str], tdim: str | None
) -> ReadCost:
    """What reading the variables ``names`` of ``selected`` costs, from the file records
    (of every file, without a selection or its time dimension ``tdim``).

    Arrays are chunked one file per chunk along time and read a chunk at a time, so every
    file that holds a selected time step is read whole for each time-dependent variable,
    whatever the spatial cut. Static variables are small or read once; they are not counted.
    """
    keys = None
    if tdim is not None and selected is not None and tdim in selected.dims:
        values = selected[tdim].values
        keys = np.sort(np.fromiter(map(time_key_of, values), dtype="int64", count=len(values)))
    wanted = set(names)
    shares = []
    for f in files:
        if keys is not None and f.tkey_start is not None:
            i = int(np.searchsorted(keys, f.tkey_start))
            if i == keys.size or keys[i] > (f.tkey_end or f.tkey_start):
                continue
        share = sum(
            math.prod(v.shape) * np.dtype(v.dtype).itemsize
            for v in f.variables
            if v.name in wanted and f.time_var in v.dims
        )
        if share:
            shares.append(share)
    return ReadCost(sum(shares), len(shares), max(shares, default=0))


def _width(da: xr.DataArray) -> int:
    """Characters one value takes as text (CSV/JSON), a generous estimate from its dtype."""
    kind, size = da.dtype.kind, da.dtype.itemsize
    if kind in "MO":
        return 22
    if kind == "f":
        return 14 if size <= 4 else 22
    if kind in "iub":
        return 3 * size + 1
    return 16


def _answer_bytes(ds: xr.Dataset, names: list[str], fmt: str) -> int:
    if fmt == "netcdf":
        return sum(v.size * v.dtype.itemsize for v in ds.variables.values())
    dims = list(dict.fromkeys(str(d) for n in names for d in ds[n].dims))
    if fmt == "csv":
        # One row per point: every coordinate (or index) and every variable, with separators.
        rows = math.prod(ds.sizes[d] for d in dims)
        row = sum(_width(ds[d]) + 1 if d in ds.coords else 8 for d in dims)
        return rows * (row + sum(_width(ds[n]) + 1 for n in names))
    # JSON: every value of the variables and their coordinates once, plus separators.
    coords = [ds[d] for d in dims if d in ds.coords]
    return sum(v.size * (_width(v) + 1) for v in [*coords, *(ds[n] for n in names)])


def _too_large(plan: SubsetPlan, limit: int) -> str:
    ds, fmt, size = plan.ds, plan.query.format, plan.nbytes
    dims = sorted({str(d) for n in plan.variables for d in ds[n].dims}, key=lambda d: -ds.sizes[d])
    big = dims[0] if dims else None
    advice = "ask for fewer variables"
    if big is not None:
        n = ds.sizes[big]
        fit = int(n * limit / size)
        param = {"time": "time=START/END"}.get(big, f"isel={big}:0:{max(fit, 1)}")
        axes = dataset_axes(ds, plan.variables)
        if big == axes.time:
            param = f"a shorter time=START/END or isel={big}:0:{max(fit, 1)}"
        elif big == axes.lat:
            param = "lat=LO/HI"
        elif big == axes.lon:
            param = "lon=LO/HI"
        elif big == axes.vertical:
            param = "level=VALUE or level=LO/HI"
        if fit >= 1:
            advice = (
                f"{big!r} is the largest dimension ({n} positions) and about {fit} of them "
                f"fit: use {param}; or ask for fewer variables"
            )
        else:
            others = ", ".join(repr(d) for d in dims[1:]) or "the variables"
            advice = f"even one position of {big!r} is too big: cut {big!r} and also {others}"
    alt = ""
    if fmt != "netcdf":
        raw = _answer_bytes(ds, plan.variables, "netcdf")
        if raw <= limit:
            alt = f"; or use format=netcdf (about {human_bytes(raw)} for the same selection)"
    return (
        f"The subset of {plan.record.dataset_id!r} would be about {human_bytes(size)} as "
        f"{fmt}, more than this service's limit of {human_bytes(limit)} per request. "
        f"Narrow it: {advice}{alt}. For results reduced on the server (means, "
        "climatologies, anomalies), submit a job with POST /api/v1/jobs."
    )


def _files_used(ds: xr.Dataset, tdim: str | None, files: list[FileRecord]) -> list[FileRecord]:
    """Files whose time range meets the answer's (all files without a time axis)."""
    if tdim is None or tdim not in ds.dims or ds.sizes[tdim] == 0:
        return list(files)
    values = ds[tdim].values
    lo, hi = sorted((time_key_of(values[0]), time_key_of(values[-1])))
    return [
        f
        for f in files
        if f.tkey_start is None or (f.tkey_start <= hi and (f.tkey_end or f.tkey_start) >= lo)
    ]


@dataclass(frozen=True, slots=True)
class SubsetAnswer:
    """A complete answer: bytes in memory, or an open file already removed from disk.

    The NetCDF file is unlinked as soon as it is written and reopened: its space is freed
    when the handle closes, even if the client goes away mid-download.
    """

    media_type: str
    filename: str
    size: int
    content: bytes | None = None
    file: BinaryIO | None = None

    def chunks(self, size: int = 2**20) -> Iterator[bytes]:
        """The file's bytes in blocks, closing it at the end."""
        assert self.file is not None
        with self.file:
            while block := self.file.read(size):
                yield block


def write_subset(plan: SubsetPlan, *, directory: str | None = None) -> SubsetAnswer:
    """Read the selection and build the whole answer (errors surface here, before sending)."""
    suffix, media = FORMATS[plan.query.format]
    ds = plan.ds.load(scheduler="synchronous")  # one request, one thread: no shared pool
    name = _FILENAME_OK.sub("_", plan.record.dataset_id) + ".subset" + suffix
    if plan.query.format == "netcdf":
        fd, path = tempfile.mkstemp(suffix=suffix, prefix="insitu-subset-", dir=directory)
        os.close(fd)
        try:
            write_netcdf(ds, path, variables=plan.variables, history=_history(plan))
            handle = open(path, "rb")  # noqa: SIM115 - closed by SubsetAnswer.chunks
        finally:
            os.unlink(path)
        return SubsetAnswer(media, name, os.fstat(handle.fileno()).st_size, file=handle)
    if plan.query.format == "csv":
        content = to_csv(ds, plan.variables)
    else:
        header = {"dataset_id": plan.record.dataset_id, "selection": plan.query.text()}
        content = to_json(ds, plan.variables, header)
    return SubsetAnswer(media, name, len(content), content=content)


def _history(plan: SubsetPlan) -> str:
    names = [os.path.basename(f.path) for f in plan.files]
    if len(names) > 10:
        listed = f"{names[0]} to {names[-1]} ({len(names)} files)"
    else:
        listed = ", ".join(names) or "no files"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{stamp}: insitu subset of dataset {plan.record.dataset_id} "
        f"(collection {plan.record.collection}; files {listed}): {plan.query.text()}"
    )

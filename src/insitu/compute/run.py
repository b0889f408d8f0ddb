"""Running an operation on catalog datasets: cache, compute, provenance, atomic write.

A result is keyed by the operation, its parameters and the identity of every input file
(path, size, modification time); asking again returns the stored result at once, and a
rescan that sees a changed file gives a new key, so stale results are never returned.
Results are written to a temporary file and renamed into place: no partial result is ever
left where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu import __version__
from insitu.compute.batch import batches, small_dataset, small_field_means
from insitu.compute.engine import FilePart, stream_field_mean, stream_time_mean
from insitu.compute.ensemble import combine
from insitu.compute.operations import Operation, area_weights, axes, get_operation
from insitu.errors import ComputeError, DataError, InsituError, InvalidRequest, StorageFull
from insitu.log import in_notebook, show_progress

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from insitu.catalog import Catalog, DatasetRecord, LocatedFile

__all__ = ["ComputeResult", "cached_result", "in_process", "result_key", "run", "streams"]

log = logging.getLogger(__name__)

_ENGINE = "insitu-xarray-1"


@dataclass(frozen=True, slots=True)
class ComputeResult:
    """Where a result lies, whether it came from the cache, and what it took."""

    path: Path
    key: str
    cached: bool
    seconds: float
    provenance: dict[str, Any]

    def open(self) -> xr.Dataset:
        """The result, opened with xarray (fully loaded; results are small)."""
        import xarray as xr

        with xr.open_dataset(self.path) as ds:
            return ds.load()


def _main_variable(record: DatasetRecord) -> str:
    for facet in ("variable_id", "variable"):
        values = record.facets.get(facet)
        if values and len(values) == 1:
            return values[0]
    bounds = {str(v.attrs.get("bounds")) for v in record.variables if "bounds" in v.attrs}
    for v in record.variables:
        if v.name not in bounds and v.name not in v.dims and len(v.dims) > 1:
            return v.name
    raise InvalidRequest(
        f"Cannot tell which variable of {record.dataset_id!r} to use; name it (--variable)."
    )


def result_key(
    operation: str,
    params: dict[str, Any],
    variable: str,
    inputs: list[tuple[str, list[tuple[str, int, int]]]],
    time: tuple[str | None, str | None] | None,
) -> str:
    """Content key of a result: operation, parameters, variable, time and input files."""
    blob = json.dumps(
        {
            "engine": _ENGINE,
            "op": operation,
            "params": params,
            "var": variable,
            "time": time,
            "inputs": inputs,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cached_result(
    catalog: Catalog,
    operation: str,
    dataset_ids: Sequence[str],
    *,
    variable: str | None = None,
    params: dict[str, Any] | None = None,
    time: slice | None = None,
    out: str | os.PathLike[str] | None = None,
    engine: str = "stream",
) -> ComputeResult | None:
    """What :func:`run` with the same arguments would return from the results cache (the
    result delivered to ``out`` if given), or None if it would compute: look here before
    starting a cluster, which costs seconds a cached result does not need."""
    _, _, op, _, _, key = _request(catalog, operation, dataset_ids, variable, params, time, engine)
    return _cached(catalog.settings.data_dir / "results" / f"{op.name}-{key}.nc", key, out)


def streams(operation: str, time: slice | None = None, engine: str = "stream") -> bool:
    """Whether :func:`run` computes ``operation`` on the streaming engine
    (:mod:`insitu.compute.engine`): time and field means of whole datasets."""
    return time is None and engine == "stream" and operation in ("time_mean", "field_mean")


def in_process(
    catalog: Catalog,
    operation: str,
    dataset_ids: Sequence[str],
    *,
    time: slice | None = None,
    engine: str = "stream",
) -> bool:
    """Whether a request is small enough to compute in this process, on Dask's threads,
    rather than on a cluster started for it: a request of the streaming engine
    (:func:`streams`) over at most ``compute.in_process_bytes`` of stored data.

    A new local cluster costs its worker processes' start (about 2 s of a 2-core machine)
    and stop; the engine's reads release the GIL for most of their time (ISA-L's inflate,
    the C unshuffle, NumPy's sums), so threads compute a small request sooner
    (BENCHMARKS.md, "Cold `insitu compute`"). Results are the same: the graph is.
    """
    limit = catalog.settings.compute.in_process_bytes
    if limit <= 0 or not streams(operation, time, engine) or not dataset_ids:
        return False
    return sum(r.size for r in catalog.datasets(list(dataset_ids))) <= limit


def _cached(path: Path, key: str, out: str | os.PathLike[str] | None) -> ComputeResult | None:
    if not path.is_file():
        return None
    log.info("result %s from the cache", key)
    return ComputeResult(_deliver(path, out), key, True, 0.0, _read_provenance(path))


def _time_range(time: slice | None) -> tuple[str | None, str | None] | None:
    if time is None:
        return None
    return (str(time.start) if time.start else None, str(time.stop) if time.stop else None)


def _request(
    catalog: Catalog,
    operation: str,
    dataset_ids: Sequence[str],
    variable: str | None,
    params: dict[str, Any] | None,
    time: slice | None,
    engine: str,
) -> tuple[list[DatasetRecord], dict[str, list[LocatedFile]], Any, Any, str, str]:
    """The records, files, operation, checked parameters, variable and result key of a
    request (the catalog asked once for all datasets)."""
    if engine not in ("stream", "xarray"):
        raise InvalidRequest(f"Unknown engine {engine!r}; use 'stream' or 'xarray'.")
    if not dataset_ids:
        raise InvalidRequest("No dataset to compute on: the search matched nothing.")
    op = get_operation(operation)
    p = op.validate(params)
    records = catalog.datasets(list(dataset_ids))
    located = catalog.locate_all([r.dataset_id for r in records])
    var = variable or _main_variable(records[0])
    inputs = [
        (
            r.dataset_id,
            [(f.record.path, f.record.size, f.record.mtime_ns) for f in located[r.dataset_id]],
        )
        for r in records
    ]
    key = result_key(op.name, p.model_dump(), var, inputs, _time_range(time))
    key = result_key(engine, {}, key, [], None) if engine != "stream" else key
    return records, located, op, p, var, key


def run(
    catalog: Catalog,
    operation: str,
    dataset_ids: Sequence[str],
    *,
    variable: str | None = None,
    params: dict[str, Any] | None = None,
    time: slice | None = None,
    out: str | os.PathLike[str] | None = None,
    client: Client | None = None,
    cache: bool = True,
    progress: bool | None = None,
    engine: str = "stream",
) -> ComputeResult:
    """Apply ``operation`` to each dataset and, if several, combine them along ``dataset``.

    Runs on ``client`` if given (a Dask cluster), else on Dask's local scheduler. Returns
    where the CF-compliant NetCDF result is (``out`` if given, else the results cache).
    ``engine="stream"`` computes time means with the streaming engine
    (:mod:`insitu.compute.engine`); ``"xarray"`` uses xarray throughout.
    """
    records, located, op, p, var, key = _request(
        catalog, operation, dataset_ids, variable, params, time, engine
    )
    trange = _time_range(time)
    cache_dir = catalog.settings.data_dir / "results"
    cached_path = cache_dir / f"{op.name}-{key}.nc"
    hit = _cached(cached_path, key, out) if cache else None
    if hit is not None:
        return hit

    t0 = perf_counter()
    ids = [r.dataset_id for r in records]
    show = show_progress(progress)
    if len(records) == 1:
        lazy = _lazy_result(catalog, records[0], op, p, var, time, engine, _threads(client))
        result = _compute([lazy], client, show, ids)[0]
    else:
        facets = {
            r.dataset_id: {k: v[0] for k, v in r.facets.items() if len(v) == 1} for r in records
        }
        result = combine(
            _results(catalog, records, located, op, p, var, time, engine, client, show),
            var,
            facets,
        )
    seconds = perf_counter() - t0
    provenance = {
        "operation": op.name,
        "parameters": p.model_dump(mode="json"),
        "variable": var,
        "time": list(trange) if trange else None,
        "inputs": [
            {
                "dataset_id": r.dataset_id,
                "collection": r.collection,
                "version": r.version,
                "files": r.n_files,
                "time_start": r.time_start,
                "time_end": r.time_end,
            }
            for r in records
        ],
        "insitu_version": __version__,
        "engine": _ENGINE,
        "seconds": round(seconds, 3),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _stamp(result, provenance)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(result, cached_path)
    path = _deliver(cached_path, out)
    log.info("computed %s on %d datasets in %.2f s", op.name, len(records), seconds)
    return ComputeResult(path, key, False, seconds, provenance)


def _lazy_result(
    catalog: Catalog,
    record: DatasetRecord,
    op: Operation,
    p: Any,
    var: str,
    time: slice | None,
    engine: str,
    threads: int,
) -> xr.Dataset:
    """The operation on one dataset, lazily (Dask-backed), on the streaming engine where
    it applies."""
    try:
        ds = catalog.open_dataset(record.dataset_id, time=time)
    except InsituError:
        raise
    except OSError as exc:
        raise DataError(f"Cannot open dataset {record.dataset_id!r}: {exc}") from exc
    ds.attrs["insitu_dataset_id"] = record.dataset_id
    result = op(ds, var, p)
    if streams(op.name, time, engine):
        result = _streamed(catalog, record.dataset_id, ds, var, result, op.name, threads)
    return result


def _results(
    catalog: Catalog,
    records: list[DatasetRecord],
    located: dict[str, list[LocatedFile]],
    op: Operation,
    p: Any,
    var: str,
    time: slice | None,
    engine: str,
    client: Client | None,
    progress: bool,
) -> dict[str, xr.Dataset]:
    """Every dataset's result, computed, in the order of ``records``.

    The field means of small datasets are computed in batches, a few tasks per worker
    thread for all of them (:mod:`insitu.compute.batch`); the other datasets each have
    their own graph. Both kinds run in one round; a dataset the batch path gave back
    (None) runs on its own graph in a second round.
    """
    from dask.delayed import delayed

    threads = _threads(client)
    small = []
    if streams(op.name, time, engine) and op.name == "field_mean":
        direct = catalog.settings.compute.direct_reads
        for r in records:
            job = small_dataset(r.dataset_id, var, located[r.dataset_id], direct)
            if job is not None:
                small.append(job)
    chunk = catalog.settings.compute.chunk_bytes
    dealt = batches(small, threads)
    # A batch is handed over as it is: traversing it for Dask collections costs more than
    # reducing it.
    tasks = [
        delayed(small_field_means, pure=True)(delayed(b, traverse=False), chunk) for b in dealt
    ]
    batched = {s.dataset_id for s in small}
    others = [r for r in records if r.dataset_id not in batched]
    ids = [r.dataset_id for r in records]
    lazy = [_lazy_result(catalog, r, op, p, var, time, engine, threads) for r in others]
    computed = _compute([*tasks, *lazy], client, progress, ids)
    done: dict[str, xr.Dataset] = {
        r.dataset_id: res for r, res in zip(others, computed[len(tasks) :], strict=True)
    }
    given_back = []
    for batch_results, b in zip(computed[: len(tasks)], dealt, strict=True):
        for job, res in zip(b, batch_results, strict=True):
            if res is None:
                given_back.append(job.dataset_id)
            else:
                done[job.dataset_id] = res
    if given_back:
        log.info("%d datasets on their own graphs: %s", len(given_back), ", ".join(given_back))
        back = [r for r in records if r.dataset_id in set(given_back)]
        again = [_lazy_result(catalog, r, op, p, var, time, engine, threads) for r in back]
        for r, res in zip(back, _compute(again, client, progress, ids), strict=True):
            done[r.dataset_id] = res
    return {i: done[i] for i in ids}


def _streamed(
    catalog: Catalog,
    dataset_id: str,
    ds: xr.Dataset,
    var: str,
    template: xr.Dataset,
    operation: str,
    threads: int,
) -> xr.Dataset:
    """A time or field mean of one dataset by the streaming engine, shaped like ``template``.

    The time mean reads the files in ``threads`` tasks, one per worker thread.

    Falls back to ``template`` (the xarray path) where the engine's assumptions do not
    hold: the field mean needs (time, ..., lat, lon) order and one record per time step.
    """
    direct = catalog.settings.compute.direct_reads
    located = [
        f
        for f in catalog.locate(dataset_id)
        if any(v.name == var for v in f.record.variables) and f.record.n_times > 0
    ]
    files = [f.record for f in located]
    parts = [FilePart(f.path, var, 0, f.record.n_times, direct) for f in located]
    if not parts:
        return template
    chunk = catalog.settings.compute.chunk_bytes
    encoding = dict(ds[var].encoding)
    if operation == "time_mean":
        streamed: xr.Dataset = stream_time_mean(template, var, parts, encoding, chunk, threads)
        return streamed
    ax = axes(ds[var])
    dims = tuple(map(str, ds[var].dims))
    if (
        ax.time != dims[0]
        or (ax.lat, ax.lon) != dims[-2:]
        or sum(p.stop - p.start for p in parts) != ds.sizes[dims[0]]
    ):
        return template
    weights = np.asarray(area_weights(ds, ds[var]).transpose(ax.lat, ax.lon).values, "float64")
    bounds = ds[ax.time].attrs.get("bounds") if ax.time in ds.variables else None
    same_units = len({f.time_units for f in files}) == 1
    field: xr.Dataset = stream_field_mean(
        template,
        var,
        parts,
        weights,
        encoding,
        chunk,
        bounds if isinstance(bounds, str) and same_units else None,
    )
    return field


def _threads(client: Client | None) -> int:
    """Worker threads of the cluster; for Dask's local scheduler, its ``num_workers``
    (the machine's cores unless set)."""
    if client is not None:
        threads = int(sum(client.nthreads().values()))
        if threads:
            return threads
    import dask.config

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def _compute(
    results: list[Any], client: Client | None, progress: bool, ids: list[str]
) -> list[Any]:
    """``results`` (Dask collections) computed, in one round."""
    from dask.base import compute

    try:
        if client is not None:
            futures = client.compute(results)
            if progress:
                from distributed import progress as show

                bar = show(futures)  # in a notebook an ipywidget, shown only when displayed
                if bar is not None and in_notebook():
                    from IPython.display import display

                    display(bar)
            return list(client.gather(futures))
        if progress:
            from dask.diagnostics.progress import ProgressBar

            with ProgressBar():
                return list(compute(*results))
        return list(compute(*results))
    except InsituError:
        raise
    except (OSError, RuntimeError, KeyError) as exc:
        raise ComputeError(
            f"Computing on {', '.join(ids)} failed: {exc.__class__.__name__}: {exc}. If a file "
            "changed since the scan, rescan its collection ('insitu catalog scan')."
        ) from exc


def _stamp(ds: xr.Dataset, provenance: dict[str, Any]) -> None:
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "insitu_dataset_id"}
    ds.attrs["Conventions"] = "CF-1.8"
    line = (
        f"{provenance['created']}: insitu {provenance['insitu_version']} "
        f"{provenance['operation']}({json.dumps(provenance['parameters'])}) on "
        f"{', '.join(i['dataset_id'] for i in provenance['inputs'])}"
    )
    history = ds.attrs.get("history")
    ds.attrs["history"] = f"{line}\n{history}" if isinstance(history, str) and history else line
    ds.attrs["insitu_provenance"] = json.dumps(provenance)


def _read_provenance(path: Path) -> dict[str, Any]:
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        text = nc.getncattr("insitu_provenance") if "insitu_provenance" in nc.ncattrs() else "{}"
    data: dict[str, Any] = json.loads(text)
    return data


@contextlib.contextmanager
def _room_for(path: Path) -> Iterator[None]:
    """Say so, with :class:`StorageFull`, when writing ``path`` failed for want of room.

    netCDF-C reports a full disk as a bare "HDF error", so a failure is also taken for one
    when the filesystem has less than 1 MiB left afterwards.
    """
    try:
        yield
    except InsituError:
        raise
    except Exception as e:
        folder = path.parent
        if not _full(e, folder):
            raise
        free = shutil.disk_usage(folder).free
        raise StorageFull(
            f"No space left in {folder} ({free} bytes free) to write {path.name}; nothing was "
            "kept there. Free some space there, or write elsewhere (--out FILE for a result, "
            "data_dir for the results cache)."
        ) from e


def _full(error: BaseException, folder: Path) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _write_atomic(ds: xr.Dataset, path: Path) -> None:
    with _room_for(path):
        _write_netcdf_atomic(ds, path)


def _write_netcdf_atomic(ds: xr.Dataset, path: Path) -> None:
    import dask

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        encoding = {
            name: {"zlib": True, "complevel": 1}
            for name in ds.data_vars
            if ds[name].dtype.kind == "f"
        }
        # The values are computed already: without this, xarray would take a cluster-wide
        # lock from the scheduler for every variable it writes (a round trip each).
        with dask.config.set(scheduler="synchronous"):
            ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _deliver(cached: Path, out: str | os.PathLike[str] | None) -> Path:
    if out is None:
        return cached
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _room_for(target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(cached, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target

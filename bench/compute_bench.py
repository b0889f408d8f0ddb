"""Compute benchmark: time mean and field mean of one 5 GB CMIP6 dataset, insitu vs its peers.

    python bench/compute_bench.py                       # 5 GB per variant, every peer
    python bench/compute_bench.py --gb 1 --repeat 1     # smaller, quicker (own archive)
    python bench/compute_bench.py --skip ncra,xarray    # leave slow peers out
    python bench/compute_bench.py --variants compressed --only cdo_timmean,insitu_time_mean

The archive comes from ``compute_archive.py`` (generated on first use, then reused): the same
float32 ``tas`` values stored compressed (zlib 4 + shuffle, one-record chunks) and
uncompressed, one-year files of 12 records. For each variant, in one run, every peer runs in
its own subprocess while a sampler thread follows the resident memory of the whole process
tree; CPU time comes from ``getrusage(RUSAGE_CHILDREN)``. Peers:

* ``ceiling_1p`` / ``ceiling_2p``: the read/decode ceiling of the machine: 1 or 2 processes
  (``multiprocessing`` fork pool) read whole variables of their share of the files with the
  fastest decode known here (h5py hands over each raw chunk, ISA-L inflates it, the fastest
  unshuffle known here, insitu's C one, about 6x numcodecs', undoes the shuffle; the chunk
  loop is written apart from insitu's own reader) and discard them;
* ``netcdf4_ceiling_2p``: the same through netCDF4 (``set_auto_maskandscale(False)``), the
  ceiling of any tool that reads through netCDF-C (the ceiling before 2026-12-02);
* ``bare_time_mean_2p`` / ``bare_field_mean_2p``: the ``ceiling_2p`` loop plus a float64 reduction;
  what a 2-process engine without overhead would reach, and the reference the others are
  checked against (field means are weighted by exact cell areas, like ``cdo fldmean``);
* ``cdo_timmean`` / ``cdo_fldmean``: ``cdo -s -O timmean -cat <files> out.nc`` (run in the
  dataset directory). On CDO 2.1.1 ``-cat`` and ``-select,name=tas`` stream the files one
  after another; ``-mergetime`` opens all 402 at once and measured ~25% slower with 6x the
  memory (520 MB), so ``-cat`` is the default and ``--cdo-input`` picks another;
* ``ncra``: ``ncra -O <files> out.nc`` (record average = time mean);
* ``xarray``: ``xarray.open_mfdataset(files).tas.mean('time').compute()``, all defaults
  (Dask chunks as the files' chunks, one record each here; threaded scheduler, netCDF4
  engine);
* ``xarray_cluster_2p``: xarray as its documentation recommends for many files, in a new
  process: a 2-process ``distributed.LocalCluster`` (1 thread each, the malloc settings
  insitu's workers get), ``open_mfdataset(files, parallel=True, combine="nested",
  concat_dim="time", data_vars="minimal", coords="minimal", compat="override",
  chunks={"time": -1}, lock=SerializableLock())`` (one Dask chunk per file; the one lock
  keeps the workers' netCDF-C/HDF5 calls from overlapping, see ``child_xarray_cluster``)
  and ``xarray.set_options(file_cache_maxsize=8)`` in the workers;
  ``compute_s`` is open + mean on the running cluster (warm), ``wall_s`` the whole process
  with imports and cluster start (cold);
* ``xarray_h5netcdf_cluster_2p``: the same with ``engine="h5netcdf"`` (h5py underneath),
  the other engine xarray documents for netCDF-4; skipped if h5netcdf is not installed;
* ``cdo_timmean_p2``: ``cdo -P 2`` (its OpenMP threads), otherwise as ``cdo_timmean``;
* ``insitu_cli_time_mean``: ``insitu compute run time_mean --dataset ID --no-cache`` in a
  new process, as a user types it (imports, catalog look-up, then a cluster's start and
  stop, or, up to ``compute.in_process_bytes`` of files, the command's own threads;
  ``INSITU_COMPUTE__IN_PROCESS_BYTES=0`` in the environment forces the cluster), on the
  catalog scanned beforehand; it runs in the round robin with the other peers (cold: its
  ``compute_s`` is the whole command);
* ``insitu_time_mean`` / ``insitu_field_mean``: ``insitu.compute.run`` in a local cluster of
  2 workers, on a catalog scanned beforehand (scan and cluster start timed separately). If
  ``insitu.compute`` is not there yet, these print ``insitu: not available yet``.

The variant's files are locked in memory (``mmap`` + ``mlock``) for as long as its peers run,
because this VM pages out file cache that is not touched continuously (``--no-pin`` only
reads them once first; ``--cold`` evicts them before every peer with
``posix_fadvise(DONTNEED)`` instead), so the numbers measure decoding and computing, not
the disk. Throughput is GB (1e9 bytes) of uncompressed data per second. With ``--repeat N``
each peer runs N times and the fastest run is reported (insitu's operations after one
untimed first run of each, recorded as ``first_run_s``: a client process's first operation
pays for first-use imports, about 2 s here, once per session). Prints a table on stderr and one JSON
line on stdout; ``--json-out`` also writes it to a file. The machine may be shared: the
``other`` column is the CPU (in cores) that other processes used while a peer ran.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import compute_archive as archive  # noqa: E402
from _common import code_info, tree_cpu  # noqa: E402

PEERS = [
    "ceiling_1p",
    "ceiling_2p",
    "ceiling_insitu_2p",
    "netcdf4_ceiling_2p",
    "bare_time_mean_2p",
    "bare_field_mean_2p",
    "cdo_timmean",
    "cdo_fldmean",
    "ncra",
    "xarray",
    "xarray_cluster_2p",
    "xarray_h5netcdf_cluster_2p",
    "cdo_timmean_p2",
    "insitu_cli_time_mean",
    "insitu_time_mean",
    "insitu_field_mean",
]
# Operation of each peer: what its result is compared against, which ratios use it.
OPERATION = {
    "bare_time_mean_2p": "time_mean",
    "bare_field_mean_2p": "field_mean",
    "cdo_timmean": "time_mean",
    "cdo_fldmean": "field_mean",
    "ncra": "time_mean",
    "xarray": "time_mean",
    "xarray_cluster_2p": "time_mean",
    "xarray_h5netcdf_cluster_2p": "time_mean",
    "cdo_timmean_p2": "time_mean",
    "insitu_cli_time_mean": "time_mean",
    "insitu_time_mean": "time_mean",
    "insitu_field_mean": "field_mean",
}
# The engine= of each xarray cluster peer.
XARRAY_CLUSTER_ENGINE = {"xarray_cluster_2p": "netcdf4", "xarray_h5netcdf_cluster_2p": "h5netcdf"}
TOLERANCE_K = 1e-4


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =========================================================================================
# Children: each runs as `python compute_bench.py --child KIND ...` and prints one JSON line.
# =========================================================================================


def _read_var(path: str, var: str, decoder: str = "direct", records: int = 0) -> Any:
    """All of ``var``'s raw values (``records`` of them): with netCDF4, decoded directly
    (see _read_direct), or by insitu's own direct reader, without anything else."""
    if decoder == "direct":
        return _read_direct(path, var)[0]
    if decoder == "insitu":
        from insitu.formats.netcdf.direct import read_direct

        return read_direct(path, var, 0, records)
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        v = nc.variables[var]
        v.set_auto_maskandscale(False)
        return v[:]


def _read_direct(path: str, var: str, total: Any = None) -> tuple[Any, bool]:
    """The fastest decode known here, written independently of insitu's reader: h5py hands
    over each raw chunk, ISA-L inflates it, the fastest unshuffle known here (insitu's C
    one) undoes the shuffle into place. With ``total`` (float64, one record's shape) and
    chunks of whole records, shuffled and deflated, the unshuffle also sets ``total`` to the
    sum over the records, as insitu's time mean does. Returns the values and whether it did.
    """
    import h5py
    import numpy as np
    from isal.isal_zlib import decompressobj

    from insitu.formats.netcdf._shuffle import unshuffle, unshuffle_sum

    with h5py.File(path, "r") as f:
        ds = f[var]
        if ds.chunks is None:
            return ds[()], False
        plist = ds.id.get_create_plist()
        pipeline = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        if pipeline not in ([], [h5py.h5z.FILTER_DEFLATE], [2, h5py.h5z.FILTER_DEFLATE]):
            return ds[()], False
        out = np.empty(ds.shape, ds.dtype)
        cshape = ds.chunks
        whole = cshape[1:] == ds.shape[1:]
        nchunks = ds.id.get_num_chunks()
        if total is not None and whole and len(pipeline) == 2 and ds.shape[0] % cshape[0] == 0:
            origins = sorted(ds.id.get_chunk_info(i).chunk_offset for i in range(nchunks))
            raw = [ds.id.read_direct_chunk(o) for o in origins]  # (filter mask, bytes)
            if all(mask == 0 for mask, _ in raw):
                size = out.nbytes // nchunks
                data = [decompressobj().decompress(d, size) for _, d in raw]
                unshuffle_sum(data, out, ds.dtype.itemsize, total)
                return out, True
        scratch = np.empty(cshape, ds.dtype)
        for i in range(nchunks):
            origin = ds.id.get_chunk_info(i).chunk_offset
            mask, data = ds.id.read_direct_chunk(origin)
            t = origin[0]
            dest = out[t : t + cshape[0]] if whole and t + cshape[0] <= ds.shape[0] else scratch
            flat = dest.reshape(-1).view(np.uint8)
            if pipeline and not mask & (1 << (len(pipeline) - 1)):
                data = decompressobj().decompress(data, flat.nbytes)  # as insitu inflates
            if len(pipeline) == 2 and not mask & 1:
                unshuffle(data, flat, ds.dtype.itemsize)
            else:
                flat[:] = np.frombuffer(data, np.uint8)
            if dest is scratch:
                region = tuple(
                    slice(o, min(o + c, n))
                    for o, c, n in zip(origin, cshape, ds.shape, strict=True)
                )
                out[region] = scratch[tuple(slice(0, r.stop - r.start) for r in region)]
        return out, False


def _area_weights(path: str) -> Any:
    """Cell areas (up to a constant) of a regular lat-lon grid, from lat/lon bounds."""
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path) as nc:
        lat_b = np.deg2rad(nc.variables["lat_bnds"][:].astype("f8"))
        lon_b = np.deg2rad(nc.variables["lon_bnds"][:].astype("f8"))
    w_lat = np.abs(np.sin(lat_b[:, 1]) - np.sin(lat_b[:, 0]))
    w_lon = np.abs(lon_b[:, 1] - lon_b[:, 0])
    return np.outer(w_lat, w_lon)


def _pool_worker(
    kind: str, files: list[str], var: str, decoder: str, records: int, q_in: Any, q_out: Any
) -> None:
    """Take file indices from `q_in` until None; put one partial result on `q_out`.

    Each process keeps its own accumulator and sends it once at the end, so only one small
    array per process crosses a pipe (sending a 1 MB partial per file costs ~20%).
    """
    import numpy as np

    nbytes = 0
    total: Any = None
    count = 0
    fld: dict[int, Any] = {}
    file_sum: Any = None
    w_lat: Any = None
    w_full: Any = None
    while (i := q_in.get()) is not None:
        summed = False
        if kind == "bare_time_mean" and decoder == "direct" and total is not None:
            data, summed = _read_direct(files[i], var, file_sum)
            if summed:
                total += file_sum
        else:
            data = _read_var(files[i], var, decoder, records)
        nbytes += int(data.nbytes)
        if kind == "bare_time_mean":
            if total is None:
                total = np.zeros(data.shape[1:], dtype=np.float64)
                file_sum = np.empty_like(total)
            if not summed:  # record by record: about twice as fast as add.reduce(dtype=f8)
                for record in data:
                    np.add(total, record, out=total)
            count += data.shape[0]
        elif kind == "bare_field_mean":
            if w_lat is None and w_full is None:
                w = _area_weights(files[i])
                w = w / w.sum()
                if np.allclose(w, w[:, :1]):  # regular grid: separable weights
                    w_lat = w.sum(axis=1)
                    w_lon_n = w.shape[1]
                else:
                    w_full = w.ravel()
            if w_lat is not None:
                rows = np.add.reduce(data, axis=-1, dtype=np.float64) / w_lon_n  # (t,[z,]lat)
                fld[i] = rows @ w_lat
            else:
                t = data.shape[0]
                flat = (
                    data.reshape(t, -1, w_full.size)
                    if data.ndim == 4
                    else data.reshape(t, w_full.size)
                )
                fld[i] = flat.astype(np.float64) @ w_full
        # "ceiling": read and decode only
    q_out.put((nbytes, total, count, fld))


def child_pool(
    kind: str, files: list[str], var: str, procs: int, out: str | None, decoder: str, records: int
) -> dict:
    import multiprocessing as mp

    import numpy as np

    # The decoder's modules are imported before the workers fork, as insitu's workers
    # import theirs before they are timed: the ceiling does not pay for imports either.
    modules = {
        "direct": ["h5py", "isal.isal_zlib", "insitu.formats.netcdf._shuffle"],
        "insitu": ["insitu.formats.netcdf.direct", "netCDF4"],
        "netcdf4": ["netCDF4"],
    }
    for name in modules.get(decoder, []):
        importlib.import_module(name)
    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    q_in, q_out = ctx.Queue(), ctx.Queue()
    for i in range(len(files)):
        q_in.put(i)
    for _ in range(procs):
        q_in.put(None)
    workers = [
        ctx.Process(target=_pool_worker, args=(kind, files, var, decoder, records, q_in, q_out))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    parts = [q_out.get() for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"worker exited with {w.exitcode}")
    nbytes = sum(p[0] for p in parts)
    res: dict[str, Any] = {}
    if kind == "bare_time_mean":
        total = sum(p[1] for p in parts if p[1] is not None)
        count = sum(p[2] for p in parts)
        np.save(out, (total / count).astype(np.float32))
        res = {"records": count}
    elif kind == "bare_field_mean":
        fld: dict[int, Any] = {}
        for p in parts:
            fld.update(p[3])
        series = np.concatenate([fld[i] for i in range(len(files))])
        np.save(out, series)
        res = {"records": int(series.shape[0])}
    res.update(compute_s=time.perf_counter() - t0, bytes=nbytes)
    return res


def child_xarray(files: list[str], var: str, out: str) -> dict:
    import warnings

    import numpy as np

    t0 = time.perf_counter()
    import dask
    import xarray as xr

    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ds = xr.open_mfdataset(files)
    t2 = time.perf_counter()
    mean = ds[var].mean("time").compute()
    t3 = time.perf_counter()
    np.save(out, mean.values.astype(np.float32))
    return {
        "import_s": t1 - t0,
        "open_s": t2 - t1,
        "mean_s": t3 - t2,
        "compute_s": t3 - t1,
        "dask_scheduler": str(dask.config.get("scheduler", None) or "threads (default)"),
        "dask_chunks": str(ds[var].data.chunksize),
        "n_chunks": int(ds[var].data.npartitions),
    }


def _xarray_file_cache(size: int) -> None:
    import xarray as xr

    xr.set_options(file_cache_maxsize=size)


def _started_env(names: list[str]) -> dict[str, str]:
    env = Path(f"/proc/{os.getpid()}/environ").read_bytes().split(b"\0")
    pairs = dict(e.decode().split("=", 1) for e in env if b"=" in e)
    return {n: pairs.get(n, "") for n in names}


def child_xarray_cluster(files: list[str], var: str, out: str, engine: str) -> dict:
    """xarray at its documented best for many files: a 2-process LocalCluster."""
    import warnings

    import numpy as np

    t0 = time.perf_counter()
    import dask
    import xarray as xr
    from dask.utils import SerializableLock
    from distributed import Client, LocalCluster

    try:
        from insitu.compute.backend import WORKER_ENV
    except ImportError:
        WORKER_ENV = {}
    t1 = time.perf_counter()
    # glibc reads its malloc settings when the process starts: Dask applies env= after
    # that, its pre-spawn-environ before (where Dask's docs put MALLOC_TRIM_THRESHOLD_).
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_ENV}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as lc,
        Client(lc) as client,
    ):
        # The environment each worker process started with, as read from /proc.
        started_env = client.run(_started_env, sorted(WORKER_ENV))
        # At most 8 files open per worker instead of xarray's 128 (file_cache_maxsize, an
        # option of its documented set_options): an open netCDF-4 file keeps the chunks it
        # decoded in netCDF-C's chunk cache, and with 128 open per worker the 402-file
        # mean peaked at 4.0 GB instead of 0.95 GB, for the same CPU time. The mean reads
        # each file in one task, so the smaller cache makes it reopen none.
        client.run(_xarray_file_cache, 8)
        pids = set(client.run(os.getpid).values())
        t2 = time.perf_counter()
        # One lock for every file, made here: with its default locks this cluster crashed
        # (workers segfaulting in netCDF4's HDF5, then "NetCDF: HDF error"), at 81 files
        # as at 402. xarray's default netCDF4 lock is a per-process SerializableLock named
        # by a token drawn in each process, and parallel=True opens the files on the
        # workers, so a worker reads files opened by the other worker under that worker's
        # token: a second lock. Its event-loop thread, closing a file whose last reference
        # it drops, then takes one lock while its task thread reads under the other, and
        # netCDF4 (>= 1.6) lets go of the GIL inside netCDF-C: two threads in HDF5, which
        # is not thread-safe (pydata/xarray#9779 is this family). A lock made once here
        # is one token, so one lock in each worker. One Dask chunk per file
        # (chunks={"time": -1}): Dask's best practices ask for chunks of 100 MB or more,
        # aligned with the storage, and xarray chunks file by file; the files' own
        # one-record chunks (the default) made 12x the tasks and ran about 3x slower here.
        lock = SerializableLock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ds = xr.open_mfdataset(
                files,
                engine=engine,
                parallel=True,
                combine="nested",
                concat_dim="time",
                data_vars="minimal",
                coords="minimal",
                compat="override",
                chunks={"time": -1},
                lock=lock,
            )
        t3 = time.perf_counter()
        mean = ds[var].mean("time").compute()
        t4 = time.perf_counter()
        # A worker that crashes is restarted by its nanny and its tasks rerun: the result
        # is right but late, so the count of new worker processes is part of the result.
        restarted = len(set(client.run(os.getpid).values()) - pids)
    np.save(out, mean.values.astype(np.float32))
    return {
        "workers_restarted": restarted,
        "import_s": t1 - t0,
        "cluster_start_s": t2 - t1,
        "open_s": t3 - t2,
        "mean_s": t4 - t3,
        "compute_s": t4 - t2,
        "engine": engine,
        "worker_env": started_env,
        "file_cache_maxsize": 8,
        "dask_chunks": str(ds[var].data.chunksize),
        "n_chunks": int(ds[var].data.npartitions),
    }


def child_insitu_prepare(root: str, db: str, out_dir: str) -> dict:
    """Scan the variant into the catalog the insitu peers use; its one dataset id."""
    from insitu.catalog import Catalog
    from insitu.settings import Settings

    settings = Settings.load(
        catalog={"uri": f"sqlite:///{db}"}, data_dir=str(Path(out_dir) / "insitu-state")
    )
    with Catalog(settings) as cat:
        if not any(c.name == "bench" for c in cat.collections()):
            cat.add_collection("bench", root)
        cat.scan("bench", workers=2)
        hits = cat.search(limit=2).results
    if len(hits) != 1:
        raise RuntimeError(f"expected one dataset in {root}, found {len(hits)}")
    return {"dataset_id": hits[0].dataset_id}


def _insitu_result_array(res: Any, out: Path, var: str) -> Any:
    """The mean field the insitu run produced, whatever shape the result takes (best effort)."""
    import numpy as np

    cands: list[Path] = []
    if out.is_file():
        cands = [out]
    elif out.is_dir():
        cands = sorted(out.rglob("*.nc"))
    for attr in ("path", "paths", "output", "outputs", "files"):
        val = getattr(res, attr, None)
        if isinstance(val, str | os.PathLike):
            cands.append(Path(val))
        elif isinstance(val, list | tuple):
            cands += [Path(v) for v in val if isinstance(v, str | os.PathLike)]
    if cands:
        import netCDF4

        with netCDF4.Dataset(cands[0]) as nc:
            v = nc.variables[var]
            v.set_auto_maskandscale(False)
            return np.asarray(v[:])
    try:  # an xarray object, or a mapping of them, or an array
        import xarray as xr

        if isinstance(res, dict | list | tuple) and len(res) == 1:
            res = next(iter(res.values())) if isinstance(res, dict) else res[0]
        if isinstance(res, xr.Dataset):
            res = res[var]
        if isinstance(res, xr.DataArray):
            return np.asarray(res.values)
        return np.asarray(res)
    except Exception:
        return None


def _warm_worker() -> str:
    """Import what an operation needs, so the first timed run does not pay for it."""
    import dask.array  # noqa: F401
    import netCDF4  # noqa: F401
    import xarray  # noqa: F401

    import insitu.compute  # noqa: F401

    return "ok"


def child_insitu(
    root: str, db: str, var: str, ops: list[str], out_dir: str, repeat: int, engine: str | None
) -> dict:
    import inspect

    import numpy as np

    t0 = time.perf_counter()
    try:
        from insitu.catalog import Catalog
        from insitu.compute import cluster, run
        from insitu.settings import Settings
    except (ImportError, AttributeError) as exc:
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    import_s = time.perf_counter() - t0

    # Own state directory: results cache and catalog stay under the benchmark's data dir.
    settings = Settings.load(
        catalog={"uri": f"sqlite:///{db}"}, data_dir=str(Path(out_dir) / "insitu-state")
    )
    cat = Catalog(settings)
    if not any(c.name == "bench" for c in cat.collections()):
        cat.add_collection("bench", root)
    t = time.perf_counter()
    (rep,) = cat.scan("bench", workers=2)
    scan_s = time.perf_counter() - t
    hits = cat.search(limit=2).results
    if len(hits) != 1:
        raise RuntimeError(f"expected one dataset in {root}, found {len(hits)}")
    ds_id = hits[0].dataset_id
    kw: dict[str, Any] = {}
    sig = inspect.signature(run).parameters
    if "cache" in sig:
        kw["cache"] = False  # time the computation, not the results cache
    if engine:
        kw["engine"] = engine
    engine_used = engine or (str(sig["engine"].default) if "engine" in sig else "n/a")
    res: dict[str, Any] = {
        "available": True,
        "import_s": import_s,
        "scan_s": scan_s,
        "scan": rep.line() if hasattr(rep, "line") else str(rep),
        "dataset_id": ds_id,
        "run_kwargs": {k: str(v) for k, v in kw.items()},
        "engine": engine_used,
        "code": code_info(),  # the insitu code this process imported
        "runs": {},
    }
    t = time.perf_counter()
    with cluster(settings, backend="local", workers=2) as client:
        res["cluster_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        client.run(_warm_worker)
        res["worker_warm_s"] = time.perf_counter() - t
        for op in ops:
            out = Path(out_dir) / f"insitu_{op}.nc"
            times, cpus = [], []
            r: Any = None
            # One untimed run first: the first operation of a client process pays for its
            # first-use imports and the workers' first allocations (about 2 s here), once
            # per session, not per operation. It is recorded as first_run_s.
            t = time.perf_counter()
            run(cat, op, [ds_id], client=client, out=str(out), **kw)
            first_run_s = time.perf_counter() - t
            for _ in range(repeat):
                if out.exists():
                    shutil.rmtree(out) if out.is_dir() else out.unlink()
                c = tree_cpu()
                t = time.perf_counter()
                r = run(cat, op, [ds_id], client=client, out=str(out), **kw)
                times.append(time.perf_counter() - t)
                cpus.append(tree_cpu() - c)
            arr = _insitu_result_array(r, out, var)
            saved = None
            if arr is not None:
                saved = str(Path(out_dir) / f"insitu_{op}.npy")
                np.save(saved, np.asarray(arr, dtype=np.float32))
            best = times.index(min(times))
            res["runs"][op] = {
                "compute_s": times[best],
                "cpu_s": cpus[best],
                "all_compute_s": times,
                "all_cpu_s": cpus,
                "first_run_s": first_run_s,
                "result_npy": saved,
                "engine": engine_used,
            }
    return res


def child_main(args: argparse.Namespace) -> int:
    files = Path(args.files_from).read_text().split("\n") if args.files_from else []
    files = [f for f in files if f]
    if args.child in ("ceiling", "bare_time_mean", "bare_field_mean"):
        # One BLAS thread per process: two processes on two cores must not oversubscribe.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        res = child_pool(
            args.child, files, args.var, args.procs, args.out, args.decoder, args.records
        )
    elif args.child == "xarray":
        res = child_xarray(files, args.var, args.out)
    elif args.child == "xarray_cluster":
        res = child_xarray_cluster(files, args.var, args.out, args.engine)
    elif args.child == "insitu_prepare":
        res = child_insitu_prepare(args.root, args.db, args.out)
    elif args.child == "insitu":
        res = child_insitu(
            args.root,
            args.db,
            args.var,
            args.ops.split(","),
            args.out,
            args.repeat,
            args.insitu_engine,
        )
    else:
        raise SystemExit(f"unknown child {args.child}")
    print(json.dumps(res), flush=True)
    return 0


# =========================================================================================
# Parent: run each peer as a subprocess, measure wall, CPU and peak RSS of the process tree.
# =========================================================================================


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants, sampled every `dt` s."""

    def __init__(self, pid: int, dt: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.dt = pid, dt
        self.peak = 0
        self.peak_procs = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            if total > self.peak:
                self.peak, self.peak_procs = total, len(procs)
            self._halt.wait(self.dt)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def measure(
    cmd: list[str],
    cwd: str | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Run `cmd`; wall time, CPU time of the tree, peak tree RSS, exit status, stdout JSON."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys0 = psutil.cpu_times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[timeout after {timeout} s]"
    wall = time.perf_counter() - t0
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys1 = psutil.cpu_times()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0)) - (
        sum(sys0) - sys0.idle - getattr(sys0, "iowait", 0.0)
    )
    res: dict[str, Any] = {
        "wall_s": wall,
        "cpu_s": cpu,
        "cores_used": cpu / wall if wall > 0 else 0.0,
        # CPU that other processes on the machine used meanwhile (noise indicator).
        "other_cores": max(0.0, busy - cpu) / wall if wall > 0 else 0.0,
        "peak_rss_mb": sampler.peak / 2**20,
        "rc": proc.returncode,
    }
    if proc.returncode != 0:
        res["stderr"] = err.strip()[-2000:]
    last = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if last:
        with contextlib.suppress(ValueError):
            res["child"] = json.loads(last[-1])
    return res


def warm(files: list[str]) -> float:
    """Read every file once so the page cache holds it; return the seconds it took."""
    buf = bytearray(16 * 2**20)
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return time.perf_counter() - t0


class PageCachePin:
    """The files' pages locked in memory (``mmap`` + ``mlock``) until :meth:`release`.

    This VM pages out file cache that is not touched continuously (DAMON proactive
    reclaim: a 200 MB read 20 s after the previous one came from the disk, at ~20 MB/s),
    so a page cache warmed once goes cold between peers and every peer ends up measuring
    the disk. Locking the files in memory for the length of a variant keeps them warm for
    every peer alike. Needs CAP_IPC_LOCK (root) or a large enough ``ulimit -l``.
    """

    def __init__(self, files: list[str]) -> None:
        import ctypes

        self._libc = libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]  # fmt: skip
        libc.mlock.argtypes = libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._maps: list[tuple[int, int]] = []
        t0 = time.perf_counter()
        try:
            for f in files:
                fd = os.open(f, os.O_RDONLY)
                try:
                    size = os.fstat(fd).st_size
                    addr = libc.mmap(None, size, 0x1, 0x1, fd, 0)  # PROT_READ, MAP_SHARED
                    if addr in (None, ctypes.c_void_p(-1).value):
                        raise OSError(ctypes.get_errno(), f"mmap {f}")
                    self._maps.append((addr, size))
                    if libc.mlock(addr, size) != 0:  # faults every page in, then locks it
                        err = ctypes.get_errno()
                        raise OSError(err, f"mlock {f}: {os.strerror(err)} (see ulimit -l)")
                finally:
                    os.close(fd)
        except BaseException:
            self.release()
            raise
        self.seconds = time.perf_counter() - t0

    def release(self) -> None:
        for addr, size in self._maps:
            self._libc.munmap(addr, size)
        self._maps = []


_PIN: PageCachePin | None = None


def unpin() -> None:
    global _PIN
    if _PIN is not None:
        _PIN.release()
        _PIN = None


def evict(files: list[str]) -> None:
    """Drop the files' pages from the page cache (only these files; needs them clean)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_nc(path: Path, var: str) -> Any:
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path) as nc:
        v = nc.variables[var]
        v.set_auto_maskandscale(False)
        return np.asarray(v[:], dtype=np.float64)


def max_diff(a: Any, ref: Any) -> float | None:
    import numpy as np

    if a is None or ref is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.size != ref.size:
        return float("nan")
    return float(np.max(np.abs(a.reshape(ref.shape) - ref)))


def machine_info() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def ver(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not found"

    import dask
    import netCDF4
    import numpy
    import xarray

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cdo": ver(["cdo", "--version"]),
        "ncra": ver(["ncra", "--version"]),
        "netCDF4": netCDF4.__version__,
        "netcdf_c": netCDF4.__netcdf4libversion__,
        "hdf5": netCDF4.__hdf5libversion__,
        "numpy": numpy.__version__,
        "xarray": xarray.__version__,
        "dask": dask.__version__,
    }


def _pool_env(peer: str) -> dict[str, str] | None:
    """The environment of a peer: the ceilings and bare loops get the malloc settings that
    insitu gives its workers (``WORKER_ENV``: glibc keeps freed memory instead of faulting
    it in again for every chunk), so that they stay the fastest known; others the default."""
    if "ceiling_" not in peer and not peer.startswith("bare_"):
        return None
    try:
        from insitu.compute.backend import WORKER_ENV
    except ImportError:
        return None
    return {**os.environ, **WORKER_ENV}


def run_variant(
    variant: str, man: dict[str, Any], args: argparse.Namespace, peers: list[str], work: Path
) -> dict[str, Any]:
    info = man["variants"][variant]
    ddir = Path(info["dataset_dir"])
    root = Path(man["root"])
    files = [str(root / f["path"]) for f in info["files"]]
    names = [Path(f).name for f in files]
    ubytes = man["uncompressed_bytes"]
    var = man["params"]["variable"]
    records = 12 * man["params"]["years_per_file"]  # in every file
    me = [sys.executable, str(Path(__file__).resolve())]
    vwork = work / variant
    vwork.mkdir(parents=True, exist_ok=True)
    flist = vwork / "files.txt"
    flist.write_text("\n".join(files) + "\n")

    out: dict[str, Any] = {
        "files": len(files),
        "disk_gb": info["disk_bytes"] / 1e9,
        "uncompressed_gb": ubytes / 1e9,
        "compression_ratio": info["compression_ratio"],
        "peers": {},
    }
    if args.cold:
        out["cache"] = "cold (files evicted before each peer)"
    elif args.no_pin:
        out["warm_read_s"] = warm(files)
        out["cache"] = "warm (read once before the peers)"
        say(f"[{variant}] page cache warmed: {out['disk_gb']:.2f} GB in {out['warm_read_s']:.1f} s")
    else:
        global _PIN
        unpin()
        _PIN = PageCachePin(files)
        out["warm_read_s"] = _PIN.seconds
        out["cache"] = "warm (files locked in memory for the whole variant)"
        say(f"[{variant}] files locked in memory: {out['disk_gb']:.2f} GB in {_PIN.seconds:.1f} s")

    def cmd_of(peer: str) -> tuple[list[str], str | None]:
        if "ceiling_" in peer:
            procs = peer.rsplit("_", 1)[1].rstrip("p")
            decoder = "direct"
            if peer.startswith("netcdf4_"):
                decoder = "netcdf4"
            elif peer.startswith("ceiling_insitu_"):
                decoder = "insitu"
            return [*me, "--child", "ceiling", "--procs", procs, "--files-from", str(flist),
                    "--var", var, "--decoder", decoder,
                    "--records", str(records)], None  # fmt: skip
        if peer.startswith("bare_"):
            kind = peer.rsplit("_", 1)[0]
            return [*me, "--child", kind, "--procs", "2", "--files-from", str(flist),
                    "--var", var, "--out", str(vwork / f"{kind}.npy")], None  # fmt: skip
        if peer in ("cdo_timmean", "cdo_fldmean"):
            op = peer.removeprefix("cdo_")
            inp = f"-select,name={var}" if args.cdo_input == "select" else f"-{args.cdo_input}"
            return ["cdo", "-s", "-O", op, inp, *names, str(vwork / f"{peer}.nc")], str(ddir)
        if peer == "ncra":
            return ["ncra", "-O", *names, str(vwork / "ncra.nc")], str(ddir)
        if peer == "xarray":
            return [*me, "--child", "xarray", "--files-from", str(flist), "--var", var,
                    "--out", str(vwork / "xarray.npy")], None  # fmt: skip
        if peer in XARRAY_CLUSTER_ENGINE:
            return [*me, "--child", "xarray_cluster", "--files-from", str(flist), "--var", var,
                    "--engine", XARRAY_CLUSTER_ENGINE[peer],
                    "--out", str(vwork / f"{peer}.npy")], None  # fmt: skip
        if peer == "cdo_timmean_p2":
            inp = f"-select,name={var}" if args.cdo_input == "select" else f"-{args.cdo_input}"
            return ["cdo", "-P", "2", "-s", "-O", "timmean", inp, *names,
                    str(vwork / f"{peer}.nc")], str(ddir)  # fmt: skip
        if peer == "insitu_cli_time_mean":
            insitu = str(Path(sys.executable).with_name("insitu"))
            return [insitu, "compute", "run", "time_mean", "--dataset", cli_dataset[0],
                    "--no-cache", "--backend", "local", "--workers", "2",
                    "--out", str(vwork / f"{peer}.nc")], None  # fmt: skip
        raise ValueError(peer)

    cli_dataset: list[str] = []
    cli_env = {
        **os.environ,
        "INSITU_CATALOG__URI": f"sqlite:///{vwork / 'catalog.db'}",
        "INSITU_DATA_DIR": str(vwork / "insitu-state"),
    }
    if "insitu_cli_time_mean" in peers:
        prep_cmd = [*me, "--child", "insitu_prepare", "--root", info["root"]]
        prep_cmd += ["--db", str(vwork / "catalog.db"), "--out", str(vwork)]
        prep = measure(
            prep_cmd,
            timeout=args.timeout,
        )
        if prep["rc"] != 0:
            raise RuntimeError(f"scanning for the insitu peers failed: {prep.get('stderr')}")
        cli_dataset.append(prep["child"]["dataset_id"])

    results = out["peers"]
    todo = []
    warm_insitu = [p for p in peers if p.startswith("insitu_") and p != "insitu_cli_time_mean"]
    for peer in [p for p in peers if p not in warm_insitu]:
        if (
            peer == "ncra"
            and variant == "uncompressed"
            and (man["params"]["uncompressed_layout"] == "contiguous")
        ):
            results[peer] = {"skipped": "ncra needs a record dimension (contiguous layout)"}
        elif peer == "xarray_h5netcdf_cluster_2p" and importlib.util.find_spec("h5netcdf") is None:
            results[peer] = {"skipped": "h5netcdf is not installed"}
        else:
            todo.append(peer)
    # Round robin (every peer once, then again) so a burst of outside load hits one run of
    # a peer rather than all of them.
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in todo}
    for i in range(args.repeat):
        for peer in todo:
            if runs[peer] and runs[peer][-1]["rc"] != 0:
                continue
            if args.cold:
                evict(files)
            cmd, cwd = cmd_of(peer)
            env = cli_env if peer == "insitu_cli_time_mean" else _pool_env(peer)
            r = measure(cmd, cwd=cwd, timeout=args.timeout, env=env)
            r["compute_s"] = r.get("child", {}).get("compute_s", r["wall_s"])
            runs[peer].append(r)
            if r["rc"] != 0:
                say(f"[{variant}] {peer}: FAILED rc={r['rc']}: {r.get('stderr', '')[-500:]}")
            else:
                say(
                    f"[{variant}] {peer} (run {i + 1}): {r['compute_s']:.2f} s "
                    f"({ubytes / 1e9 / r['compute_s']:.2f} GB/s), wall {r['wall_s']:.2f} s, "
                    f"{r['cores_used']:.2f} cores, peak {r['peak_rss_mb']:.0f} MB; "
                    f"other processes used {r['other_cores']:.2f} cores meanwhile"
                )
    for peer in todo:
        best = min(runs[peer], key=lambda r: (r["rc"] != 0, r["compute_s"]))
        best["all_compute_s"] = [r["compute_s"] for r in runs[peer]]
        best["all_other_cores"] = [r["other_cores"] for r in runs[peer]]
        best["gbps"] = ubytes / 1e9 / best["compute_s"] if best["rc"] == 0 else None
        results[peer] = best

    ins = warm_insitu
    if ins:
        ops = [p.removeprefix("insitu_") for p in ins]
        db = vwork / "catalog.db"
        cmd = [*me, "--child", "insitu", "--root", info["root"], "--db", str(db), "--var", var,
               "--ops", ",".join(ops), "--out", str(vwork)]  # fmt: skip
        if args.cold:
            evict(files)  # the repeats inside the one process run warm
        cmd += ["--repeat", str(args.repeat)]
        if args.insitu_engine:
            cmd += ["--insitu-engine", args.insitu_engine]
        r = measure(cmd, timeout=args.timeout)
        child = r.get("child", {})
        if r["rc"] != 0:
            say(f"[{variant}] insitu: FAILED rc={r['rc']}: {r.get('stderr', '')[-800:]}")
            for p in ins:
                results[p] = {"available": True, "rc": r["rc"], "error": r.get("stderr", "")}
        elif not child.get("available", False):
            say(f"[{variant}] insitu: not available yet ({child.get('error', '?')})")
            for p in ins:
                results[p] = {"available": False, "error": child.get("error")}
        else:
            for p, op in zip(ins, ops, strict=True):
                c, o = child, child["runs"][op]
                results[p] = {
                    "available": True,
                    "compute_s": o["compute_s"],
                    "all_compute_s": o["all_compute_s"],
                    "first_run_s": o.get("first_run_s"),
                    "gbps": ubytes / 1e9 / o["compute_s"],
                    "engine": o.get("engine"),
                    "code": c.get("code"),
                    "process_wall_s": r["wall_s"],
                    "scan_s": c["scan_s"],
                    "cluster_start_s": c["cluster_start_s"],
                    "worker_warm_s": c.get("worker_warm_s"),
                    "cpu_s_process_total": r["cpu_s"],
                    "cpu_s": o.get("cpu_s"),
                    "cores_used": o["cpu_s"] / o["compute_s"] if o.get("cpu_s") else None,
                    "other_cores": r["other_cores"],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "result_npy": o["result_npy"],
                }
                say(
                    f"[{variant}] {p}: {o['compute_s']:.2f} s ({results[p]['gbps']:.2f} GB/s) "
                    f"runs {', '.join(f'{x:.2f}' for x in o['all_compute_s'])} s "
                    f"(untimed first run {o.get('first_run_s') or 0:.2f} s); whole process "
                    f"{r['wall_s']:.1f} s incl. scan {c['scan_s']:.1f} s, cluster start "
                    f"{c['cluster_start_s']:.1f} s; peak {r['peak_rss_mb']:.0f} MB (whole tree)"
                )

    # -- correctness: everything against the bare float64 reference -------------------
    import numpy as np

    ref_t = vwork / "bare_time_mean.npy"
    ref_f = vwork / "bare_field_mean.npy"
    refs = {
        "time_mean": np.load(ref_t) if ref_t.exists() and "bare_time_mean_2p" in results else None,
        "field_mean": (
            np.load(ref_f) if ref_f.exists() and "bare_field_mean_2p" in results else None
        ),
    }
    for peer, r in results.items():
        op = OPERATION.get(peer)
        if op is None or r.get("rc", 0) != 0 or "compute_s" not in r:
            continue
        got = None
        try:
            if peer.startswith("cdo_") or peer in ("ncra", "insitu_cli_time_mean"):
                got = read_nc(vwork / f"{peer}.nc", var)
            elif peer == "xarray" or peer in XARRAY_CLUSTER_ENGINE:
                got = np.load(vwork / f"{peer}.npy")
            elif peer.startswith("insitu_") and r.get("result_npy"):
                got = np.load(r["result_npy"])
        except Exception as exc:
            r["check"] = f"could not read result: {exc}"
            continue
        if peer.startswith("bare_"):
            continue
        d = max_diff(got, refs[op])
        r["max_abs_diff_k"] = d
        if peer.startswith("insitu_"):
            cdo = vwork / ("cdo_timmean.nc" if op == "time_mean" else "cdo_fldmean.nc")
            if cdo.exists() and got is not None:
                r["max_abs_diff_vs_cdo_k"] = max_diff(got, read_nc(cdo, var))
    return out


def ratios(vres: dict[str, Any]) -> dict[str, Any]:
    """Speedups and ceiling fractions, for insitu and (as a bound) for the bare loop."""
    p = vres["peers"]

    def s(name: str) -> float | None:
        r = p.get(name) or {}
        return r.get("compute_s") if r.get("rc", 0) == 0 and "compute_s" in r else None

    out: dict[str, Any] = {}
    cdo_t, cdo_f, xr_t, nc_t = s("cdo_timmean"), s("cdo_fldmean"), s("xarray"), s("ncra")
    # The fastest decode known here: h5py's chunks decoded apart from insitu, or insitu's
    # own direct reader doing nothing else, whichever was faster in this run.
    decodes = {
        k: p[k]["gbps"] for k in ("ceiling_2p", "ceiling_insitu_2p") if p.get(k, {}).get("gbps")
    }
    ceil = max(decodes.values(), default=None)
    if decodes:
        out["ceiling"] = max(decodes, key=lambda k: decodes[k])
    for who, tm, fm in [
        ("insitu", s("insitu_time_mean"), s("insitu_field_mean")),
        ("bare", s("bare_time_mean_2p"), s("bare_field_mean_2p")),
    ]:
        if tm is None and fm is None:
            continue
        r: dict[str, Any] = {}
        if tm and cdo_t:
            r["time_mean_speedup_vs_cdo"] = cdo_t / tm
        if fm and cdo_f:
            r["field_mean_speedup_vs_cdo"] = cdo_f / fm
        if tm and xr_t:
            r["time_mean_speedup_vs_xarray"] = xr_t / tm
        if tm and nc_t:
            r["time_mean_speedup_vs_ncra"] = nc_t / tm
        if tm and ceil:
            r["time_mean_fraction_of_ceiling"] = vres["uncompressed_gb"] / tm / ceil
        if fm and ceil:
            r["field_mean_fraction_of_ceiling"] = vres["uncompressed_gb"] / fm / ceil
        out[who] = r
    nc_ceil = p.get("netcdf4_ceiling_2p", {}).get("gbps")
    tm = s("insitu_time_mean")
    if tm and nc_ceil:
        out["insitu"]["time_mean_fraction_of_netcdf4_ceiling"] = (
            vres["uncompressed_gb"] / tm / nc_ceil
        )
    c1 = p.get("ceiling_1p", {}).get("gbps")
    if c1 and ceil:
        out["ceiling_2p_over_1p"] = ceil / c1
    return out


def table(res: dict[str, Any]) -> str:
    lines = []
    hdr = f"{'variant':<13}{'peer':<20}{'time s':>8}{'GB/s':>7}{'wall s':>8}{'cores':>7}"
    hdr += f"{'peak MB':>9}{'max|d| K':>10}{'other':>7}"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for variant, v in res["variants"].items():
        for peer, r in v["peers"].items():
            if r.get("available") is False:
                lines.append(f"{variant:<13}{peer:<20}  not available yet")
                continue
            if "skipped" in r:
                lines.append(f"{variant:<13}{peer:<20}  skipped: {r['skipped']}")
                continue
            if r.get("rc", 0) != 0:
                lines.append(f"{variant:<13}{peer:<20}  FAILED (rc {r.get('rc')})")
                continue
            d = r.get("max_abs_diff_k")
            ds = "ref" if peer.startswith("bare_") else "-" if d is None else f"{d:.1e}"
            wall = r.get("wall_s", r.get("process_wall_s", 0.0))
            cores = r.get("cores_used")
            lines.append(
                f"{variant:<13}{peer:<20}{r['compute_s']:>8.2f}{r['gbps']:>7.2f}{wall:>8.2f}"
                f"{(f'{cores:.2f}' if cores is not None else '-'):>7}"
                f"{r['peak_rss_mb']:>9.0f}{ds:>10}"
                f"{(f'{oc:.2f}' if (oc := r.get('other_cores')) is not None else '-'):>7}"
            )
        for who, rr in v.get("ratios", {}).items():
            if isinstance(rr, dict):
                lines.append(
                    f"{variant:<13}{who + ' ratios':<20}  "
                    + ", ".join(f"{k} {x:.2f}" for k, x in rr.items())
                )
            elif isinstance(rr, str):
                lines.append(f"{variant:<13}{who:<20}  {rr}")
            else:
                lines.append(f"{variant:<13}{who:<20}  {rr:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    archive.add_args(ap)
    ap.add_argument("--variants", default="compressed,uncompressed")
    ap.add_argument("--only", default="", help="comma-separated peers to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated peers to leave out")
    ap.add_argument("--repeat", type=int, default=2, help="runs per peer; fastest counts (2)")
    ap.add_argument(
        "--cdo-input",
        choices=["cat", "mergetime", "select"],
        default="cat",
        help="how CDO reads the files: -cat (default, streams one file at a time), "
        "-mergetime (opens all files at once: slower, 6x the memory) or -select,name=VAR",
    )
    ap.add_argument(
        "--insitu-engine",
        default=None,
        help="engine= passed to insitu.compute.run (default: run's own default)",
    )
    ap.add_argument("--cold", action="store_true", help="evict the files before every peer")
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="read the files once instead of locking them in memory for the variant",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per peer run (1800)")
    ap.add_argument("--work-dir", type=Path, default=None, help="outputs (default: data dir)")
    ap.add_argument("--json-out", type=Path, default=None)
    # internal: child processes
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--procs", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--decoder", default="direct", help=argparse.SUPPRESS)
    ap.add_argument("--records", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--files-from", help=argparse.SUPPRESS)
    ap.add_argument("--var", default="tas", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--ops", default="time_mean,field_mean", help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="netcdf4", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)

    only = [p for p in args.only.split(",") if p]
    skip = {p for p in args.skip.split(",") if p}
    unknown = (set(only) | skip) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers {sorted(unknown)}; known: {', '.join(PEERS)}")
    peers = [p for p in (only or PEERS) if p not in skip]
    for need, tool in [("cdo_", "cdo"), ("ncra", "ncra")]:
        if any(p.startswith(need) for p in peers) and not shutil.which(tool):
            ap.error(f"{tool} not found: apt-get install -y cdo nco, or --skip its peers")

    t_start = time.perf_counter()
    man = archive.ensure(archive.params_from(args), args.data_dir, args.gen_workers, log=say)
    work = (args.work_dir or Path(args.data_dir) / "results" / Path(man["root"]).name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "benchmark": "compute",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_info(),
        "load_avg_start": os.getloadavg(),
        "archive": {k: v for k, v in man.items() if k != "variants"},
        "repeat": args.repeat,
        "peers": peers,
        "variants": {},
    }
    for variant in [v for v in args.variants.split(",") if v]:
        if variant not in archive.VARIANTS:
            ap.error(f"unknown variant {variant}")
        try:
            v = run_variant(variant, man, args, peers, work)
        except Exception:
            say(traceback.format_exc())
            continue
        finally:
            unpin()
        v["ratios"] = ratios(v)
        res["variants"][variant] = v
    res["load_avg_end"] = os.getloadavg()
    res["total_s"] = time.perf_counter() - t_start
    say("")
    say(table(res))
    say(f"\ntotal {res['total_s']:.0f} s")
    line = json.dumps(res, default=str)
    print(line)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

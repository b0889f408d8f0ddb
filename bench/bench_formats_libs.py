"""Benchmark: insitu's home-made netCDF-4 pieces against the libraries that do the same job.

    python bench/bench_formats_libs.py headers [--synthetic 2000] [--rounds 3]
    python bench/bench_formats_libs.py chunks [--files 40] [--rounds 3]
    python bench/bench_formats_libs.py all
    python bench/bench_formats_libs.py regression --tree /tmp/bench-base --tree . [--rounds 3]

``headers``: files/s reading whole headers (every attribute, dimension and variable, and the
values of the time, lat and lon coordinates, what a catalog scan reads) of the demo archive
plus a synthetic CMIP6 archive (``bench_scan.build_archive``, R=12, git-ignored under
``bench/data/formats-libs``), by

* ``insitu``: ``NetCDF4Reader.header`` (the ctypes HDF5 reader, netCDF-C where it refuses);
* ``netCDF4``: ``NetCDF3Reader.header`` (netCDF4-python, ``Dataset`` opened with defaults,
  raw values: ``set_auto_maskandscale(False)``);
* ``h5py``: the same header from h5py's high-level API (``File``, ``attrs``, ``Dataset[()]``),
  netCDF-C's dimension bookkeeping (``_Netcdf4Dimid``, ``_Netcdf4Coordinates``) read as
  insitu's reader reads it;

on 1 and 2 processes (the files split in halves). ``chunks``: chunks/s and MB/s (of decoded
values) reading every record of ``tas`` from the compressed (zlib 4 + shuffle, one record per
chunk, CMOR's layout) files of the compute benchmark's archive (``compute_archive.py``), on 1
and 2 threads, by

* ``index:*``: the chunk index only (where each chunk lies, its size and filter mask, the
  filters, the fill values): ``insitu`` (``layout.layout``: ctypes calls to HDF5 before
  commit ``852d594``, h5py's ``chunk_iter`` since), ``h5py-iter``
  (``DatasetID.chunk_iter``), ``h5py-info`` (``get_chunk_info(i)`` for each chunk);
* ``read:insitu``: ``direct.read_direct`` (index + ``os.pread`` + ISA-L inflate + C unshuffle);
* ``read:h5py-index+pread``: h5py's ``chunk_iter`` for the index, the rest as insitu;
* ``read:h5py-direct``: h5py's ``read_direct_chunk`` (index and bytes from h5py), ISA-L + C
  unshuffle;
* ``read:h5py-direct+numcodecs-shuffle``: as ``read:h5py-direct`` with numcodecs' ``Shuffle``
  instead of the C unshuffle (the unshuffle alone compared);
* ``read:h5py-direct+numcodecs``: ``read_direct_chunk``, numcodecs' ``Zlib`` and ``Shuffle``
  (all library);
* ``read:h5py``: ``Dataset[()]`` (HDF5's own filter pipeline, the system zlib);
* ``read:netCDF4``: netCDF-C slabs (``var[:]``, raw values, under the HDF5 lock).

``regression``: the no-regression check of a change to these pieces, trees side by side: for
each ``--tree`` (a checkout, e.g. ``git worktree add /tmp/bench-base <commit>``; its C
unshuffle built in place), in turn, round after round (the order rotating), that tree's own
``bench/compute_bench.py --variants compressed --only cdo_timmean,insitu_time_mean`` (the
compressed time mean against ``cdo timmean``, on this tree's compute archive) and its
``bench/bench_scan.py --records 12`` (the header scan, files/s on 2 processes), each with
``PYTHONPATH=<tree>/src``. Gives, per tree, the time mean over CDO's time in the same
invocation and the time mean against the first tree's in the same round.

Every measurement of ``headers`` and ``chunks`` runs in a new process (``cold``: first
pass, the HDF5 library and Python code not yet warmed) that then runs a second pass over
the same files (``warm``). Each runs
twice per round: with the files' pages dropped from the page cache first
(``posix_fadvise(DONTNEED)`` on these files only: ``page cache miss``) and with them cached
(``page cache hit``). Rounds interleave every reader (the order rotates per round);
the tables give the median over rounds and the range. Prints tables on stderr and one JSON
line on stdout (``--json-out`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import DATA_DIR, code_info, emit, evict_page_cache, load_avg, say  # noqa: E402

HEADER_READERS = ["insitu", "netCDF4", "h5py"]
CHUNK_METHODS = [
    "index:insitu",
    "index:h5py-iter",
    "index:h5py-info",
    "read:insitu",
    "read:h5py-index+pread",
    "read:h5py-direct",
    "read:h5py-direct+numcodecs-shuffle",
    "read:h5py-direct+numcodecs",
    "read:h5py",
    "read:netCDF4",
]
VAR = "tas"

# -- header readers -----------------------------------------------------------------------

_COORDS = ("time", "lat", "lon")


def _touch(header: Any) -> int:
    """What a scan reads beyond the header: the coordinates' values."""
    n = len(header.global_attrs)
    for var in header.variables:
        n += len(var.attrs)
        if var.name in _COORDS:
            n += var.read().size
    return n


def header_reader(kind: str) -> Callable[[str], int]:
    if kind == "insitu":
        from insitu.formats.netcdf.readers import NetCDF4Reader

        reader: Any = NetCDF4Reader()
    elif kind == "netCDF4":
        from insitu.formats.netcdf.readers import NetCDF3Reader

        reader = NetCDF3Reader()
    elif kind == "h5py":
        import h5py  # noqa: F401  (loaded before the timing, as the others' libraries)

        return _h5py_header
    else:
        raise ValueError(kind)

    def read(path: str) -> int:
        with reader.header(path) as h:
            return _touch(h)

    return read


_HIDDEN = frozenset(
    {"CLASS", "DIMENSION_LIST", "NAME", "REFERENCE_LIST", "_Netcdf4Coordinates",
     "_Netcdf4Dimid", "_NCProperties", "_nc3_strict"}
)  # fmt: skip


def h5py_header_of(f: Any) -> Any:
    """The header of an open ``h5py.File`` written by netCDF-C, as insitu's reader gives it."""
    import h5py
    import numpy as np

    from insitu.formats.header import Header, HeaderVariable, jsonable

    def value(v: Any) -> Any:  # netCDF4-python gives a one-value attribute as a scalar
        return jsonable(v[0] if isinstance(v, np.ndarray) and v.size == 1 else v)

    gattrs = {k: value(v) for k, v in f.attrs.items() if k not in _HIDDEN}
    dim_names: dict[int, str] = {}
    dim_len: dict[str, int] = {}
    found = []
    for name, obj in f.items():
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"{name}: not a dataset")
        # Names first, then only the values needed: the hidden DIMENSION_LIST and
        # REFERENCE_LIST hold object references, which h5py would dereference at a cost.
        attrs = obj.attrs
        keys = list(attrs)
        if "CLASS" in keys:
            dimid = int(attrs["_Netcdf4Dimid"])
            dim_names[dimid] = name
            dim_len[name] = obj.shape[0]
            if jsonable(attrs["NAME"]).startswith("This is a netCDF dimension but not"):
                continue
        found.append((name, obj, attrs, keys))
    variables = []
    for name, obj, attrs, keys in found:
        if "_Netcdf4Coordinates" in keys:
            dims = tuple(dim_names[int(i)] for i in attrs["_Netcdf4Coordinates"])
        else:
            dims = (name,) if obj.shape else ()
        variables.append(
            HeaderVariable(
                name,
                dims,
                tuple(obj.shape),
                str(obj.dtype),
                {k: value(attrs[k]) for k in keys if k not in _HIDDEN},
                lambda obj=obj: obj[()],
            )
        )
    dims_out = {dim_names[i]: dim_len[dim_names[i]] for i in sorted(dim_names)}
    data_model = "NETCDF4_CLASSIC" if "_nc3_strict" in f.attrs else "NETCDF4"
    return Header(data_model, dims_out, variables, gattrs)


def _h5py_header(path: str) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return _touch(h5py_header_of(f))


def check_headers(paths: list[str]) -> dict[str, int]:
    """How many of ``paths`` give the same header (names, dims, shapes, types, attributes)
    from h5py as from insitu's reader: the readers do the same work."""
    import h5py

    from insitu.formats.netcdf.readers import NetCDF4Reader

    def key(h: Any) -> Any:
        return (
            h.dims,
            h.global_attrs,
            sorted((v.name, v.dims, v.shape, v.dtype, v.attrs) for v in h.variables),
        )

    same = differ = 0
    for p in paths:
        with NetCDF4Reader().header(p) as a:
            ka = key(a)
        with h5py.File(p, "r") as f:
            kb = key(h5py_header_of(f))
        if repr(ka) == repr(kb):
            same += 1
        else:
            differ += 1
    return {"same": same, "differ": differ}


# -- chunk readers --------------------------------------------------------------------------


def chunk_method(kind: str, records: int) -> Callable[[str], int]:
    """A function reading one file's ``tas`` as ``kind`` does; returns chunks handled."""
    import numpy as np

    if kind == "index:insitu":
        from insitu.formats.netcdf.layout import layout

        return lambda p: len(layout(p, VAR).chunks)
    if "h5py" in kind or kind in ("index:insitu", "read:insitu"):  # insitu's layout uses h5py
        import h5py
        import isal.isal_zlib  # noqa: F401
        import numcodecs  # noqa: F401

        from insitu.formats.netcdf import unshuffle  # noqa: F401
    if kind in ("index:h5py-iter", "index:h5py-info"):
        return lambda p: len(_h5py_index(p, kind.endswith("iter"))[1])
    if kind == "read:insitu":
        from insitu.formats.netcdf.direct import read_direct

        return lambda p: read_direct(p, VAR, 0, records).shape[0]
    if kind == "read:netCDF4":
        import netCDF4

        from insitu.formats.lock import HDF5_LOCK

        def nc(p: str) -> int:
            with HDF5_LOCK, netCDF4.Dataset(p, "r") as ds:
                v = ds.variables[VAR]
                v.set_auto_maskandscale(False)
                return np.asarray(v[:]).shape[0]

        return nc
    if kind == "read:h5py":
        import h5py

        def whole(p: str) -> int:
            with h5py.File(p, "r") as f:
                return f[VAR][()].shape[0]

        return whole
    if kind.startswith("read:h5py-"):
        return lambda p: _h5py_direct(p, kind).shape[0]
    raise ValueError(kind)


def _h5py_index(path: str, iterate: bool) -> tuple[Any, list[tuple[Any, int, int, int]]]:
    """(dataset facts, [(origin, byte offset, size, filter mask)]) from h5py: what insitu's
    ``layout`` finds (filters, chunk shape, fill values, every chunk's place)."""
    import h5py

    with h5py.File(path, "r") as f:
        ds = f[VAR]
        plist = ds.id.get_create_plist()
        filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        fills = {k: ds.attrs[k] for k in ("_FillValue", "missing_value") if k in ds.attrs}
        facts = (ds.shape, ds.chunks, ds.dtype, filters, fills)
        found: list[tuple[Any, int, int, int]] = []
        if iterate:
            ds.id.chunk_iter(
                lambda c: found.append((c.chunk_offset, c.byte_offset, c.size, c.filter_mask))
            )
        else:
            for i in range(ds.id.get_num_chunks()):
                c = ds.id.get_chunk_info(i)
                found.append((c.chunk_offset, c.byte_offset, c.size, c.filter_mask))
        return facts, found


def _h5py_direct(path: str, kind: str) -> Any:
    """Every chunk of ``tas`` (one record each) read and decoded as ``kind`` says."""
    import h5py
    import numcodecs
    import numpy as np

    zlib_codec = numcodecs.Zlib()
    from isal.isal_zlib import decompressobj

    from insitu.formats.netcdf.unshuffle import unshuffle

    with h5py.File(path, "r") as f:
        ds = f[VAR]
        out = np.empty(ds.shape, ds.dtype)
        step = ds.chunks[0]
        nbytes = out[:step].nbytes
        if kind == "read:h5py-index+pread":
            found: list[tuple[Any, int, int]] = []
            ds.id.chunk_iter(lambda c: found.append((c.chunk_offset, c.byte_offset, c.size)))
            fd = os.open(path, os.O_RDONLY)
            try:
                for origin, where, size in found:
                    data = decompressobj().decompress(os.pread(fd, size, where), nbytes)
                    unshuffle(data, out[origin[0] : origin[0] + step], ds.dtype.itemsize)
            finally:
                os.close(fd)
            return out
        shuffle_codec = numcodecs.Shuffle(elementsize=ds.dtype.itemsize)
        for t in range(0, ds.shape[0], step):
            _mask, raw = ds.id.read_direct_chunk((t, 0, 0))
            dest = out[t : t + step]
            if kind.endswith("numcodecs"):
                shuffle_codec.decode(zlib_codec.decode(raw), out=dest)
            elif kind.endswith("numcodecs-shuffle"):
                shuffle_codec.decode(decompressobj().decompress(raw, nbytes), out=dest)
            else:
                unshuffle(decompressobj().decompress(raw, nbytes), dest, ds.dtype.itemsize)
        return out


# -- children: one new process per measurement ------------------------------------------------


def child(args: argparse.Namespace) -> int:
    """Time two passes over the files; with ``--sync``, start each pass on the parent's word."""
    from concurrent.futures import ThreadPoolExecutor

    paths = Path(args.files_from).read_text().split()
    if args.child == "headers":
        work = header_reader(args.kind)
    else:
        work = chunk_method(args.kind, args.records)
    out: dict[str, Any] = {"passes": []}
    for _ in range(2):
        if args.sync:
            print("ready", flush=True)
            sys.stdin.readline()
        c0, t0 = time.process_time(), time.perf_counter()
        if args.threads > 1:
            with ThreadPoolExecutor(args.threads) as pool:
                n = sum(pool.map(work, paths))
        else:
            n = sum(work(p) for p in paths)
        t1 = time.perf_counter()
        out["passes"].append({"t0": t0, "t1": t1, "cpu_s": time.process_time() - c0, "n": n})
    print(json.dumps(out), flush=True)
    return 0


def run_children(cmds: list[list[str]], timeout: float = 900) -> list[dict[str, Any]]:
    """Start ``cmds`` (children with ``--sync``) together, pass by pass: each pass begins in
    all of them at once, after every one has loaded its libraries."""
    procs = [
        subprocess.Popen(c, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for c in cmds
    ]
    try:
        for _ in range(2):
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline()
                if line.strip() != "ready":
                    raise RuntimeError(f"child said {line!r}")
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
        outs = []
        for p in procs:
            stdout, _ = p.communicate(timeout=timeout)
            if p.returncode:
                raise RuntimeError(f"child failed (rc {p.returncode})")
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def passes(outs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per pass: the span from the first child's start to the last one's end, CPU, items."""
    res = []
    for i in range(2):
        ps = [o["passes"][i] for o in outs]
        res.append(
            {
                "s": max(p["t1"] for p in ps) - min(p["t0"] for p in ps),
                "cpu_s": sum(p["cpu_s"] for p in ps),
                "n": sum(p["n"] for p in ps),
            }
        )
    return res


# -- the two benchmarks ----------------------------------------------------------------------


def header_paths(args: argparse.Namespace) -> list[str]:
    from bench_scan import build_archive
    from bench_service import _demo_root

    root = DATA_DIR / "formats-libs" / f"headers-{args.synthetic}"
    marker = root.parent / f".complete-headers-{args.synthetic}"
    if not marker.exists():
        say(f"[headers] writing {args.synthetic} synthetic files under {root}")
        build_archive(root, args.synthetic, 12)
        marker.touch()
    demo = sorted(str(p) for p in _demo_root().rglob("*.nc"))
    return demo + sorted(str(p) for p in root.rglob("*.nc"))


def bench_headers(args: argparse.Namespace) -> dict[str, Any]:
    paths = header_paths(args)
    work = DATA_DIR / "formats-libs"
    lists = []
    for procs in (1, 2):
        for i in range(procs):
            f = work / f"headers-{procs}-{i}.txt"
            f.write_text("\n".join(paths[i::procs]) + "\n")
            lists.append(f)
    check = check_headers(paths[:: max(1, len(paths) // 200)])
    say(f"[headers] {len(paths)} files; h5py vs insitu headers on a sample: {check}")
    rows: dict[str, list[float]] = {}
    loads = []
    for rnd in range(args.rounds):
        order = HEADER_READERS[rnd % 3 :] + HEADER_READERS[: rnd % 3]
        for kind in order:
            for procs in args.procs:
                for cache in ("miss", "hit"):
                    if cache == "miss":
                        evict_page_cache(paths)
                    cmds = [
                        [sys.executable, __file__, "--child", "headers", "--kind", kind,
                         "--files-from", str(work / f"headers-{procs}-{i}.txt"), "--sync",
                         "--threads", "1"]
                        for i in range(procs)
                    ]  # fmt: skip
                    loads.append(load_avg())
                    cold, warm = passes(run_children(cmds))
                    for name, p in (("cold", cold), ("warm", warm)):
                        key = f"{kind}|{procs}|{cache}|{name}"
                        rows.setdefault(key, []).append(len(paths) / p["s"])
                        rows.setdefault(key + "|cpu_ms", []).append(p["cpu_s"] * 1e3 / len(paths))
                    say(
                        f"[headers] round {rnd + 1} {kind:8} {procs}p page cache {cache}: "
                        f"cold {len(paths) / cold['s']:7.0f} files/s, "
                        f"warm {len(paths) / warm['s']:7.0f} files/s (load {loads[-1]:.1f})"
                    )
    return {"files": len(paths), "check": check, "rows": rows, "load": loads}


def chunk_paths(args: argparse.Namespace) -> tuple[list[str], int, float]:
    import compute_archive as archive

    parser = argparse.ArgumentParser()
    archive.add_args(parser)
    p = archive.params_from(parser.parse_args(["--gb", str(args.gb)]))
    man = archive.ensure(p, archive.DEFAULT_DIR, log=say)
    root = Path(man["root"])
    files = [str(root / f["path"]) for f in man["variants"]["compressed"]["files"]]
    files = files[: args.files]
    records = 12 * man["params"]["years_per_file"]
    mb = len(files) * records * p.nlat * p.nlon * 4 / 1e6
    return files, records, mb


def bench_chunks(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    paths, records, mb = chunk_paths(args)
    work = DATA_DIR / "formats-libs"
    work.mkdir(parents=True, exist_ok=True)
    flist = work / "chunks.txt"
    flist.write_text("\n".join(paths) + "\n")
    # Every reader gives the same values (the first file).
    ref = None
    for kind in [m for m in CHUNK_METHODS if m.startswith("read:")]:
        got = _one_array(kind, paths[0], records)
        ref = got if ref is None else ref
        if not np.array_equal(got, ref):
            raise AssertionError(f"{kind} differs from read:insitu")
    say(f"[chunks] {len(paths)} files, {records} chunks each, {mb:.0f} MB decoded; readers agree")
    rows: dict[str, list[float]] = {}
    loads = []
    methods = [m for m in CHUNK_METHODS if not args.methods or m in args.methods.split(",")]
    for rnd in range(args.rounds):
        k = rnd % len(methods)
        for kind in methods[k:] + methods[:k]:
            for threads in args.threads:
                for cache in ("miss", "hit"):
                    if cache == "miss":
                        evict_page_cache(paths)
                    cmd = [sys.executable, __file__, "--child", "chunks", "--kind", kind,
                           "--files-from", str(flist), "--records", str(records),
                           "--threads", str(threads), "--sync"]  # fmt: skip
                    loads.append(load_avg())
                    cold, warm = passes(run_children([cmd]))
                    for name, p in (("cold", cold), ("warm", warm)):
                        key = f"{kind}|{threads}|{cache}|{name}"
                        rows.setdefault(key, []).append(p["n"] / p["s"])
                        rows.setdefault(key + "|s", []).append(p["s"])
                    say(
                        f"[chunks] round {rnd + 1} {kind:28} {threads}t page cache {cache}: "
                        f"cold {cold['n'] / cold['s']:8.0f}/s, warm {warm['n'] / warm['s']:8.0f}/s"
                        f" (load {loads[-1]:.1f})"
                    )
    return {
        "files": len(paths),
        "records": records,
        "mb": mb,
        "rows": rows,
        "load": loads,
    }


def _one_array(kind: str, path: str, records: int) -> Any:
    if kind == "read:insitu":
        from insitu.formats.netcdf.direct import read_direct

        return read_direct(path, VAR, 0, records)
    if kind.startswith("read:h5py-"):
        return _h5py_direct(path, kind)
    import h5py

    if kind == "read:h5py":
        with h5py.File(path, "r") as f:
            return f[VAR][()]
    import netCDF4

    with netCDF4.Dataset(path, "r") as ds:
        v = ds.variables[VAR]
        v.set_auto_maskandscale(False)
        return v[:]


# -- tables --------------------------------------------------------------------------------


def _stat(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def header_table(res: dict[str, Any], procs: list[int]) -> str:
    rows = res["rows"]
    lines = [
        "| reader | procs | cold, page cache miss | cold, hit | warm, hit "
        "| CPU ms/file (cold, hit) | insitu / this (cold, hit) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in procs:
        base = statistics.median(rows[f"insitu|{n}|hit|cold"])
        for kind in HEADER_READERS:
            hit = rows[f"{kind}|{n}|hit|cold"]
            lines.append(
                f"| {kind} | {n} | {_stat(rows[f'{kind}|{n}|miss|cold'])} | {_stat(hit)} | "
                f"{_stat(rows[f'{kind}|{n}|hit|warm'])} | "
                f"{statistics.median(rows[f'{kind}|{n}|hit|cold|cpu_ms']):.2f} | "
                f"{base / statistics.median(hit):.2f}x |"
            )
    return "\n".join(lines)


def chunk_table(res: dict[str, Any], threads: list[int]) -> str:
    rows, per = res["rows"], res["mb"] / (res["files"] * res["records"])
    lines = [
        "| method | threads | cold, page cache miss: chunks/s | cold, hit: chunks/s (MB/s) "
        "| warm, hit: chunks/s (MB/s) |",
        "|---|---|---|---|---|",
    ]
    for n in threads:
        for kind in CHUNK_METHODS:
            if f"{kind}|{n}|hit|cold" not in rows:
                continue
            mbs = kind.startswith("read:")
            hit, warm = rows[f"{kind}|{n}|hit|cold"], rows[f"{kind}|{n}|hit|warm"]
            lines.append(
                f"| {kind} | {n} | {_stat(rows[f'{kind}|{n}|miss|cold'])} | {_stat(hit)}"
                + (f" ({statistics.median(hit) * per:,.0f} MB/s)" if mbs else "")
                + f" | {_stat(warm)}"
                + (f" ({statistics.median(warm) * per:,.0f} MB/s)" if mbs else "")
                + " |"
            )
    return "\n".join(lines)


# -- regression: whole trees side by side ------------------------------------------------------


def bench_regression(args: argparse.Namespace) -> dict[str, Any]:
    trees = [Path(t).resolve() for t in args.tree]
    tags = [f"{i}-{t.name}" for i, t in enumerate(trees)]
    work = Path(args.work_dir).resolve()
    data_dir = BENCH / "data" / "compute"
    runs: dict[str, list[dict[str, Any]]] = {tag: [] for tag in tags}
    for rnd in range(args.rounds):
        k = rnd % len(trees)
        for tree, tag in (
            list(zip(trees, tags, strict=True))[k:] + list(zip(trees, tags, strict=True))[:k]
        ):
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}
            out = work / tag / f"round{rnd}"
            out.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(tree / "bench" / "compute_bench.py"), "--gb", str(args.gb),
                   "--variants", "compressed", "--only", "cdo_timmean,insitu_time_mean",
                   "--repeat", str(args.repeat), "--data-dir", str(data_dir),
                   "--work-dir", str(out / "compute"),
                   "--json-out", str(out / "compute.json")]  # fmt: skip
            load = load_avg()
            rc = subprocess.run(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL).returncode
            row: dict[str, Any] = {"round": rnd, "load_before": load, "rc": rc}
            if rc == 0:
                v = json.loads((out / "compute.json").read_text())["variants"]["compressed"]
                peers = v["peers"]
                row["cdo_s"] = peers["cdo_timmean"]["compute_s"]
                row["insitu_s"] = peers["insitu_time_mean"]["compute_s"]
                row["insitu_all_s"] = peers["insitu_time_mean"]["all_compute_s"]
                row["other_cores"] = peers["insitu_time_mean"].get("other_cores")
                row["speedup_vs_cdo"] = row["cdo_s"] / row["insitu_s"]
            scan = [sys.executable, str(tree / "bench" / "bench_scan.py"), "--records", "12",
                    "--repeat", str(args.scan_repeat), "--no-workers1",
                    "--data-dir", str(out / "scan")]  # fmt: skip
            r = subprocess.run(scan, env=env, cwd=tree, capture_output=True, text=True)
            if r.returncode == 0:
                res = json.loads(r.stdout.strip().splitlines()[-1])["results"]
                row["scan_files_per_s"] = res["files_per_s"]
                row["scan_all_files_per_s"] = res["all_files_per_s"]
                row["scan_busy_cores"] = res["busy_cores"]
            runs[tag].append(row)
            say(f"[regression] round {rnd + 1} {tag}: {json.dumps(row)}")
    summary: dict[str, Any] = {}
    first = tags[0]
    for tag in tags:
        ok = [r for r in runs[tag] if "insitu_s" in r]
        same_round = [
            b["insitu_s"] / r["insitu_s"]
            for r in ok
            for b in runs[first]
            if b["round"] == r["round"] and "insitu_s" in b
        ]
        summary[tag] = {
            "speedup_vs_cdo": [r["speedup_vs_cdo"] for r in ok],
            "first_tree_over_this": same_round,
            "scan": [r.get("scan_files_per_s") for r in runs[tag]],
        }
    say(json.dumps(summary, indent=1))
    return {"trees": [str(t) for t in trees], "runs": runs, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "what", nargs="?", choices=["headers", "chunks", "all", "regression"], default="all"
    )
    ap.add_argument("--tree", action="append", default=[], help="regression: a checkout")
    ap.add_argument("--repeat", type=int, default=2, help="regression: compute_bench --repeat")
    ap.add_argument("--scan-repeat", type=int, default=3, help="regression: scans per round")
    ap.add_argument("--work-dir", default=str(DATA_DIR / "formats-libs" / "regression"))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    ap.add_argument("--synthetic", type=int, default=2000, help="synthetic header files (2000)")
    ap.add_argument("--procs", default="1,2", help="processes for headers (1,2)")
    ap.add_argument("--files", type=int, default=40, help="compressed files for chunks (40)")
    ap.add_argument("--gb", type=float, default=5.0, help="compute archive to read (5)")
    ap.add_argument("--threads", default="1,2", help="threads for chunks (1,2)")
    ap.add_argument("--methods", default="", help="chunk methods to run (default: all)")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--files-from", help=argparse.SUPPRESS)
    ap.add_argument("--records", type=int, default=12, help=argparse.SUPPRESS)
    ap.add_argument("--sync", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.threads = int(args.threads)
        return child(args)
    args.procs = [int(x) for x in args.procs.split(",")]
    args.threads = [int(x) for x in args.threads.split(",")]
    (DATA_DIR / "formats-libs").mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"code": code_info(), "load_start": os.getloadavg()}
    import h5py
    import netCDF4

    results["versions"] = {
        "h5py": h5py.version.version,
        "h5py_hdf5": h5py.version.hdf5_version,
        "netCDF4": netCDF4.__version__,
        "netcdf_hdf5": netCDF4.__hdf5libversion__,
    }
    if args.what == "regression":
        results["regression"] = bench_regression(args)
    if args.what in ("headers", "all"):
        results["headers"] = bench_headers(args)
        say(header_table(results["headers"], args.procs))
    if args.what in ("chunks", "all"):
        results["chunks"] = bench_chunks(args)
        say(chunk_table(results["chunks"], args.threads))
    results["load_end"] = os.getloadavg()
    emit("formats_libs", results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

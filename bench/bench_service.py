"""Benchmark: the data service under load, on loopback.

Starts ``insitu serve`` as its own process over a catalog of the real CMIP6 demo archive
(public) plus one generated dataset large enough to measure throughput, then runs
``--clients`` concurrent HTTP clients for ``--duration`` seconds. Searches are faceted
searches with counts (random facet constraints from the catalog's own values); chunk
reads get one small Zarr chunk of a random dataset, variable and chunk index (keys worked
out from the consolidated metadata, as zarr does). It reports throughput and p50/p95/p99
latency per kind, any non-200 answer as an error, and the CPU time of the server and of
the clients per request.

The clients (``--client``): ``wrk`` (default; Debian's package, ``scripts/tools.sh``
installs it): two wrk processes at once, ``--search-share`` of the connections searching
and the others reading chunks, each picking its paths at random; or ``aiohttp``: coroutines
in this process that each pick search or chunk at random per request. The load generator
shares the machine's 2 cores with the server, and wrk needs about a quarter of the CPU per
request that aiohttp does, so it disturbs the measurement less.

Then, with no other load, it reads one whole variable of the generated dataset through
the Zarr view with xarray + fsspec (what a remote notebook does) and the same data with
``insitu.open_dataset`` locally, and reports both rates and their ratio.

    python bench/bench_service.py [--clients 50] [--duration 20] [--server-workers 1]
                                  [--client wrk|aiohttp] [--compressed] [--chunks-from big]

Chunk throughput on compressed data (what direct chunk reads speed up), against another
checkout's code (``PYTHONPATH=/path/to/checkout/src``; the server inherits it)::

    python bench/bench_service.py --compressed --chunks-from big --search-share 0.02 \
        --clients 16 --duration 20 --server-workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from itertools import product
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
    emit,
    load_avg,
    month_times,
    percentiles,
    say,
    tree_cpu,
    write_cmip6_file,
)

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "random_paths.lua"
BIG_ID = "CMIP6.CMIP.MPI-M.MPI-ESM1-2-LR.historical.r1i1p1f1.Amon.tas.gn.v20190710"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _demo_root() -> Path:
    spec = importlib.util.find_spec("esmvaltool_sample_data")
    assert spec is not None and spec.submodule_search_locations, "pip install 'insitu[demo]'"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "timeseries"


def _big_archive(root: Path, files: int, nlat: int, nlon: int, compressed: bool = False) -> None:
    """One dataset of ``files`` one-year monthly files on an nlat x nlon grid."""
    directory = root / BIG_ID.replace(".", "/")
    marker = directory / f".complete-{files}-{nlat}x{nlon}{'-zlib' if compressed else ''}"
    if marker.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        year = 1850 + i
        name = f"tas_Amon_MPI-ESM1-2-LR_historical_r1i1p1f1_gn_{year}01-{year}12.nc"
        write_cmip6_file(
            directory / name,
            times=month_times(1850, 12, 12 * i),
            nlat=nlat,
            nlon=nlon,
            seed=i,
            compressed=compressed,
        )
    marker.touch()


def _prepare(
    work: Path,
    big_files: int,
    nlat: int,
    nlon: int,
    compressed: bool = False,
    catalog_from: Path | None = None,
) -> dict[str, str]:
    from insitu.catalog import Catalog
    from insitu.errors import CollectionExists
    from insitu.settings import Settings

    _big_archive(work / "big", big_files, nlat, nlon, compressed)
    copied = work / ".catalog-copied"
    if catalog_from is not None and not copied.exists():
        # The search benchmark's catalog (100,000 datasets whose files are not on disk:
        # searched, never read) under the demo and the big dataset, which are read.
        say(f"copying the catalog {catalog_from} ...")
        shutil.copyfile(catalog_from, work / "catalog.db")
        copied.write_text(str(catalog_from))
    env = {
        "INSITU_DATA_DIR": str(work / "state"),
        "INSITU_CATALOG__URI": f"sqlite:///{work / 'catalog.db'}",
        "INSITU_CONFIG": str(work / "none.toml"),
    }
    (work / "none.toml").write_text("")
    settings = Settings.load(data_dir=work / "state", catalog={"uri": env["INSITU_CATALOG__URI"]})
    with Catalog(settings) as cat:
        for name, root in (("demo", _demo_root()), ("big", work / "big")):
            with contextlib.suppress(CollectionExists):
                cat.add_collection(name, root, public=True)
            cat.scan(name, workers=2)  # not the copied catalog's, whose files are not here
    return env


def _start(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "insitu.cli", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "died") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the service did not start within 60 s")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _chunk_keys(base: str, dataset_ids: list[str]) -> list[str]:
    """Every chunk key of every data variable of the datasets, from consolidated metadata."""
    keys = []
    for ds in dataset_ids:
        meta = _get_json(f"{base}/api/v1/zarr/{ds}/.zmetadata")["metadata"]
        for key, zarray in meta.items():
            if not key.endswith("/.zarray"):
                continue
            var = key[: -len("/.zarray")]
            dims = meta.get(f"{var}/.zattrs", {}).get("_ARRAY_DIMENSIONS", [])
            if len(dims) < 3:  # data variables, not coordinates or bounds
                continue
            sep = zarray.get("dimension_separator", ".")
            counts = [-(-n // c) for n, c in zip(zarray["shape"], zarray["chunks"], strict=True)]
            for idx in product(*(range(c) for c in counts)):
                keys.append(f"{ds}/{var}/{sep.join(map(str, idx))}")
    return keys


def _queries(base: str) -> list[str]:
    facets = _get_json(f"{base}/api/v1/search?limit=0")["facets"]
    rng = random.Random(1)
    names = [f for f in ("source_id", "experiment_id", "table_id", "variable_id") if f in facets]
    out = []
    for _ in range(200):
        picked = rng.sample(names, rng.randint(1, min(3, len(names))))
        parts = [f"{f}={rng.choice(list(facets[f]))}" for f in picked]
        out.append("&".join([*parts, "limit=20"]))
    return out


def _unrepeated_queries(base: str, n: int) -> list[str]:
    """``n`` different searches, as many users would ask them: 1 to 3 facet constraints
    (values from the catalog's own counts), a time window in a third of them, a later
    page in a quarter, free text in a tenth; each asked once."""
    answer = _get_json(f"{base}/api/v1/search?limit=0")
    facets = {f: list(v) for f, v in answer["facets"].items() if v}
    names = [f for f in ("source_id", "experiment_id", "table_id", "variable_id",
                         "member_id", "institution_id", "grid_label") if f in facets]  # fmt: skip
    words = sorted({w for w in facets.get("variable_id", [])})[:200]
    rng = random.Random(17)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        picked = rng.sample(names, rng.randint(1, min(3, len(names))))
        parts = [f"{f}={rng.choice(facets[f])}" for f in picked]
        if rng.random() < 1 / 3:
            start = rng.randint(1850, 2010)
            parts.append(f"time={start}/{start + rng.randint(0, 60)}")
        if rng.random() < 1 / 4:
            parts.append(f"offset={20 * rng.randint(1, 10)}")
        if words and rng.random() < 0.1:
            parts.append(f"q={rng.choice(words)}")
        query = "&".join([*parts, "limit=20"])
        if query not in seen:
            seen.add(query)
            out.append(query)
    return out


async def _load(
    base: str, clients: int, duration: float, share: float, keys: list[str], queries: list[str]
) -> dict[str, Any]:
    import aiohttp

    lat: dict[str, list[float]] = {"search": [], "chunk": []}
    errors: dict[str, int] = {}
    nbytes = 0
    stop = time.monotonic() + duration

    async def client(seed: int, session: aiohttp.ClientSession) -> None:
        nonlocal nbytes
        rng = random.Random(seed)
        while time.monotonic() < stop:
            if rng.random() < share:
                kind, url = "search", f"{base}/api/v1/search?{rng.choice(queries)}"
            else:
                kind, url = "chunk", f"{base}/api/v1/zarr/{rng.choice(keys)}"
            t0 = time.perf_counter()
            async with session.get(url) as r:
                body = await r.read()
                status = r.status
            lat[kind].append(time.perf_counter() - t0)
            nbytes += len(body)
            if status != 200:
                errors[f"{kind} {status}"] = errors.get(f"{kind} {status}", 0) + 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(clients)))
        elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {
        "client": "aiohttp",
        "seconds": elapsed,
        "errors": errors,
        "mb_received": nbytes / 1e6,
    }
    total = 0
    for kind, values in lat.items():
        total += len(values)
        if values:
            ms = {k: v * 1000 for k, v in percentiles(values, (50, 95, 99)).items()}
            out[kind] = {"requests": len(values), "per_s": len(values) / elapsed, **ms}
    out["requests_per_s"] = total / elapsed
    return out


def _load_wrk(
    base: str,
    clients: int,
    duration: float,
    share: float,
    keys: list[str],
    queries: list[str],
    work: Path,
    in_order: bool = False,
) -> dict[str, Any]:
    """Two wrk processes at once: searches on some connections, chunks on the others
    (``in_order``: the searches go through their list in order, none asked twice)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: run scripts/tools.sh (or use --client aiohttp)")
    # --search-share 0: chunk reads only (the server's CPU per request is then per chunk GET).
    searchers = 0 if share <= 0 else max(1, min(clients - 1, round(clients * share)))
    kinds = {
        "search": (searchers, [f"/api/v1/search?{q}" for q in queries]),
        "chunk": (clients - searchers, [f"/api/v1/zarr/{k}" for k in keys]),
    }
    kinds = {kind: spec for kind, spec in kinds.items() if spec[0]}
    procs = {}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for seed, (kind, (conns, paths)) in enumerate(kinds.items(), 1):
        listing = work / f"wrk-{kind}.txt"
        listing.write_text("\n".join(paths) + "\n")
        cmd = [wrk, "-t1", f"-c{conns}", f"-d{duration:.0f}s", "--timeout", "10s"]
        cmd += ["-s", str(WRK_SCRIPT), base, "--", str(listing), str(seed)]
        if in_order and kind == "search":
            cmd.append("in-order")
        procs[kind] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out: dict[str, Any] = {"client": "wrk", "errors": {}}
    total = 0.0
    seconds = 0.0
    for kind, proc in procs.items():
        stdout, _ = proc.communicate(timeout=duration + 120)
        line = next((ln for ln in stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk for {kind} failed ({proc.returncode}):\n{stdout}")
        r = json.loads(line[len("WRKJSON ") :])
        seconds = max(seconds, r["duration_s"])
        per_s = r["requests"] / r["duration_s"]
        total += per_s
        out[kind] = {"connections": kinds[kind][0], "requests": r["requests"], "per_s": per_s}
        out[kind].update({k: r[k] for k in ("p50", "p95", "p99", "max", "mean")})
        for name, n in r["errors"].items():
            if n:
                out["errors"][f"{kind} {name}"] = n
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["seconds"] = seconds
    out["requests_per_s"] = total
    out["client_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return out


def _remote_vs_local(base: str, env: dict[str, str], repeat: int) -> dict[str, Any]:
    import fsspec
    import xarray as xr

    from insitu.catalog import Catalog
    from insitu.settings import Settings

    settings = Settings.load(
        data_dir=env["INSITU_DATA_DIR"], catalog={"uri": env["INSITU_CATALOG__URI"]}
    )
    best_remote = best_local = float("inf")
    nbytes = 0
    with Catalog(settings) as cat:
        for _ in range(repeat):
            t0 = time.perf_counter()
            ds = xr.open_zarr(fsspec.get_mapper(f"{base}/api/v1/zarr/{BIG_ID}"), consolidated=True)
            remote = ds["tas"].values
            best_remote = min(best_remote, time.perf_counter() - t0)
            t0 = time.perf_counter()
            local = cat.open_dataset(BIG_ID)["tas"].values
            best_local = min(best_local, time.perf_counter() - t0)
            nbytes = local.nbytes
            assert (remote == local).all(), "the Zarr view and the local open disagree"
    return {
        "dataset": BIG_ID,
        "mb": nbytes / 1e6,
        "remote_s": best_remote,
        "local_s": best_local,
        "remote_mb_per_s": nbytes / 1e6 / best_remote,
        "local_mb_per_s": nbytes / 1e6 / best_local,
        "remote_over_local": best_local / best_remote,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--search-share", type=float, default=0.5)
    parser.add_argument("--server-workers", type=int, default=1)
    parser.add_argument("--big-files", type=int, default=40, help="files of the big dataset")
    parser.add_argument("--grid", default="180x360", help="grid of the big dataset, LATxLON")
    parser.add_argument(
        "--repeat", type=int, default=3, help="remote/local read repeats (0: skip that read)"
    )
    parser.add_argument(
        "--work",
        default="",
        help="suffix of the work folder (bench/data/service[-zlib]-WORK): archives of other "
        "sizes side by side, e.g. one much larger than every server-side cache",
    )
    parser.add_argument("--client", choices=("wrk", "aiohttp"), default="wrk")
    parser.add_argument(
        "--compressed",
        action="store_true",
        help="write the big dataset as CMOR does (shuffle + deflate, a record per chunk) in "
        "its own folder",
    )
    parser.add_argument(
        "--chunks-from",
        choices=("demo", "big"),
        default="demo",
        help="read chunks of the demo datasets (uncompressed) or of the big dataset",
    )
    parser.add_argument(
        "--catalog-from",
        type=Path,
        default=None,
        help="start from a copy of this SQLite catalog (the search benchmark's, "
        "bench/data/search/catalog.db: 100,000 datasets) and add the demo and big ones",
    )
    parser.add_argument(
        "--unrepeated",
        type=int,
        default=0,
        help="this many different searches, each asked once (no remembered answer can "
        "serve them), instead of 200 repeated ones (wrk only)",
    )
    args = parser.parse_args()

    nlat, nlon = (int(x) for x in args.grid.split("x"))
    work = DATA_DIR / ("service-zlib" if args.compressed else "service")
    if args.work:
        work = work.with_name(f"{work.name}-{args.work}")
    work.mkdir(parents=True, exist_ok=True)
    say(f"preparing the catalog in {work} ...")
    env = _prepare(work, args.big_files, nlat, nlon, args.compressed, args.catalog_from)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(env, port, args.server_workers)
    try:
        found = _get_json(f"{base}/api/v1/search?collection=demo&limit=1000")["results"]
        ids = [r["dataset_id"] for r in found]
        chunked = [BIG_ID] if args.chunks_from == "big" else [i for i in ids if i != BIG_ID][:40]
        keys = _chunk_keys(base, chunked)
        queries = _unrepeated_queries(base, args.unrepeated) if args.unrepeated else _queries(base)
        say(f"{len(keys)} chunk keys, {len(queries)} queries; warming up ...")
        # Both kinds whatever --search-share says, long enough that every server process
        # has opened the files and built the views (a first read of a file in a process
        # costs about 5 ms more): the load below measures the steady state. The warm-up
        # asks repeated searches, never the unrepeated ones of the load.
        t0 = time.perf_counter()
        asyncio.run(_load(base, 10, 5.0, 0.5, keys, _queries(base)))
        warm_up_s = time.perf_counter() - t0
        load_before = load_avg()
        say(f"{args.clients} {args.client} clients for {args.duration:.0f} s ...")
        server_cpu = tree_cpu(proc.pid)
        if args.client == "wrk":
            loaded = _load_wrk(
                base,
                args.clients,
                args.duration,
                args.search_share,
                keys,
                queries,
                work,
                in_order=bool(args.unrepeated),
            )
        else:
            cpu0 = time.process_time()
            loaded = asyncio.run(
                _load(base, args.clients, args.duration, args.search_share, keys, queries)
            )
            loaded["client_cpu_s"] = time.process_time() - cpu0
        server_cpu = tree_cpu(proc.pid) - server_cpu
        requests = sum(loaded[k]["requests"] for k in ("search", "chunk") if k in loaded)
        loaded["server_cpu_s"] = server_cpu
        loaded["server_cpu_ms_per_request"] = 1000 * server_cpu / max(requests, 1)
        loaded["client_cpu_ms_per_request"] = 1000 * loaded["client_cpu_s"] / max(requests, 1)
        loaded["load_avg_before"] = load_before
        loaded["warm_up_s"] = warm_up_s
        loaded["queries"] = "unrepeated" if args.unrepeated else "200 repeated"
        loaded["load_avg_after"] = load_avg()
        say(json.dumps(loaded, indent=1))
        ratio: dict[str, Any] = {}
        if args.repeat:
            say("remote (Zarr view) vs local read of one variable ...")
            ratio = _remote_vs_local(base, env, args.repeat)
            say(json.dumps(ratio, indent=1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    emit(
        "service",
        {
            "clients": args.clients,
            "client": args.client,
            "server_workers": args.server_workers,
            "compressed": args.compressed,
            "chunks_from": args.chunks_from,
            "insitu_from": __import__("insitu").__file__,
            "catalog_from": str(args.catalog_from) if args.catalog_from else None,
            "unrepeated": args.unrepeated,
            "load": loaded,
            "remote_vs_local": ratio,
            "targets": {
                "search_p95_ms<50": loaded.get("search", {}).get("p95", 1e9) < 50,
                "chunk_p95_ms<100": loaded.get("chunk", {}).get("p95", 1e9) < 100,
                "no_errors": not loaded["errors"],
            },
        },
    )


if __name__ == "__main__":
    main()

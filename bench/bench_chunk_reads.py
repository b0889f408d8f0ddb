"""Benchmark: cold chunk reads of the Zarr view's read path, direct chunks against netCDF-C.

What one Zarr chunk GET of a compressed dataset costs in the service's read path
(:class:`insitu.formats.OpenFiles`) when the chunk was not decoded before: every file of the
compressed dataset that ``bench_service.py --compressed`` writes is known first (layouts
read, or netCDF handles opened; not timed), then each file's chunk (all its records, the
whole grid) is read once, by ``--threads`` threads at once. The direct path decodes
without the HDF5 lock; netCDF-C decodes under it. Decoded-slab caches are off, and
netCDF-C's handles are fresh, so nothing is served from memory.

    python bench/bench_chunk_reads.py [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, emit, say
from bench_service import BIG_ID, _big_archive


def _run(paths: list[str], direct: bool, threads: int) -> float:
    from insitu.formats import OpenFiles

    cache = OpenFiles(len(paths) + 1, direct=direct, cache_bytes=0)
    ids = {p: tuple(os.stat(p)[i] for i in (1, 6, 8)) for p in paths}
    try:
        for p in paths:  # known: layout read, or file opened (not timed)
            cache.read(p, ids[p], "tas", (slice(0, 1), slice(0, 1), slice(0, 1)))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda p: cache.read(p, ids[p], "tas", (slice(0, 12),)), paths))
        return time.perf_counter() - t0
    finally:
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big-files", type=int, default=40)
    parser.add_argument("--grid", default="180x360")
    args = parser.parse_args()
    nlat, nlon = (int(x) for x in args.grid.split("x"))
    root = DATA_DIR / "service-zlib" / "big"
    _big_archive(root, args.big_files, nlat, nlon, compressed=True)
    paths = sorted(str(p) for p in (root / BIG_ID.replace(".", "/")).glob("*.nc"))
    mb = len(paths) * 12 * nlat * nlon * 4 / 1e6
    best: dict[str, float] = {"direct": float("inf"), "netcdf": float("inf")}
    for _ in range(args.repeat):  # interleaved
        for name in best:
            best[name] = min(best[name], _run(paths, name == "direct", args.threads))
    out: dict[str, Any] = {"chunks": len(paths), "mb": mb, "threads": args.threads}
    for name, seconds in best.items():
        out[name] = {"chunks_per_s": len(paths) / seconds, "mb_per_s": mb / seconds}
    out["direct_over_netcdf"] = best["netcdf"] / best["direct"]
    say(out)
    emit("chunk_reads", out)


if __name__ == "__main__":
    main()

"""Decoding one compressed file step by step: netCDF-C, the direct reader, and each of its steps
against the libraries that could do it (zlib, ISA-L, zlib-ng; numcodecs, NumPy).

    python bench/bench_decode.py [--gb 1] [--files 20] [--rounds 5]

The files are the first ``--files`` of the compute benchmark's compressed archive
(``compute_archive.py``, generated on first use: one-year files of 12 records of 360x720
float32, one zlib level 4 + shuffle chunk per record, as CMOR writes them). Every step runs
over all the files, in rounds whose order rotates, in one process; the figure is its CPU
time per file (``time.process_time``), median over the rounds. The inputs of a step are
made before it is timed (the stored chunks for an inflate, the inflated chunks for an
unshuffle, the records for a sum). The whole run is made twice, each in a new process:
with the malloc settings insitu's Dask workers get (``WORKER_ENV``) and with glibc's
defaults (what the data service's processes have). Steps:

* ``netcdf4``: ``netCDF4`` ``var[:]`` with auto mask and scale off (netCDF-C, system zlib);
* ``direct``: insitu's direct reader, ``formats.netcdf.direct.read_direct`` (chunk index,
  ``pread``, ISA-L, the C unshuffle); ``direct_sum``: the same with the float64 time sum
  made while unshuffling (``read_records(..., total)``), what a time mean reads with;
* ``index``: the chunk index alone (``layout.layout``: h5py's ``chunk_iter``); ``pread``: the
  12 chunks' bytes;
* ``inflate_zlib`` / ``inflate_isal`` / ``inflate_zlib_ng``: Python's ``zlib`` (the system's),
  ISA-L (``isal.isal_zlib``, insitu's) and zlib-ng (PyPI ``zlib-ng``, measured if installed);
* ``unshuffle_c`` / ``unshuffle_numcodecs`` / ``unshuffle_numpy``: insitu's C loop, numcodecs'
  ``Shuffle``, NumPy's transpose (insitu's fallback);
* ``sum_add_reduce`` / ``sum_by_record``: a float64 time sum of the 12 records decoded,
  ``np.add.reduce(axis=0, dtype=float64)`` against record by record ``np.add(..., out=)``;
  ``unshuffle_sum_c``: the C unshuffle with that sum made in the same pass;
* ``zlib_numcodecs`` / ``isal_numcodecs`` / ``zlib_ng_numcodecs``: index, ``pread``, the
  inflate, numcodecs' unshuffle: a whole read with each inflate (the measurement that chose
  ISA-L).

Every decoded file is checked against netCDF-C's values, and every unshuffle and sum
against the others. Prints a table on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import compute_archive as archive  # noqa: E402
from _common import code_info, emit, load_avg, say  # noqa: E402

VAR = "tas"


def _inflaters() -> dict[str, Callable[[bytes], bytes]]:
    from isal import isal_zlib

    out: dict[str, Callable[[bytes], bytes]] = {
        "zlib": zlib.decompress,
        "isal": isal_zlib.decompress,
    }
    try:
        from zlib_ng import zlib_ng

        out["zlib_ng"] = zlib_ng.decompress
    except ImportError:
        say("[decode] zlib-ng not installed (pip install zlib-ng): its steps are left out")
    return out


def child(files: list[str], rounds: int) -> dict[str, Any]:
    import netCDF4
    import numcodecs
    import numpy as np

    from insitu.formats.netcdf import unshuffle
    from insitu.formats.netcdf.direct import read_direct, read_records
    from insitu.formats.netcdf.layout import layout

    shuffle = numcodecs.Shuffle(elementsize=4)
    inflaters = _inflaters()

    def netcdf4(path: str) -> Any:
        with netCDF4.Dataset(path) as nc:
            v = nc.variables[VAR]
            v.set_auto_maskandscale(False)
            return v[:]

    # The inputs of each step, made before the timing; and the reference values.
    layouts = {f: layout(f, VAR) for f in files}
    stored = {}
    for f, lay in layouts.items():
        with open(f, "rb") as fh:
            stored[f] = [os.pread(fh.fileno(), c.size, c.address) for c in lay.chunks]
    inflated = {f: [zlib.decompress(b) for b in chunks] for f, chunks in stored.items()}
    reference = {f: netcdf4(f) for f in files}
    records = {f: reference[f].astype(np.float32) for f in files}
    shape = reference[files[0]].shape

    def pread(f: str) -> None:
        with open(f, "rb") as fh:
            for c in layouts[f].chunks:
                os.pread(fh.fileno(), c.size, c.address)

    def unshuffled(f: str, how: Callable[[bytes, Any], None]) -> Any:
        out = np.empty(shape, np.float32)
        for i, chunk in enumerate(inflated[f]):
            how(chunk, out[i])
        return out

    def c_unshuffle(f: str) -> Any:
        return unshuffled(f, lambda b, dest: unshuffle.unshuffle(b, dest, 4))

    def numcodecs_unshuffle(f: str) -> Any:
        return unshuffled(f, lambda b, dest: shuffle.decode(b, out=dest))

    def numpy_unshuffle(f: str) -> Any:
        return unshuffled(f, lambda b, dest: unshuffle.numpy_unshuffle(b, dest, 4))

    def unshuffle_sum_c(f: str) -> Any:
        out, total = np.empty(shape, np.float32), np.empty(shape[1:], np.float64)
        unshuffle.unshuffle_sum(inflated[f], out, 4, total)
        return total

    def sum_add_reduce(f: str) -> Any:
        return np.add.reduce(records[f], axis=0, dtype=np.float64)

    def sum_by_record(f: str) -> Any:
        total = records[f][0].astype(np.float64)
        for r in records[f][1:]:
            np.add(total, r, out=total)
        return total

    def direct_sum(f: str) -> Any:
        lay = layout(f, VAR)
        fd = os.open(f, os.O_RDONLY)
        try:
            total = np.empty(shape[1:], np.float64)
            read_records(lay, fd, 0, shape[0], total)
            return total
        finally:
            os.close(fd)

    def inflate_all(inflate: Callable[[bytes], bytes]) -> Callable[[str], Any]:
        return lambda f: [inflate(b) for b in stored[f]]

    def whole(inflate: Callable[[bytes], bytes]) -> Callable[[str], Any]:
        def read(f: str) -> Any:
            lay = layout(f, VAR)
            out = np.empty(shape, np.float32)
            with open(f, "rb") as fh:
                for i, c in enumerate(lay.chunks):
                    shuffle.decode(inflate(os.pread(fh.fileno(), c.size, c.address)), out=out[i])
            return out

        return read

    steps: dict[str, Callable[[str], Any]] = {
        "netcdf4": netcdf4,
        "direct": lambda f: read_direct(f, VAR, 0, shape[0]),
        "direct_sum": direct_sum,
        "index": lambda f: layout(f, VAR),
        "pread": pread,
        **{f"inflate_{name}": inflate_all(fn) for name, fn in inflaters.items()},
        "unshuffle_c": c_unshuffle,
        "unshuffle_numcodecs": numcodecs_unshuffle,
        "unshuffle_numpy": numpy_unshuffle,
        "sum_add_reduce": sum_add_reduce,
        "sum_by_record": sum_by_record,
        "unshuffle_sum_c": unshuffle_sum_c,
        **{f"{name}_numcodecs": whole(fn) for name, fn in inflaters.items()},
    }
    # The values, once, untimed: every decode equals netCDF-C's, every sum the others'.
    for f in files:
        for name in ("direct", "unshuffle_c", "unshuffle_numcodecs", "unshuffle_numpy"):
            np.testing.assert_array_equal(steps[name](f), reference[f], err_msg=name)
        for name in [n for n in steps if n.endswith("_numcodecs") and "unshuffle" not in n]:
            np.testing.assert_array_equal(steps[name](f), reference[f], err_msg=name)
        want = sum_by_record(f)
        for name in ("unshuffle_sum_c", "direct_sum"):
            np.testing.assert_array_equal(steps[name](f), want, err_msg=name)
        np.testing.assert_allclose(sum_add_reduce(f), want, rtol=1e-12)
    names = list(steps)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = steps[name]
            t = time.process_time()
            for f in files:
                fn(f)
            cpu[name].append((time.process_time() - t) / len(files) * 1e3)
    return {
        "ms_per_file": {n: statistics.median(v) for n, v in cpu.items()},
        "all_ms_per_file": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    archive.add_args(ap)
    ap.set_defaults(gb=1.0)
    ap.add_argument("--files", type=int, default=20, help="files of the archive (20)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every step (5)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        files = Path(args.child).read_text().split("\n")
        print(json.dumps(child(files, args.rounds)))
        return 0

    from insitu.compute.backend import WORKER_ENV

    man = archive.ensure(archive.params_from(args), args.data_dir, args.gen_workers, log=say)
    variant = man["variants"]["compressed"]
    files = [str(Path(man["root"]) / f["path"]) for f in variant["files"]][: args.files]
    listing = Path(man["root"]) / f"decode-files-{len(files)}.txt"
    listing.write_text("\n".join(files))
    res: dict[str, Any] = {
        "files": len(files),
        "bytes_per_file": os.path.getsize(files[0]),
        "rounds": args.rounds,
        "load_avg_before": load_avg(),
        "code": code_info(),
        "modes": {},
    }
    bare = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    for mode, env in (("worker_env", {**bare, **WORKER_ENV}), ("glibc_defaults", bare)):
        say(f"[decode] {mode}: {len(files)} files, {args.rounds} rounds ...")
        cmd = [sys.executable, __file__, "--child", str(listing), "--rounds", str(args.rounds)]
        out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
        res["modes"][mode] = json.loads(out.stdout.splitlines()[-1])
    res["load_avg_after"] = load_avg()
    modes = list(res["modes"])
    say(f"\n{'CPU ms per file, median':28}" + "".join(f"{m:>16}" for m in modes))
    for step in res["modes"][modes[0]]["ms_per_file"]:
        say(f"{step:28}" + "".join(f"{res['modes'][m]['ms_per_file'][step]:16.2f}" for m in modes))
    emit("decode", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

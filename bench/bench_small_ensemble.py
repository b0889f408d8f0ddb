"""Many small datasets: insitu's multi-model field mean against a shell loop of ``cdo fldmean``.

    python bench/bench_small_ensemble.py                     # demo (42) and synthetic (1,000)
    python bench/bench_small_ensemble.py --sets demo --rounds 5
    python bench/bench_small_ensemble.py --skip insitu_cold_new_cluster

Sets: ``demo``, the README's multi-model field mean over the demo archive (the 42 ``Amon``
``ta`` datasets of esmvaltool-sample-data, 270 files, 21 MB), and ``synthetic``, 1,000
one-file ``Amon`` ``tas`` datasets made by ``small_ensemble.py`` (328 MB, kept in
``bench/data/small/``, git-ignored). Each set has its own insitu home (catalog scanned
beforehand, untimed) and its own cluster of 2 workers started once with ``insitu cluster up
--workers 2`` (as the README does), and runs ``--rounds`` rounds; in each round every peer
runs once, in turn (round-robin), so the machine's noise falls on all of them alike. Peers:

* ``insitu_warm``: ``insitu.compute.run(cat, "field_mean", ids, client=client, cache=False)``
  in this process, connected to the running cluster (the README's Python example; the
  first call is untimed: it pays for first-use imports);
* ``insitu_cold``: a new process, ``insitu compute field_mean --search table_id=Amon --out F
  --no-cache``, which joins the running cluster (imports, catalog, client, compute, write);
* ``insitu_cold_new_cluster``: the same with no cluster running (``INSITU_DATA_DIR`` of an
  empty home pointing at the same catalog): the command starts and stops a local cluster;
* ``cdo_loop``: a bash loop, one ``cdo -s -O fldmean -cat <the dataset's files> out.nc`` per
  dataset (CDO's way for a dataset in several files);
* ``cdo_loop_P2``: the same with ``cdo -P 2`` (two OpenMP threads per operator);
* ``cdo_xargs_P2``: the same commands two at a time (``xargs -P 2``): CDO on both cores.

``--src DIR`` measures the insitu of another source tree (e.g. a worktree of the commit
before a change), with the same peers, for a before/after within one run of each.

Per-dataset cost is the total over the number of datasets. ``max|d|`` compares insitu's
ensemble entry of each dataset with CDO's output (K; CDO weights by the same cell bounds).
Prints a table on stderr and one JSON line on stdout; ``--json-out`` also writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import small_ensemble  # noqa: E402
from _common import code_info, emit, load_avg, median, say  # noqa: E402

PEERS = [
    "insitu_warm",
    "insitu_cold",
    "insitu_cold_new_cluster",
    "cdo_loop",
    "cdo_loop_P2",
    "cdo_xargs_P2",
]
HOME = BENCH / "data" / "small"
INSITU = str(Path(sys.executable).with_name("insitu"))


SRC = REPO / "src"  # the insitu measured; --src names another tree (an older commit's)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["INSITU_DATA_DIR"] = str(home)
    src = str(SRC)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _demo_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("esmvaltool_sample_data")
    assert spec is not None and spec.submodule_search_locations, "pip install '.[demo]'"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "timeseries"


def _catalog(home: Path, name: str, root: Path) -> Any:
    """The set's catalog, its collection added and scanned (incremental after the first)."""
    from insitu.catalog import Catalog
    from insitu.errors import CollectionExists
    from insitu.settings import Settings

    home.mkdir(parents=True, exist_ok=True)
    cat = Catalog(Settings.load(data_dir=home))
    with contextlib.suppress(CollectionExists):
        cat.add_collection(name, root, template="cmip6")
    cat.scan([name], workers=2)
    return cat


def _cdo_commands(cat: Any, ids: list[str], out: Path, threads: int) -> list[list[str]]:
    cdo = shutil.which("cdo") or "cdo"
    p = ["-P", str(threads)] if threads > 1 else []
    return [
        [
            cdo,
            *p,
            "-s",
            "-O",
            "fldmean",
            "-cat",
            *(f.path for f in cat.locate(i)),
            str(out / f"{n}.nc"),
        ]
        for n, i in enumerate(ids)
    ]


def _run_shell(script: str, env: dict[str, str], path: Path) -> float:
    """Run ``script`` (written to ``path`` first: a thousand commands are too long for an
    argument) with bash; its wall time."""
    path.write_text(script + "\n")
    t = time.perf_counter()
    subprocess.run(["bash", str(path)], check=True, env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def _max_diff(ens_path: Path, cdo_out: Path, var: str, ids: list[str]) -> float:
    """Largest difference between insitu's entries and CDO's outputs (rows in order)."""
    import numpy as np
    import xarray as xr

    worst = 0.0
    with xr.open_dataset(ens_path) as ens:
        for n, i in enumerate(ids):
            entry = ens[var].sel(dataset=i)
            with xr.open_dataset(cdo_out / f"{n}.nc", decode_times=False) as c:
                theirs = np.asarray(c[var].values, dtype="float64")
                # insitu sorts levels ascending; CDO keeps the file's order.
                for dim in entry.dims[1:]:
                    if dim in c.coords:
                        entry = entry.sel({dim: c[dim].values}, method="nearest")
            mine = entry.values.reshape(entry.shape[0], -1)
            mine = mine[~np.isnan(mine).all(axis=1)]
            if theirs.size != mine.size:
                continue  # time steps dropped in the alignment: not comparable row by row
            theirs = theirs.reshape(mine.shape)
            # CDO averages netCDF's default fill (9.97e36) where a file declares none.
            d = np.abs(mine.astype("float64") - theirs)[np.abs(theirs) < 1e30]
            if np.isfinite(d).any():
                worst = max(worst, float(np.nanmax(d)))
    return worst


def run_set(name: str, root: Path, rounds: int, peers: list[str], work: Path) -> dict[str, Any]:
    from insitu.compute import cluster, run

    home = HOME / f"home-{name}"
    cat = _catalog(home, name, root)
    ids = cat.search(table_id="Amon", limit=100_000).all_ids
    var = cat.dataset(ids[0]).facets["variable_id"][0]
    n_files = sum(len(cat.locate(i)) for i in ids)
    size = sum(cat.dataset(i).size for i in ids)
    say(f"{name}: {len(ids)} datasets, {n_files} files, {size / 1e6:.1f} MB")
    env = _env(home)
    # A home without a cluster record, on the same catalog: the command starts its own.
    bare = HOME / f"home-{name}-no-cluster"
    bare.mkdir(parents=True, exist_ok=True)
    bare_env = _env(bare)
    bare_env["INSITU_CATALOG__URI"] = cat.settings.catalog_uri
    subprocess.run([INSITU, "cluster", "down"], env=env, capture_output=True)
    subprocess.run([INSITU, "cluster", "up", "--workers", "2"], env=env, check=True)
    times: dict[str, list[float]] = {p: [] for p in peers}
    loads: list[float] = []
    cdo_out = work / f"cdo-{name}"
    ens_path = work / f"ens-{name}.nc"
    try:
        with cluster(cat.settings) as client:
            run(cat, "field_mean", ids, client=client, cache=False)  # first use: untimed
            for r in range(rounds):
                loads.append(load_avg())
                for peer in peers:
                    if peer.startswith("cdo"):
                        shutil.rmtree(cdo_out, ignore_errors=True)
                        cdo_out.mkdir(parents=True)
                    if peer == "insitu_warm":
                        t = time.perf_counter()
                        run(cat, "field_mean", ids, client=client, cache=False, out=ens_path)
                        s = time.perf_counter() - t
                    elif peer in ("insitu_cold", "insitu_cold_new_cluster"):
                        cmd = [INSITU, "compute", "field_mean", "--search", "table_id=Amon"]
                        cmd += ["--out", str(work / f"cold-{name}.nc"), "--no-cache"]
                        t = time.perf_counter()
                        subprocess.run(
                            cmd,
                            env=env if peer == "insitu_cold" else bare_env,
                            check=True,
                            capture_output=True,
                        )
                        s = time.perf_counter() - t
                    else:
                        threads = 2 if peer == "cdo_loop_P2" else 1
                        cmds = _cdo_commands(cat, ids, cdo_out, threads)
                        if peer == "cdo_xargs_P2":
                            listing = work / f"cdo-{name}.args"
                            listing.write_text("\n".join(" ".join(c[1:]) for c in cmds) + "\n")
                            script = f"xargs -P 2 -L 1 {cmds[0][0]} < {listing}"
                        else:
                            script = "\n".join(" ".join(c) for c in cmds)
                        s = _run_shell(script, env, work / f"{peer}-{name}.sh")
                    times[peer].append(s)
                    say(
                        f"  round {r + 1} {peer:24s} {s:8.2f} s "
                        f"{s / len(ids) * 1e3:7.1f} ms/dataset"
                    )
        cdo_ran = any(p.startswith("cdo") for p in peers)
        diff = (
            _max_diff(ens_path, cdo_out, var, ids) if "insitu_warm" in peers and cdo_ran else None
        )
    finally:
        subprocess.run([INSITU, "cluster", "down"], env=env, capture_output=True)
        cat.close()
    out: dict[str, Any] = {
        "datasets": len(ids),
        "files": n_files,
        "bytes": size,
        "load_avg_at_round_start": loads,
        "max_abs_diff_vs_cdo": diff,
        "peers": {},
    }
    for peer, ts in times.items():
        out["peers"][peer] = {
            "runs_s": [round(t, 3) for t in ts],
            "best_s": round(min(ts), 3),
            "median_s": round(median(ts), 3),
            "best_ms_per_dataset": round(min(ts) / len(ids) * 1e3, 2),
            "median_ms_per_dataset": round(median(ts) / len(ids) * 1e3, 2),
        }
    warm = out["peers"].get("insitu_warm")
    if warm:
        out["ratios_median_vs_insitu_warm"] = {
            p: round(v["median_s"] / warm["median_s"], 2) for p, v in out["peers"].items()
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="demo,synthetic", help="demo,synthetic")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every peer (3)")
    ap.add_argument("--datasets", type=int, default=1000, help="synthetic datasets (1000)")
    ap.add_argument("--skip", default="", help="peers to leave out, comma-separated")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--src", type=Path, help="insitu source tree to measure (this checkout's)")
    a = ap.parse_args(argv)
    global SRC  # read by _env for every subprocess
    SRC = (a.src or SRC).resolve()
    sys.path.insert(0, str(SRC))
    skip = set(filter(None, a.skip.split(",")))
    peers = [p for p in PEERS if p not in skip]
    work = HOME / "work"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"code": code_info(), "src": str(SRC), "rounds": a.rounds}
    for name in a.sets.split(","):
        if name == "demo":
            root = _demo_root()
        else:
            nlat, nlon, records = 32, 64, 60
            root = small_ensemble.DEFAULT_DIR / small_ensemble.slug(a.datasets, records, nlat, nlon)
            small_ensemble.generate(root, a.datasets, 50, records, nlat, nlon)
        results[name] = run_set(name, root, a.rounds, peers, work)
    say("")
    say(
        f"{'set':10s} {'peer':24s} {'median s':>9s} {'best s':>8s} {'ms/dataset':>11s} "
        f"{'x warm':>7s}"
    )
    for name in a.sets.split(","):
        r = results[name]
        for peer, v in r["peers"].items():
            ratio = r.get("ratios_median_vs_insitu_warm", {}).get(peer, float("nan"))
            say(
                f"{name:10s} {peer:24s} {v['median_s']:9.2f} {v['best_s']:8.2f} "
                f"{v['median_ms_per_dataset']:11.1f} {ratio:7.2f}"
            )
    if a.json_out:
        a.json_out.parent.mkdir(parents=True, exist_ok=True)
        a.json_out.write_text(json.dumps(results, indent=1))
    emit("small_ensemble", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

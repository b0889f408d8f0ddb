"""Ingest benchmarks (issue 15): throughput raw TDMS -> calibrated product beside a plain
copy and a sha256 of the same bytes, peak memory against input size, detection latency of
``insitu ingest watch``, and catalog search over many shot products. Products are Zarr
stores unless ``--format netcdf4``.

Usage (``make bench-ingest`` runs the defaults)::

    python bench/ingest_bench.py all [--shots 4 --shot-mb 256 --rounds 2]
        [--big-gb 5 --small-gb 0.5] [--latency 5] [--catalog 50000 --queries 200]
        [--format zarr|netcdf4]
    python bench/ingest_bench.py throughput|memory|latency|search [...]

Shots are written with npTDMS's TdmsWriter (a float64 and an int16 channel, both with a
polynomial calibration) and a manifest (sha256, size), as an instrument would. Every
``insitu ingest run`` is a new process on a fresh store, catalog and output folder (the
same bytes would otherwise be duplicates). Peers run in the same round, interleaved, in
rotated order; "cold" rounds first drop the inputs' pages from the page cache
(``posix_fadvise``), "warm" rounds read them once before. Peak RSS is the child's
``ru_maxrss`` (``os.wait4``); it counts the forked bench's pages before ``exec`` too (about
110 MiB), so it means something only above that (the ingest's, not cp's or sha256sum's).
Everything is written under ``--data-dir`` and removed at the end unless ``--keep``. Prints
one JSON line (``_common.emit``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

GROUP = "DAQ"
CALIBRATIONS = """\
id: probe_current/probe-A
version: 1
valid_from: 2026-01-01T00:00:00Z
input: {units: V}
output: {units: mA, long_name: Probe current}
kind: polynomial
coefficients: [0.05, 2.0, 0.01]
---
id: coil_field/coil-1
version: 1
valid_from: 2026-01-01T00:00:00Z
input: {units: count}
output: {units: T, long_name: Coil field}
kind: polynomial
coefficients: [0.0, 0.0003, 1.0e-9]
"""
CHANNELS = {f"{GROUP}/Probe_I": "probe_current", f"{GROUP}/Coil_B": "coil_field"}
_SEG = 4 << 20  # samples per channel and TDMS segment: 40 MB (8 + 2 bytes a sample)
MB = 1e6


# -- raw shots -------------------------------------------------------------------------------


def write_shot(path: Path, shot: str, nbytes: int, operator: str = "alice") -> int:
    """A TDMS shot of about ``nbytes`` (float64 + int16 channels, 40 MB segments), then its
    manifest (written last, as an instrument does). Returns the file's size."""
    from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

    samples = max(1000, nbytes // 10)
    rng = np.random.default_rng(int(shot) % 2**32)
    base_f = rng.normal(0, 3, min(samples, _SEG))
    base_i = rng.integers(-30000, 30000, min(samples, _SEG), dtype=np.int16)
    wf = {"wf_increment": 1e-6, "wf_start_offset": 0.0, "unit_string": "V"}
    root = {"shot_id": shot, "acquired_at": "2026-03-02T10:00:00Z", "operator": operator}
    h = hashlib.sha256()
    with TdmsWriter(str(path)) as writer:
        done = 0
        while done < samples:
            n = min(_SEG, samples - done)
            head: list[Any] = [RootObject(root), GroupObject(GROUP)] if done == 0 else []
            writer.write_segment(
                [
                    *head,
                    ChannelObject(GROUP, "Probe_I", base_f[:n] + done, properties=wf),
                    ChannelObject(
                        GROUP, "Coil_B", base_i[:n], properties=wf | {"unit_string": "count"}
                    ),
                ]
            )
            done += n
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    size = path.stat().st_size
    part = path.with_name("." + path.name + ".manifest.part")
    part.write_text(json.dumps({"sha256": h.hexdigest(), "size": size, "shot_id": shot}))
    part.replace(path.with_name(path.name + ".manifest.json"))
    return size


FORMAT = "zarr"  # the products' format (--format): "zarr" or "netcdf4"


def lab_config(lab: Path, inbox: Path, stable: float = 0.0, name: str = "lab") -> dict[str, str]:
    """A fresh data dir (store, products, catalog) under ``lab`` and its settings file; the
    environment that makes ``insitu`` read it."""
    lab.mkdir(parents=True, exist_ok=True)
    (lab / "calibrations.yaml").write_text(CALIBRATIONS)
    lines = [
        f'data_dir = "{lab}"',
        "[catalog]",
        f'uri = "sqlite:///{lab / "catalog.db"}"',
        f"[ingest.pipelines.{name}]",
        f'source = "{inbox}"',
        'parser = "tdms"',
        f'calibrations = "{lab / "calibrations.yaml"}"',
        f"stable_seconds = {stable}",
        f'output = "{lab / "products"}"',
        f'product_format = "{FORMAT}"',
        f"[ingest.pipelines.{name}.channels]",
        *(f'"{k}" = "{v}"' for k, v in CHANNELS.items()),
    ]
    (lab / "insitu.toml").write_text("\n".join(lines) + "\n")
    return {**os.environ, "INSITU_CONFIG": str(lab / "insitu.toml")}


def settings_of(lab: Path) -> Any:
    from insitu.settings import Settings

    return Settings.load(lab / "insitu.toml")


def child(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> dict[str, float]:
    """Run ``cmd`` as a new process: wall seconds, its CPU seconds and peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, **kw)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}")
    return {"s": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


INSITU = [sys.executable, "-m", "insitu.cli"]


def products(folder: Path) -> list[Path]:
    """The products under ``folder`` (Zarr stores or NetCDF-4 files, by the shots template)."""
    return sorted(folder.glob("*/v*/*_v*"))


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file of a Zarr store."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def read_all(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 22):
                pass


# -- throughput ------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    src = c.fresh_dir(root / "tp-src")
    shots = [src / f"shot_{5000 + i}.tdms" for i in range(args.shots)]
    total = sum(write_shot(p, str(5000 + i), int(args.shot_mb * MB)) for i, p in enumerate(shots))
    c.say(f"throughput: {len(shots)} shots, {total / MB:.0f} MB")
    inputs = shots + [p.with_name(p.name + ".manifest.json") for p in shots]

    def ingest() -> dict[str, float]:
        lab = c.fresh_dir(root / "tp-lab")
        inbox = c.fresh_dir(root / "tp-inbox")
        for p in inputs:  # hard links: the same inode (and cached pages) as src/
            os.link(p, inbox / p.name)
        env = lab_config(lab, inbox)
        out = child([*INSITU, "ingest", "run", "lab", "--no-progress"], env)
        made = products(lab / "products")
        assert len(made) == len(shots), made
        out["product_mb"] = sum(size_of(p) for p in made) / MB
        shutil.rmtree(lab)
        shutil.rmtree(inbox)
        return out

    def copy() -> dict[str, float]:
        dst = c.fresh_dir(root / "tp-copy")
        out = child(["cp", *map(str, shots), str(dst)])
        shutil.rmtree(dst)
        return out

    def sha() -> dict[str, float]:
        return child(["sha256sum", *map(str, shots)])

    peers = {"ingest": ingest, "cp": copy, "sha256sum": sha}
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for mode in ("cold", "warm"):
            names = list(peers)
            k = (2 * r + (mode == "warm")) % len(names)
            for name in names[k:] + names[:k]:
                if mode == "cold":
                    c.evict_page_cache(shots)
                else:
                    read_all(shots)
                load = c.load_avg()
                got = peers[name]()
                got.update(round=r, mode=mode, peer=name, load=load, mb_s=total / MB / got["s"])
                c.say(f"  round {r} {mode:4} {name:9} {got['s']:7.2f} s {got['mb_s']:7.1f} MB/s")
                rows.append(got)
    summary: dict[str, Any] = {}
    for mode in ("cold", "warm"):
        for r in range(args.rounds):
            by = {x["peer"]: x for x in rows if x["mode"] == mode and x["round"] == r}
            summary.setdefault(mode, []).append(
                {
                    "ingest_mb_s": by["ingest"]["mb_s"],
                    "cp_mb_s": by["cp"]["mb_s"],
                    "sha256sum_mb_s": by["sha256sum"]["mb_s"],
                    "ingest_time_over_cp": by["ingest"]["s"] / by["cp"]["s"],
                    "ingest_time_over_sha256sum": by["ingest"]["s"] / by["sha256sum"]["s"],
                    "ingest_cpu_s": by["ingest"]["cpu"],
                    "ingest_rss_mb": by["ingest"]["rss_mb"],
                }
            )
    shutil.rmtree(src)
    return {"input_mb": total / MB, "shots": len(shots), "rows": rows, "summary": summary}


# -- peak memory -----------------------------------------------------------------------------


def memory(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    free = shutil.disk_usage(root).free
    # the shot, its raw copy and its product (at most the same size again), 10% slack
    big, note = args.big_gb, ""
    fits = free / 3.3 / 1e9
    if big > fits:
        big, note = round(fits, 1), f"{args.big_gb} GB did not fit ({free / 1e9:.0f} GB free)"
    out: dict[str, Any] = {"note": note, "free_gb": free / 1e9, "runs": []}
    for gb in (args.small_gb, big):
        inbox = c.fresh_dir(root / "mem-inbox")
        lab = c.fresh_dir(root / "mem-lab")
        path = inbox / "shot_7000.tdms"
        t0 = time.perf_counter()
        size = write_shot(path, "7000", int(gb * 1e9))
        c.say(f"memory: wrote {size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s")
        env = lab_config(lab, inbox)
        load = c.load_avg()
        got = child([*INSITU, "ingest", "run", "lab", "--no-progress"], env)
        got.update(input_gb=size / 1e9, load=load, mb_s=size / MB / got["s"])
        c.say(f"  {size / 1e9:.2f} GB: peak RSS {got['rss_mb']:.0f} MiB, {got['s']:.0f} s")
        out["runs"].append(got)
        shutil.rmtree(inbox)
        shutil.rmtree(lab)
    return out


# -- detection latency -----------------------------------------------------------------------


def latency(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from insitu.catalog import Catalog

    stable = 2.0
    inbox = c.fresh_dir(root / "lat-inbox")
    stage = c.fresh_dir(root / "lat-stage")
    lab = c.fresh_dir(root / "lat-lab")
    env = lab_config(lab, inbox, stable=stable)
    settings = settings_of(lab)
    proc = subprocess.Popen(
        [*INSITU, "ingest", "watch", "lab"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "watching" in line, line

    def seen(shot: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with Catalog(settings) as cat:
                try:
                    if cat.search(collection="lab", shot_id=shot).total:
                        return time.time()
                except LookupError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"shot {shot} not in the catalog after {timeout} s")

    rows: list[dict[str, Any]] = []
    try:
        for i in range(args.latency):
            for kind in ("manifest", "stable"):
                shot = str(9000 + 2 * i + (kind == "stable"))
                staged = stage / f"shot_{shot}.tdms"
                write_shot(staged, shot, int(args.latency_mb * MB))
                if kind == "manifest":
                    os.replace(staged, inbox / staged.name)
                    man = staged.with_name(staged.name + ".manifest.json")
                    t0 = time.time()
                    os.replace(man, inbox / man.name)
                else:
                    staged.with_name(staged.name + ".manifest.json").unlink()
                    os.replace(staged, inbox / staged.name)
                    t0 = (inbox / staged.name).stat().st_mtime  # its last write
                took = seen(shot) - t0
                c.say(f"latency: {kind:8} {took:.2f} s")
                rows.append({"kind": kind, "s": took})
    finally:
        proc.terminate()
        said = proc.communicate(timeout=60)[0]
        c.say(said[-2000:])
    shutil.rmtree(inbox)
    shutil.rmtree(stage)
    shutil.rmtree(lab)
    out: dict[str, Any] = {"stable_seconds": stable, "rows": rows}
    for kind in ("manifest", "stable"):
        vals = [r["s"] for r in rows if r["kind"] == kind]
        out[kind] = {"n": len(vals), "median": c.median(vals), "max": max(vals)}
    return out


# -- search over many shots ------------------------------------------------------------------


def search(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Real products of the real pipeline (10 tiny shots, 10 operators), copied under
    ``shots``-template paths of ``--catalog`` shot ids, registered by the catalog's scan."""
    from insitu.catalog import Catalog
    from insitu.ingest import Pipeline

    lab = c.fresh_dir(root / "search-lab")
    inbox = c.fresh_dir(root / "search-inbox")
    lab_config(lab, inbox)
    settings = settings_of(lab)
    operators = [f"op{k}" for k in range(10)]
    for k, op in enumerate(operators):
        write_shot(inbox / f"t{k}.tdms", str(k), 10_000, operator=op)
    with Pipeline("lab", settings) as p:
        assert p.run(register=False).ok
    templates = products(lab / "products")
    many = lab / "many"
    t0 = time.perf_counter()
    for i in range(args.catalog):
        shot = f"{100000 + i}"
        d = many / shot / "v1"
        d.mkdir(parents=True)
        source = templates[i % len(templates)]
        target = d / f"{shot}_v1{source.suffix}"  # no links: one inode is one file to the scan
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    made_s = time.perf_counter() - t0
    with Catalog(settings) as cat:
        cat.add_collection("many", many, template="shots")
        t0 = time.perf_counter()
        cat.scan("many", progress=False)
        scan_s = time.perf_counter() - t0
        total = cat.search(collection="many", limit=1).total
        c.say(f"search: {total} datasets (links {made_s:.0f} s, scan {scan_s:.0f} s)")
        facets = sorted(cat.search(collection="many", limit=1).facet_counts)
    rng = np.random.default_rng(0)
    shot_ids = [str(100000 + int(x)) for x in rng.integers(0, args.catalog, args.queries)]
    queries: dict[str, Any] = {
        "shot_id": lambda cat, s: cat.search(collection="many", shot_id=s),
        "facet": lambda cat, s: cat.search(
            collection="many", shot_id=s[:4] + "*", limit=10, facets=facets
        ),
    }
    warm: dict[str, Any] = {}
    with Catalog(settings) as cat:
        times: dict[str, list[float]] = {k: [] for k in queries}
        hits: dict[str, int] = {}
        for s in shot_ids:  # interleaved
            for k, q in queries.items():
                t, res = c.timed(lambda q=q, s=s: q(cat, s))
                times[k].append(t * 1000)
                hits[k] = res.total
        for k, v in times.items():
            warm[k] = {**c.percentiles(v, (50, 95, 99)), "n": len(v), "last_hits": hits[k]}
    cold = []
    for k in queries:
        code = (
            "import sys,time;t0=time.perf_counter();sys.path.insert(0,'bench');"
            "from insitu.catalog import Catalog;"
            "from insitu.settings import Settings;"
            f"cat=Catalog(Settings.load({str(lab / 'insitu.toml')!r}));t1=time.perf_counter();"
            + (
                f"r=cat.search(collection='many',shot_id='{shot_ids[0]}')"
                if k == "shot_id"
                else f"r=cat.search(collection='many',shot_id='{shot_ids[0][:4]}*',limit=10,"
                f"facets={facets!r})"
            )
            + ";t2=time.perf_counter();print(r.total,(t2-t1)*1000,(t2-t0)*1000)"
        )
        env = {**os.environ, "INSITU_CONFIG": str(lab / "insitu.toml")}
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        hits_s, first_ms, since_import_ms = res.stdout.split()
        cold.append(
            {
                "query": k,
                "hits": int(hits_s),
                "first_query_ms": float(first_ms),
                "import_open_query_ms": float(since_import_ms),
                "process_s": wall,
            }
        )
    shutil.rmtree(lab)
    shutil.rmtree(inbox)
    return {
        "datasets": total,
        "facets": facets,
        "register": "10 tiny pipeline products copied to N shots-template paths, catalog scan",
        "link_s": made_s,
        "scan_s": scan_s,
        "scan_files_s": args.catalog / scan_s,
        "warm_ms": warm,
        "cold": cold,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["all", "throughput", "memory", "latency", "search"])
    ap.add_argument("--data-dir", type=Path, default=c.DATA_DIR / "ingest")
    ap.add_argument("--shots", type=int, default=4, help="throughput: shots")
    ap.add_argument("--shot-mb", type=float, default=256, help="throughput: MB a shot")
    ap.add_argument("--rounds", type=int, default=2, help="throughput: rounds (cold+warm)")
    ap.add_argument("--big-gb", type=float, default=5.0, help="memory: the large shot")
    ap.add_argument("--small-gb", type=float, default=0.5, help="memory: the small shot")
    ap.add_argument("--latency", type=int, default=5, help="latency: files of each kind")
    ap.add_argument("--latency-mb", type=float, default=4, help="latency: MB a file")
    ap.add_argument("--catalog", type=int, default=50_000, help="search: shots")
    ap.add_argument("--queries", type=int, default=200, help="search: queries of each kind")
    ap.add_argument(
        "--format", choices=["zarr", "netcdf4"], default="zarr", help="the products' format"
    )
    ap.add_argument("--keep", action="store_true", help="keep --data-dir afterwards")
    args = ap.parse_args()
    global FORMAT
    FORMAT = args.format
    root = args.data_dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    results["code"] = c.code_info()
    parts = {"throughput": throughput, "memory": memory, "latency": latency, "search": search}
    loads = [c.load_avg()]
    try:
        for name, fn in parts.items():
            if args.what in ("all", name):
                results[name] = fn(args, root)
                loads.append(c.load_avg())
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["load_avg_1min"] = loads
    c.emit("ingest", results)


if __name__ == "__main__":
    main()

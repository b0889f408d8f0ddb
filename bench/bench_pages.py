"""Benchmark: the dataset page of a big dataset, its map and its field-mean series.

The dataset is the compressed variant of the compute benchmarks' archive
(``compute_archive.py``, generated on first use: 5 GB decoded by default, about 2 GB on
disk as CMOR writes it, 402 one-year files of 360x720 monthly ``tas``). The script scans
it into a catalog of its own under ``--work`` (git-ignored), starts ``insitu serve`` as
its own process, and times over HTTP, as a browser asks:

* the dataset page (first request of the server once it is idle after its start: cold;
  then warm, median of ``--repeat``);
* the map of one time step: cold (first in the server), warm for time steps not drawn
  before (a PNG-cache miss: read and render), and a PNG-cache hit;
* with the CPU time of the server's process tree per request (its job cluster included),
  steadier than the time on a shared machine;
* the field-mean series as a browser asks for it the first time: a new server (idle after
  its start), the dataset page, then at once ``series.png``, whose first request answers
  202 and starts a server-side job; the figure is the time until it answers 200 (polled
  every 0.25 s, as the page's script does every second; also counted from the page's
  request), with no result in the results cache (cold: the script removes the field_mean
  results of this catalog, and the PNGs kept beside them, first), then again (a PNG-cache
  hit), and after a restart of the server (a results-cache hit, PNG cache empty).

    python bench/bench_pages.py [--gb 5] [--repeat 5] [--archive-dir DIR]

``--archive-dir`` reuses an archive generated elsewhere (the compute benchmarks'). With
``PYTHONPATH=BASE/src`` the server runs another checkout's code (the code before: the
series answers 413, and the script stops there).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compute_archive as archive
from _common import DATA_DIR, emit, load_avg, say, tree_cpu
from bench_service import _free_port, _start


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _timed(url: str, expect: int = 200) -> float:
    t0 = time.perf_counter()
    status, body, _ = _get(url)
    seconds = time.perf_counter() - t0
    if status != expect:
        raise RuntimeError(f"GET {url}: {status}, expected {expect}: {body[:300]!r}")
    return seconds


def _series(url: str) -> tuple[float, int, str | None]:
    """Seconds until the series answers 200, how many 202 answers came before, and the
    path of the job that computed it."""
    t0 = time.perf_counter()
    pending = 0
    job = None
    while True:
        status, body, _ = _get(url)
        if status == 200:
            return time.perf_counter() - t0, pending, job
        if status == 413:  # the code before issue 17 (PYTHONPATH=BASE/src): refused
            return float("nan"), 0, None
        if status != 202:
            raise RuntimeError(f"GET {url}: {status}: {body[:300]!r}")
        job = json.loads(body)["job"]["links"]["self"]
        pending += 1
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("the series was not ready within 600 s")
        time.sleep(0.25)


def _prepare(work: Path, root: Path) -> tuple[dict[str, str], str]:
    from insitu.catalog import Catalog
    from insitu.errors import CollectionExists
    from insitu.settings import Settings

    (work / "none.toml").write_text("")
    env = {
        "INSITU_DATA_DIR": str(work / "state"),
        "INSITU_CATALOG__URI": f"sqlite:///{work / 'catalog.db'}",
        "INSITU_CONFIG": str(work / "none.toml"),
    }
    settings = Settings.load(data_dir=work / "state", catalog={"uri": env["INSITU_CATALOG__URI"]})
    with Catalog(settings) as cat:
        with contextlib.suppress(CollectionExists):
            cat.add_collection("big", root, public=True)
        t0 = time.perf_counter()
        cat.scan(workers=2)
        say(f"[pages] catalog up to date in {time.perf_counter() - t0:.1f} s")
        (record,) = cat.store.datasets("big")
        return env, record.dataset_id


class _Cpu:
    """CPU seconds of the server's process tree (its job cluster too) over a section: on a
    shared machine steadier than the time of a request."""

    def __init__(self, pid: int) -> None:
        self.pid, self.t0 = pid, 0.0

    def start(self) -> None:
        self.t0 = tree_cpu(self.pid)

    def settle(self, most: float = 20.0) -> float:
        """Wait until the server is idle (less than 5% of a core over half a second: it
        imports what its first quicklook needs in the background after a start), as a
        service is when its first user comes; how long that took."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < most:
            self.start()
            time.sleep(0.5)
            if self.per(1) < 0.025:
                break
        return time.perf_counter() - t0

    def per(self, n: int) -> float:
        return (tree_cpu(self.pid) - self.t0) / n


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=5.0, help="decoded GB of the dataset (5)")
    ap.add_argument("--archive-dir", type=Path, default=archive.DEFAULT_DIR)
    ap.add_argument("--work", type=Path, default=DATA_DIR / "pages")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--server-workers", type=int, default=1)
    args = ap.parse_args(argv)

    params = archive.Params(
        gb=args.gb,
        variable="tas",
        nlat=360,
        nlon=720,
        nlev=1,
        years_per_file=1,
        uncompressed_layout="chunked",
        seed=1,
    )
    man = archive.ensure(params, args.archive_dir)
    root = Path(man["variants"]["compressed"]["root"])
    work = args.work.resolve() / params.slug
    work.mkdir(parents=True, exist_ok=True)
    env, dataset_id = _prepare(work, root)
    for old in (work / "state" / "results").glob("field_mean-*"):
        old.unlink()  # the series' first request must compute (and draw)
    api = f"/api/v1/datasets/{dataset_id}/quicklook"
    out: dict[str, Any] = {
        "dataset_id": dataset_id,
        "decoded_gb": man["uncompressed_bytes"] / 1e9,
        "disk_gb": man["variants"]["compressed"]["disk_bytes"] / 1e9,
        "files": man["variants"]["compressed"]["n_files"],
        "load_avg_before": load_avg(),
        "server_src": os.environ.get("PYTHONPATH", "(installed)"),
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    years = [1850 + (i * 37) % params.years for i in range(1, args.repeat + 1)]
    page = f"{base}/datasets/{dataset_id}"
    series = f"{base}{api}/series.png?variable=tas&mean=field"  # as the page asks
    proc = _start(env, port, args.server_workers)
    try:
        cpu = _Cpu(proc.pid)
        out["settle_s"] = cpu.settle()
        out["page_cold_s"] = _timed(page)
        cpu.settle()  # the page may start the jobs' cluster in the background
        cpu.start()
        pages = [_timed(page) for _ in range(args.repeat)]
        out["page_warm_s"], out["page_warm_cpu_s"] = _median(pages), cpu.per(len(pages))
        out["map_cold_s"] = _timed(f"{base}{api}/map.png?time=1850-01")
        cpu.start()
        maps = [_timed(f"{base}{api}/map.png?time={y}-07") for y in years]
        out["map_warm_miss_s"], out["map_warm_miss_cpu_s"] = _median(maps), cpu.per(len(maps))
        out["map_warm_hit_s"] = _median(
            [_timed(f"{base}{api}/map.png?time=1850-01") for _ in range(args.repeat)]
        )
    finally:
        proc.terminate()
        proc.wait(30)
    proc = _start(env, port, args.server_workers)  # the series as a first visit asks for it
    try:
        cpu = _Cpu(proc.pid)
        cpu.settle()
        cpu.start()
        t0 = time.perf_counter()
        out["page_first_s"] = _timed(page)
        out["series_cold_s"], out["series_cold_polls"], job = _series(series)
        out["page_and_series_cold_s"] = time.perf_counter() - t0
        out["series_cold_cpu_s"] = cpu.per(1)  # the server, its job cluster, their start
        if job is not None:  # the job's own times: queued, and running (cluster start too)
            done = json.loads(_get(f"{base}{job}")[1])
            out["series_job"] = {k: done[k] for k in ("status", "queued_seconds", "run_seconds")}
        if out["series_cold_s"] != out["series_cold_s"]:  # NaN: refused
            out["series"] = "413"
            return _finish(out)
        out["series_warm_hit_s"] = _median([_timed(series) for _ in range(args.repeat)])
        out["page_after_series_s"] = _median([_timed(page) for _ in range(args.repeat)])
        say(json.dumps(out))
    finally:
        proc.terminate()
        proc.wait(30)
    proc = _start(env, port, args.server_workers)
    try:
        _Cpu(proc.pid).settle()
        # A results-cache hit, the PNG cache in memory empty (the PNG kept beside the result,
        # where the code keeps one).
        out["series_restarted_s"] = _timed(series)
        out["page_restarted_s"] = _timed(page)
    finally:
        proc.terminate()
        proc.wait(30)
    return _finish(out)


def _finish(out: dict[str, Any]) -> int:
    out["load_avg_after"] = load_avg()
    say(json.dumps(out, indent=1))
    emit("pages", out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

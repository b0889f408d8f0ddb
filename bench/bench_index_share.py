"""Benchmark: the search index saved in the data directory and shared by server processes.

On a copy of bench_search's catalog (100,000 datasets, 1,000,000 files), in fresh
processes as ``insitu serve --workers N`` starts them, interleaved over ``--rounds``:

- first ``Catalog.index()`` of a process: built privately (nothing saved: a data directory
  that cannot be written), built and saved (the first process), loaded (any later one);
- memory of two processes that each hold the index and ran the same searches: RSS and PSS
  (``/proc/PID/smaps_rollup``: shared pages counted once between the two), both building
  their own (before), both loading the saved index (a restart), and started at once (one
  builds and saves while the other waits for it, then loads);
- after a change (one dataset rewritten): the index brought up to date and saved by one
  process, then loaded by the next; and updated privately;
- the projection to 1,000,000 datasets: saved bytes per dataset and what each process adds;
- and measured at ``--synthetic`` datasets (1,000,000; no store: index rows made up as
  bench_search's, the index built and saved here): save and load seconds, and two
  processes holding it mapped against two holding their own copy (as a build leaves it),
  each after the same facet searches (``SearchIndex.select``; free text needs a store).

    python bench/bench_index_share.py [--source DB] [--rounds 3] [--searches 50] [--reuse]
                                      [--synthetic 1000000]

``--source`` (default: bench_search's catalog, ``bench/data/search/catalog-100000-1000000.db``)
is copied, never changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, code_info, emit, load_avg, say, timed

BENCH = Path(__file__).resolve().parent
UNWRITABLE = "/dev/null/insitu"  # a data directory that cannot be made: nothing saved
PROJECT_TO = 1_000_000

# One server process: opens the catalog, then answers commands on stdin with JSON lines.
_WORKER = """
import json, sys, time
sys.path.insert(0, {bench!r})
from bench_search import random_queries
from insitu.catalog import Catalog
from insitu.settings import Settings

cat = Catalog(Settings.load(data_dir=sys.argv[1], catalog={{"uri": {uri!r}}}))
cat.collections()
print(json.dumps({{"ready": True}}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "index":
        c0, t0 = time.process_time(), time.perf_counter()
        index = cat.index()
        print(json.dumps({{"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "n": index.n, "generation": index.generation,
            "mapped": not index.rows.flags.writeable}}), flush=True)
    elif cmd == "search":
        c0, t0 = time.process_time(), time.perf_counter()
        totals = [cat.search(**q).total for q in random_queries({searches})]
        print(json.dumps({{"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "totals": totals}}), flush=True)
    else:
        break
"""


class Worker:
    """A process holding a Catalog on the bench store."""

    def __init__(self, db: Path, data_dir: str, searches: int) -> None:
        code = _WORKER.format(bench=str(BENCH), uri=f"sqlite:///{db}", searches=searches)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, data_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.ask_nothing()

    def ask_nothing(self) -> dict[str, Any]:
        return self._answer()

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} ended: {self.proc.wait()}")
        return dict(json.loads(line))

    def ask(self, cmd: str) -> dict[str, Any]:
        self.send(cmd)
        return self._answer()

    def memory(self) -> dict[str, float]:
        """MiB from smaps_rollup: Rss, Pss, Private (clean + dirty), Shared (clean + dirty)."""
        fields: dict[str, float] = {}
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
        return {
            "rss_mb": fields["Rss"],
            "pss_mb": fields["Pss"],
            "private_mb": fields["Private_Clean"] + fields["Private_Dirty"],
            "shared_mb": fields["Shared_Clean"] + fields["Shared_Dirty"],
        }

    def close(self) -> None:
        self.send("quit")
        self.proc.wait(timeout=60)


def first_index(db: Path, data_dir: str, searches: int) -> dict[str, Any]:
    """A new process's first index(): seconds, CPU seconds, whether the arrays are mapped."""
    w = Worker(db, data_dir, searches)
    try:
        return w.ask("index")
    finally:
        w.close()


def pair_memory(db: Path, data_dirs: tuple[str, str], searches: int) -> dict[str, Any]:
    """Two processes started at once, each asked for the index at once, then the same
    searches: their memory before the index, after it, after the searches."""
    ws = [Worker(db, d, searches) for d in data_dirs]
    try:
        before = [w.memory() for w in ws]
        for w in ws:
            w.send("index")
        built = [w._answer() for w in ws]
        for w in ws:
            w.send("search")
        searched = [w._answer() for w in ws]
        after = [w.memory() for w in ws]
        assert searched[0]["totals"] == searched[1]["totals"]
        return {
            "index": built,
            "search_s": [s["s"] for s in searched],
            "before": before,
            "after": after,
            "pss_sum_mb": sum(a["pss_mb"] for a in after),
            "rss_sum_mb": sum(a["rss_mb"] for a in after),
            "pss_added_mb": sum(
                a["pss_mb"] - b["pss_mb"] for a, b in zip(after, before, strict=True)
            ),
            "rss_added_mb": sum(
                a["rss_mb"] - b["rss_mb"] for a, b in zip(after, before, strict=True)
            ),
            "load_avg": load_avg(),
        }
    finally:
        for w in ws:
            w.close()


def after_change(db: Path, data_dir: str, searches: int, private: bool) -> dict[str, Any]:
    """A process holding the index; one dataset rewritten; its next index() (updated, and
    saved unless ``private``), then a new process's first index() (loaded unless private)."""
    from dataclasses import replace

    from insitu.catalog._sql import SQLCatalogStore

    w = Worker(db, data_dir, searches)
    try:
        w.ask("index")
        store = SQLCatalogStore.from_uri(f"sqlite:///{db}")
        try:
            with store.engine.connect() as conn:
                some = conn.exec_driver_sql("SELECT dataset_id FROM datasets LIMIT 1 OFFSET 500")
                (one,) = store.datasets(dataset_ids=[some.scalar_one()])
            store.write(one.collection, datasets=[replace(one, size=one.size + 1)])
        finally:
            store.close()
        updated = w.ask("index")
    finally:
        w.close()
    return {"updated": updated, "next_process": first_index(db, data_dir, searches)}


def saved_bytes(data_dir: Path) -> tuple[int, int]:
    """Bytes of the newest saved index in ``data_dir`` and its number of datasets."""
    (store,) = (data_dir / "cache" / "search-index").iterdir()
    newest = max(
        (p for p in store.iterdir() if p.name.startswith("gen-")), key=lambda p: int(p.name[4:])
    )
    n = json.loads((newest / "index.json").read_text())["n"]
    return sum(f.stat().st_size for f in newest.iterdir()), n


_SYNTHETIC_WORKER = """
import json, sys, time
sys.path.insert(0, {bench!r})
import numpy as np
from pathlib import Path
from bench_index_share import index_queries
from insitu.catalog import _indexfile
from insitu.catalog.index import SearchIndex
from insitu.catalog.templates import BUILTIN_TEMPLATES

print(json.dumps({{"ready": True}}), flush=True)
templates = {{"bench": BUILTIN_TEMPLATES["cmip6"]}}
for line in sys.stdin:
    cmd = line.strip()
    if cmd in ("mapped", "own"):
        c0, t0 = time.process_time(), time.perf_counter()
        if cmd == "mapped":
            index = _indexfile.load(Path({directory!r}), templates)
        else:  # its own copy in memory, as a process that built it holds it
            meta, arrays = _indexfile._read(Path({directory!r}))
            index = SearchIndex.from_parts(
                meta, {{k: np.array(v) for k, v in arrays.items()}}, templates
            )
            del arrays  # the maps read from
        print(json.dumps({{"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "n": index.n}}), flush=True)
    elif cmd == "search":
        c0, t0 = time.process_time(), time.perf_counter()
        totals = [len(index.select(q)[0]) for q in index_queries({searches})]
        print(json.dumps({{"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "totals": totals}}), flush=True)
    else:
        break
"""


def index_queries(n: int) -> list[Any]:
    """bench_search's random facet searches, as the index is asked them."""
    from bench_search import random_queries
    from insitu.catalog import parse_time_range
    from insitu.catalog.index import IndexQuery

    out = []
    for q in random_queries(n):
        facets = {
            k: [v] if isinstance(v, str) else list(v)
            for k, v in q.items()
            if k not in ("limit", "time", "latest")
        }
        time_range = parse_time_range(*q["time"]) if "time" in q else None
        out.append(IndexQuery(facets=facets, time=time_range, latest=q.get("latest", True)))
    return out


def synthetic_rows(n: int, seed: int = 7) -> list[Any]:
    """``n`` index rows of CMIP6-like datasets, facets skewed as in bench_search."""
    import random

    from _common import EXPERIMENTS, MODELS, TABLES, VARIABLES, zipf_weights
    from insitu.catalog.models import IndexRow

    rng = random.Random(seed)
    variables = list(VARIABLES)
    members = [f"r{r}i1p1f{f}" for r in range(1, 51) for f in (1, 2)]
    picks = zip(
        rng.choices(MODELS, zipf_weights(len(MODELS)), k=n),
        rng.choices(EXPERIMENTS, zipf_weights(len(EXPERIMENTS)), k=n),
        rng.choices(members, zipf_weights(len(members), 1.2), k=n),
        rng.choices(variables, zipf_weights(len(variables)), k=n),
        strict=True,
    )
    rows = []
    for i, ((inst, model), (activity, exp, y0, y1), member, var) in enumerate(picks):
        table = VARIABLES[var][0]
        grid = TABLES[table][2]
        version = f"v{rng.randint(2018, 2023)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        facets = {
            "mip_era": ["CMIP6"],
            "activity_id": [activity],
            "institution_id": [inst],
            "source_id": [model],
            "experiment_id": [exp],
            "member_id": [member],
            "table_id": [table],
            "variable_id": [var],
            "grid_label": [grid],
            "version": [version],
        }
        rows.append(
            IndexRow(
                row=i + 1,
                dataset_id=f"CMIP6.{activity}.{inst}.{model}.{exp}.{member}.{table}.{var}.{grid}."
                f"{version}",
                collection="bench",
                version=version,
                latest=rng.random() < 0.67,
                facets=facets,
                n_files=rng.randint(1, 30),
                size=rng.randint(1, 10**11),
                tkey_start=((y0 * 100 + 1) * 100 + 16) * 1_000_000,
                tkey_end=((y1 * 100 + 12) * 100 + 16) * 1_000_000,
                bbox=(0.0, -90.0, 358.125, 90.0),
            )
        )
    return rows


class SyntheticWorker(Worker):
    """A process holding the synthetic index (mapped, or its own copy)."""

    def __init__(self, directory: Path, searches: int) -> None:
        code = _SYNTHETIC_WORKER.format(
            bench=str(BENCH), directory=str(directory), searches=searches
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ask_nothing()


def synthetic(n: int, work_dir: Path, searches: int) -> dict[str, Any]:
    """The index of ``n`` made-up datasets built, saved, then held by two processes."""
    import gc

    from insitu._util import gc_paused
    from insitu.catalog import _indexfile
    from insitu.catalog.index import SearchIndex
    from insitu.catalog.templates import BUILTIN_TEMPLATES

    t0 = time.perf_counter()
    rows = synthetic_rows(n)
    t1 = time.perf_counter()
    with gc_paused():
        index = SearchIndex(rows, {"bench": BUILTIN_TEMPLATES["cmip6"]}, 1)
    t2 = time.perf_counter()
    rows_s, build_s = t1 - t0, t2 - t1
    del rows
    gc.collect()
    directory = work_dir / f"synthetic-{n}"
    shutil.rmtree(directory, ignore_errors=True)
    t0 = time.perf_counter()
    _indexfile.save(index, directory, stamp=0)
    save_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in directory.iterdir())
    arrays_bytes = index.nbytes()
    del index
    gc.collect()
    res: dict[str, Any] = {
        "datasets": n,
        "rows_s": rows_s,
        "build_s": build_s,
        "save_s": save_s,
        "saved_mb": size / 2**20,
        "arrays_mb": arrays_bytes / 2**20,
        "load_avg_build": load_avg(),
    }
    for mode in ("own", "mapped", "own", "mapped"):  # interleaved, twice
        ws = [SyntheticWorker(directory, searches) for _ in range(2)]
        try:
            before = [w.memory() for w in ws]
            loads = [w.ask(mode) for w in ws]
            searched = [w.ask("search") for w in ws]
            after = [w.memory() for w in ws]
        finally:
            for w in ws:
                w.close()
        assert searched[0]["totals"] == searched[1]["totals"]
        res.setdefault(mode, []).append(
            {
                "load_s": [x["s"] for x in loads],
                "load_cpu_s": [x["cpu_s"] for x in loads],
                "search_s": [x["s"] for x in searched],
                "search_cpu_s": [x["cpu_s"] for x in searched],
                "pss_added_mb": sum(
                    a["pss_mb"] - b["pss_mb"] for a, b in zip(after, before, strict=True)
                ),
                "rss_added_mb": sum(
                    a["rss_mb"] - b["rss_mb"] for a, b in zip(after, before, strict=True)
                ),
                "own_added_mb": sum(
                    a["private_mb"] - b["private_mb"] for a, b in zip(after, before, strict=True)
                ),
                "pss_sum_mb": sum(a["pss_mb"] for a in after),
                "load_avg": load_avg(),
            }
        )
    shutil.rmtree(directory, ignore_errors=True)
    for mode in ("own", "mapped"):
        m = res[mode][-1]
        say(
            f"[share] {n} datasets, 2 processes holding the index {mode}: load "
            f"{max(m['load_s']):.2f} s, {searches} searches {max(m['search_s']):.2f} s; PSS "
            f"+{m['pss_added_mb']:.0f} MB, RSS +{m['rss_added_mb']:.0f} MB, own "
            f"+{m['own_added_mb']:.0f} MB (both together); load {m['load_avg']:.1f}"
        )
    return res


def _med(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--source", type=Path, default=DATA_DIR / "search" / "catalog-100000-1000000.db"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    ap.add_argument("--searches", type=int, default=50, help="searches per process (50)")
    ap.add_argument("--work-dir", type=Path, default=DATA_DIR / "index_share")
    ap.add_argument("--reuse", action="store_true", help="reuse the copy of a previous run")
    ap.add_argument(
        "--synthetic", type=int, default=PROJECT_TO, help="made-up datasets (1000000; 0: none)"
    )
    ap.add_argument("--only-synthetic", action="store_true", help="skip the store's benchmark")
    args = ap.parse_args(argv)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.only_synthetic:
        res = {
            "code": code_info(),
            "synthetic": synthetic(args.synthetic, args.work_dir, args.searches),
        }
        emit("index_share", res)
        return res
    db = args.work_dir / "catalog.db"
    if not (args.reuse and db.exists()):
        copy_s, _ = timed(lambda: shutil.copyfile(args.source, db))
        say(f"[share] copied {args.source} in {copy_s:.1f} s")
    from insitu.catalog._sql import SQLCatalogStore

    SQLCatalogStore.from_uri(f"sqlite:///{db}").close()  # migrated now, not in a timing
    res: dict[str, Any] = {"source": str(args.source), "code": code_info(), "rounds": []}

    def data_dir(name: str) -> Path:
        d = args.work_dir / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    for r in range(args.rounds):
        shared = data_dir("data-shared")
        rnd = {
            "load_avg": load_avg(),
            "private_build": first_index(db, UNWRITABLE, args.searches),
            "build_and_save": first_index(db, str(shared), args.searches),
            "load": first_index(db, str(shared), args.searches),
        }
        rnd["load_again"] = first_index(db, str(shared), args.searches)
        res["rounds"].append(rnd)
        say(
            f"[share] round {r + 1}: first index() private build "
            f"{rnd['private_build']['s']:.2f} s (CPU {rnd['private_build']['cpu_s']:.2f}), "
            f"build+save {rnd['build_and_save']['s']:.2f} s "
            f"(CPU {rnd['build_and_save']['cpu_s']:.2f}), load {rnd['load']['s'] * 1e3:.0f} ms "
            f"(CPU {rnd['load']['cpu_s'] * 1e3:.0f}), again {rnd['load_again']['s'] * 1e3:.0f} ms; "
            f"load {rnd['load_avg']:.1f}"
        )
        assert rnd["load"]["mapped"] and not rnd["private_build"]["mapped"]
    rounds = res["rounds"]
    res["first_index_median_s"] = {
        k: _med([x[k]["s"] for x in rounds])
        for k in ("private_build", "build_and_save", "load", "load_again")
    }
    res["first_index_median_cpu_s"] = {
        k: _med([x[k]["cpu_s"] for x in rounds])
        for k in ("private_build", "build_and_save", "load", "load_again")
    }

    shared = data_dir("data-shared")
    res["memory"] = {
        "private": pair_memory(db, (UNWRITABLE, UNWRITABLE), args.searches),
        "at_once": pair_memory(db, (str(shared), str(shared)), args.searches),
        "restart": pair_memory(db, (str(shared), str(shared)), args.searches),
    }
    for name, m in res["memory"].items():
        say(
            f"[share] 2 processes, {name}: PSS {m['pss_sum_mb']:.0f} MB "
            f"(+{m['pss_added_mb']:.0f} MB for index+searches), RSS {m['rss_sum_mb']:.0f} MB "
            f"(+{m['rss_added_mb']:.0f}); index() {[round(i['s'], 2) for i in m['index']]} s; "
            f"load {m['load_avg']:.1f}"
        )

    changed = data_dir("data-change")
    first_index(db, str(changed), args.searches)  # saved at the current generation
    res["after_change"] = {
        "shared": after_change(db, str(changed), args.searches, private=False),
        "private": after_change(db, UNWRITABLE, args.searches, private=True),
        "load_avg": load_avg(),
    }
    ac = res["after_change"]
    say(
        f"[share] after a change: updated+saved {ac['shared']['updated']['s']:.2f} s "
        f"(CPU {ac['shared']['updated']['cpu_s']:.2f}), next process loads in "
        f"{ac['shared']['next_process']['s'] * 1e3:.0f} ms; private update "
        f"{ac['private']['updated']['s']:.2f} s (CPU {ac['private']['updated']['cpu_s']:.2f}), "
        f"next process builds in {ac['private']['next_process']['s']:.2f} s; "
        f"load {ac['load_avg']:.1f}"
    )

    size, n = saved_bytes(changed)
    restart, private = res["memory"]["restart"], res["memory"]["private"]

    def added(m: dict[str, Any], key: str) -> float:
        return _med([a[key] - b[key] for a, b in zip(m["after"], m["before"], strict=True)])

    scale = PROJECT_TO / n
    baseline = _med([b["pss_mb"] for b in restart["before"]])
    own = {"shared": added(restart, "private_mb"), "private": added(private, "private_mb")}
    saved_mb = size / 2**20
    # Shared: the saved files once (page cache, mapped by all), plus in each process its
    # baseline and what it keeps of its own. Private: each process its baseline and index.
    # What a process keeps grows with the datasets at most linearly: scaled by 10.
    res["projection"] = {
        "datasets": n,
        "saved_bytes_per_dataset": size / n,
        "saved_mb": saved_mb,
        "baseline_pss_per_process_mb": baseline,
        "own_mb_added_per_process": own,
        "pss_added_per_process_mb": {
            "shared": added(restart, "pss_mb"),
            "private": added(private, "pss_mb"),
        },
        "at_1M_shared_mb_for": {
            str(k): saved_mb * scale + k * (baseline + own["shared"] * scale) for k in (1, 2, 4, 8)
        },
        "at_1M_private_mb_for": {
            str(k): k * (baseline + own["private"] * scale) for k in (1, 2, 4, 8)
        },
    }
    p = res["projection"]
    say(
        f"[share] saved index {p['saved_bytes_per_dataset']:.0f} B/dataset ({saved_mb:.0f} MB "
        f"at {n}); each process adds of its own: shared {own['shared']:.0f} MB, private "
        f"{own['private']:.0f} MB (baseline PSS {baseline:.0f} MB); at 1,000,000 datasets, "
        f"8 processes: shared {p['at_1M_shared_mb_for']['8'] / 1024:.1f} GB, private "
        f"{p['at_1M_private_mb_for']['8'] / 1024:.1f} GB"
    )
    if args.synthetic:
        res["synthetic"] = synthetic(args.synthetic, args.work_dir, args.searches)
    res["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    emit("index_share", res)
    return res


if __name__ == "__main__":
    main()

"""The shot search (``insitu.ingest.find_shots``, ``GET /api/v1/shots``) over 50,000 shot
records in the catalog database, SQLite and PostgreSQL.

    python bench/bench_shot_search.py [--shots 50000] [--queries 200] [--postgres URL]

Records are written through ``Registry.record_shots`` (the rows ``record_shot`` writes
once per product, a batch of 1,000 at a time: the recording rate is not what is measured),
100 shots a day over 500 days, 20 campaigns, 3 collections, 3-8 of 20 signals each with
min/max/mean, 10-20 of 30 configuration components. Queries, interleaved, each kind
``--queries`` times with random values, all restricted to the 3 readable collections as the
route does: see ``KINDS``. Warm: one process, after one query of each kind (PostgreSQL: also
after ``VACUUM ANALYZE``, what autovacuum does after a bulk load). Cold: a new process that
imports insitu and runs one query (its first-query time and the whole process). Prints one
JSON line; the databases go under ``bench/data/shot-search/`` (removed unless ``--keep``).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

import _common as c
from insitu.ingest import Item, Registry, ShotRecord, find_shots

SIGNALS = [f"sig{i:02d}" for i in range(20)]
COMPONENTS = [f"comp-{i:02d}" for i in range(30)]
CAMPAIGNS = [f"campaign-{i:02d}" for i in range(20)]
COLLECTIONS = ["lab-a", "lab-b", "lab-c"]
START = datetime(2025, 1, 1, tzinfo=UTC)


def build(uri: str, n: int, rng: random.Random) -> float:
    """Record ``n`` synthetic shots; returns the seconds it took."""
    registries = {col: Registry(uri, col) for col in COLLECTIONS}
    batches: dict[str, list[tuple[ShotRecord, Item]]] = {col: [] for col in COLLECTIONS}
    started = time.perf_counter()
    try:
        for i in range(n):
            col = COLLECTIONS[i % 3]
            t = START + timedelta(seconds=i * 864)  # 100 a day
            signals = rng.sample(SIGNALS, rng.randint(3, 8))
            summary: dict[str, dict[str, float | int | None]] = {}
            for s in signals:
                lo, hi = sorted(rng.uniform(-1, 1) for _ in range(2))
                summary[s] = {"min": lo, "max": hi, "mean": (lo + hi) / 2, "n": 1000, "nan": 0}
            sha = uuid.UUID(int=rng.getrandbits(128)).hex * 2
            record = ShotRecord(
                pipeline=col,
                collection=col,
                shot=str(100_000 + i),
                version=1,
                latest=True,
                state="ingested",
                product_id=sha,
                raw_sha256=sha,
                campaign=rng.choice(CAMPAIGNS),
                operator=f"op{i % 10}",
                acquired_at=t.isoformat().replace("+00:00", "Z"),
                ingested_at=t.isoformat().replace("+00:00", "Z"),
                configuration_id=sha,
                calibrations={s: {"id": f"{s}/x", "version": 1, "sha256": sha} for s in signals},
                signals=signals,
                components=rng.sample(COMPONENTS, rng.randint(10, 20)),
                summary=summary,
                pipeline_version="0",
                path=f"/products/{i}",
            )
            item = Item(sha, f"{i}.tdms", "ingested", record.shot, None, sha, 1, record.ingested_at)
            batches[col].append((record, item))
            if len(batches[col]) == 1_000 or i == n - 1:
                for name, batch in batches.items():
                    registries[name].record_shots(batch)
                    batch.clear()
            if i and i % 10_000 == 0:
                c.say(f"  {i} shots recorded ({time.perf_counter() - started:.0f} s)")
    finally:
        for r in registries.values():
            r.close()
    return time.perf_counter() - started


def day(rng: random.Random) -> tuple[str, str]:
    t = START + timedelta(days=rng.randint(0, 480))
    return t.date().isoformat(), (t + timedelta(days=1)).date().isoformat()


KINDS: dict[str, Any] = {
    "campaign": lambda r: {"campaign": r.choice(CAMPAIGNS)},  # ~2,500 hits
    "one day": lambda r: dict(zip(("start", "end"), day(r), strict=True)),  # ~100
    "has_signal": lambda r: {"signal": r.choice(SIGNALS)},  # ~14,000
    "component": lambda r: {"component": r.choice(COMPONENTS)},  # ~25,000
    "where max>0.8": lambda r: {"where": f"{r.choice(SIGNALS)}_max>0.8"},  # ~2,500
    "campaign+signal+where": lambda r: {
        "campaign": r.choice(CAMPAIGNS),
        "signal": r.choice(SIGNALS),
        "where": f"{r.choice(SIGNALS)}_mean>0.2",
    },
    "everything, page 200": lambda r: {"offset": 10_000},  # all 50,000 counted
}


def warm(uri: str, queries: int, rng: random.Random) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    totals: dict[str, list[int]] = {k: [] for k in KINDS}
    for make in KINDS.values():  # one each first: engine, connection, statement cache
        find_shots(uri, collections=COLLECTIONS, **make(rng))
    for _ in range(queries):
        for kind in rng.sample(list(KINDS), len(KINDS)):
            args = KINDS[kind](rng)
            t0 = time.perf_counter()
            page = find_shots(uri, collections=COLLECTIONS, **args)
            times[kind].append((time.perf_counter() - t0) * 1000)
            totals[kind].append(page.total)
    return {k: {**c.percentiles(v), "median_hits": c.median(totals[k])} for k, v in times.items()}


COLD = """
import time
t0 = time.perf_counter()
from insitu.ingest import find_shots
t1 = time.perf_counter()
page = find_shots({uri!r}, collections={cols!r}, campaign="campaign-03", signal="sig04")
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000, page.total)
"""


def cold(uri: str, rounds: int = 5) -> dict[str, float]:
    first, whole = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD.format(uri=uri, cols=COLLECTIONS)],
            capture_output=True,
            text=True,
            check=True,
        )
        whole.append((time.perf_counter() - t0) * 1000)
        first.append(float(out.stdout.split()[1]))
    return {"first_query_ms": c.median(first), "whole_process_ms": c.median(whole)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shots", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--postgres", default=None, help="server URL: a new database is made")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    root = c.fresh_dir(c.DATA_DIR / "shot-search")
    uris = {"sqlite": c.sqlite_uri(root / "catalog.db")}
    admin = None
    if args.postgres:
        name = f"bench_shots_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        uris["postgresql"] = sa.make_url(args.postgres).set(database=name).render_as_string(False)
    results: dict[str, Any] = {"shots": args.shots, "queries": args.queries, "load": c.load_avg()}
    results["code"] = c.code_info()
    try:
        for db, uri in uris.items():
            c.say(f"{db}: recording {args.shots} shots")
            built = build(uri, args.shots, random.Random(1))
            c.say(f"{db}: recorded in {built:.0f} s; querying")
            results[db] = {
                "record_s": round(built, 1),
                "warm": warm(uri, args.queries, random.Random(2)),
                "cold": cold(uri),
            }
            if db == "postgresql":  # what autovacuum does after a bulk load, then again
                engine = sa.create_engine(uri, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.execute(sa.text("VACUUM ANALYZE"))
                engine.dispose()
                results[db]["warm_after_vacuum"] = warm(uri, args.queries, random.Random(2))
            for kind, p in results[db].get("warm_after_vacuum", results[db]["warm"]).items():
                c.say(f"  {kind:24} p50 {p['p50']:7.2f} ms  p95 {p['p95']:7.2f} ms  "
                      f"hits {p['median_hits']:.0f}")  # fmt: skip
            c.say(f"  cold {results[db]['cold']}")
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = c.load_avg()
    c.emit("shot_search", results)


if __name__ == "__main__":
    main()

"""The data service's own CPU per request: the app called in-process, no sockets, no server.

    python bench/bench_app_cpu.py [--requests 400] [--rounds 3]
    python bench/bench_app_cpu.py --catalog-from bench/data/search/catalog-100000-1000000.db

The catalog is ``bench_service.py``'s (the CMIP6 demo archive and one generated dataset,
under ``bench/data/service/``; with ``--catalog-from``, that catalog copied under it, as
``bench_service.py --catalog-from`` does, in ``bench/data/service-app-cpu/``). The app is
``insitu.access.app.build_app`` over it, started (its lifespan) and called as uvicorn calls
it, one ASGI request at a time from a bare driver in this process: what is timed is the
app's work for a request (routing, dependencies, thread-pool hops, the catalog, the
response), not HTTP or the kernel's. Kinds of request: ``health``; ``chunk``, a small Zarr
chunk of a random data variable of a demo dataset (``/api/v1/zarr/...``, files opened in a
warm-up); ``search_hit``, one of 200 faceted searches with counts asked before (the index's
memo answers); ``search_miss``, a search never asked before (1-3 facet constraints, a time
window in a third, a later page in a quarter). Each round runs ``--requests`` of every kind,
the order of kinds rotating; the figure is the process's CPU time per request
(``time.process_time``: every thread), median over the rounds. Prints a table on stderr and
one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any
from urllib.parse import quote

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import DATA_DIR, code_info, emit, load_avg, say  # noqa: E402
from bench_service import _prepare  # noqa: E402

FACETS = ("source_id", "experiment_id", "table_id", "variable_id", "member_id")


class Driver:
    """Calls an ASGI app as a server would, one request at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def get(self, target: str) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        done = asyncio.Event()
        status, body = 0, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()  # the client stays connected until the response is sent
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        await self.app(scope, receive, send)
        return status, b"".join(body)

    async def json(self, target: str) -> Any:
        status, body = await self.get(target)
        if status != 200:
            raise RuntimeError(f"GET {target}: {status} {body[:200]!r}")
        return json.loads(body)


async def chunk_keys(driver: Driver, dataset_ids: list[str]) -> list[str]:
    keys = []
    for ds in dataset_ids:
        meta = (await driver.json(f"/api/v1/zarr/{ds}/.zmetadata"))["metadata"]
        for key, zarray in meta.items():
            var = key.removesuffix("/.zarray")
            dims = meta.get(f"{var}/.zattrs", {}).get("_ARRAY_DIMENSIONS", [])
            if var == key or len(dims) < 3:  # data variables, not coordinates or bounds
                continue
            sep = zarray.get("dimension_separator", ".")
            counts = [-(-n // c) for n, c in zip(zarray["shape"], zarray["chunks"], strict=True)]
            keys += [f"{ds}/{var}/{sep.join(map(str, i))}" for i in product(*map(range, counts))]
    return keys


def searches(facets: dict[str, list[str]], n: int, seed: int, extras: bool) -> list[str]:
    """``n`` different searches of 1-3 facet constraints (with ``extras``: a time window in
    a third of them, a later page in a quarter)."""
    names = [f for f in FACETS if facets.get(f)]
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        picked = rng.sample(names, rng.randint(1, min(3, len(names))))
        parts = [f"{f}={quote(rng.choice(facets[f]))}" for f in picked]
        if extras and rng.random() < 1 / 3:
            start = rng.randint(1850, 2010)
            parts.append(f"time={start}/{start + rng.randint(0, 60)}")
        if extras and rng.random() < 1 / 4:
            parts.append(f"offset={20 * rng.randint(1, 10)}")
        out["/api/v1/search?" + "&".join([*parts, "limit=20"])] = None
    return list(out)


async def measure(app: Any, args: argparse.Namespace) -> dict[str, Any]:
    driver = Driver(app)
    async with app.router.lifespan_context(app):
        found = (await driver.json("/api/v1/search?collection=demo&limit=1000"))["results"]
        keys = await chunk_keys(driver, [r["dataset_id"] for r in found][:40])
        facets = {
            f: list(v) for f, v in (await driver.json("/api/v1/search?limit=0"))["facets"].items()
        }
        repeated = searches(facets, 200, 1, extras=False)
        asked = set(repeated)
        more = searches(facets, args.requests * args.rounds + len(asked), 2, extras=True)
        fresh = iter([q for q in more if q not in asked])
        rng = random.Random(3)
        chunks = [f"/api/v1/zarr/{k}" for k in keys]
        for target in ["/api/v1/health", *chunks, *repeated]:  # every file opened, every memo
            status, _ = await driver.get(target)
            assert status == 200, (target, status)
        kinds = {
            "health": lambda: "/api/v1/health",
            "chunk": lambda: rng.choice(chunks),
            "search_hit": lambda: rng.choice(repeated),
            "search_miss": lambda: next(fresh),
        }
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        wall: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        for r in range(args.rounds):
            for kind in names[r % len(names) :] + names[: r % len(names)]:
                targets = [kinds[kind]() for _ in range(args.requests)]
                c, t = time.process_time(), time.perf_counter()
                for target in targets:
                    status, _ = await driver.get(target)
                    if status != 200:
                        raise RuntimeError(f"GET {target}: {status}")
                cpu[kind].append((time.process_time() - c) / len(targets) * 1e3)
                wall[kind].append((time.perf_counter() - t) / len(targets) * 1e3)
    return {
        "chunk_keys": len(keys),
        "cpu_ms_per_request": {k: statistics.median(v) for k, v in cpu.items()},
        "wall_ms_per_request": {k: statistics.median(v) for k, v in wall.items()},
        "all_cpu_ms_per_request": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400, help="requests of each kind a round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every kind (3)")
    ap.add_argument("--catalog-from", type=Path, help="serve a copy of this catalog too")
    args = ap.parse_args(argv)
    work = DATA_DIR / ("service-app-cpu" if args.catalog_from else "service")
    work.mkdir(parents=True, exist_ok=True)
    say(f"preparing the catalog in {work} ...")
    env = _prepare(work, 40, 180, 360, catalog_from=args.catalog_from)
    os.environ.update(env)

    from insitu.access.app import build_app
    from insitu.settings import Settings

    res: dict[str, Any] = {
        "catalog_from": str(args.catalog_from) if args.catalog_from else None,
        "requests": args.requests,
        "rounds": args.rounds,
        "load_avg_before": load_avg(),
        "code": code_info(),
    }
    res |= asyncio.run(measure(build_app(Settings.load()), args))
    res["load_avg_after"] = load_avg()
    say(f"{'kind':12} {'CPU ms':>8} {'wall ms':>8}")
    for kind, ms in res["cpu_ms_per_request"].items():
        say(f"{kind:12} {ms:8.3f} {res['wall_ms_per_request'][kind]:8.3f}")
    emit("app_cpu", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

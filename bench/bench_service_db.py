"""Benchmark: the data service with its databases on PostgreSQL, before and after a change.

Does a request wait for other requests' database round trips? The catalog and the tokens
live on a fresh database of the project's PostgreSQL (``make services``), reached through
a TCP relay in this process that delays every packet from the server by ``--delay-ms``
(a database on another machine: loopback round trips are too short to see). The service
(one process) is started twice: from another checkout (``--base``, e.g. a ``git worktree``
of the commit before the change) and from this tree. For each, ``--clients`` concurrent
clients (and one alone) send for ``--duration`` seconds requests whose only database work
is the service's own per-request reads: token holders ask for a restricted dataset's
consolidated Zarr metadata, anonymous clients for a public one's. It reports throughput and
p50/p95 latency per run.

    git worktree add /tmp/base-tokens <commit before>
    python bench/bench_service_db.py --base /tmp/base-tokens [--clients 16] [--delay-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, emit, percentiles, say

HERE = Path(__file__).resolve().parent.parent
_DIR = "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn"
PUBLIC_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
SECRET_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20991231"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _postgres_url() -> str:
    url = os.environ.get("INSITU_TEST_POSTGRES_URI")
    if url:
        return url
    cached = HERE / ".cache" / "postgres-url"
    if not cached.exists():
        raise SystemExit("No PostgreSQL: run 'make services' (or set INSITU_TEST_POSTGRES_URI).")
    return cached.read_text().strip().splitlines()[-1]


class DelayRelay:
    """A TCP relay to ``target`` that holds every packet from it for ``delay`` seconds."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, d: float
        ) -> None:
            try:
                while data := await reader.read(65536):
                    if d:
                        await asyncio.sleep(d)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            sr, sw = await asyncio.open_connection(*self.target)
            await asyncio.gather(pipe(cr, sw, 0.0), pipe(sr, cw, self.delay))

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await server.serve_forever()

        self.loop.run_until_complete(main())


def _prepare(work: Path, server_url: str, demo: Path) -> tuple[str, str]:
    """A fresh database with the catalog (public 'pub', restricted 'priv') and a token."""
    from insitu.access import TokenStore
    from insitu.catalog import Catalog
    from insitu.settings import Settings

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    uri = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    for coll, version in (("pub", "v20190311"), ("priv", "v20991231")):
        dest = work / coll / _DIR / version
        if not dest.exists():
            shutil.copytree(demo / _DIR / "v20190311", dest)
    settings = Settings.load(data_dir=work / "state", catalog={"uri": uri})
    with Catalog(settings) as cat:
        cat.add_collection("pub", work / "pub", public=True)
        cat.add_collection("priv", work / "priv")
        cat.scan(workers=1)
    tokens = TokenStore.from_uri(uri)
    secret = tokens.create("bench", collections=["priv"])[1]
    tokens.close()
    return uri, secret


def _start(src: Path, uri: str, work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "INSITU_DATA_DIR": str(work / "state"),
        "INSITU_CATALOG__URI": uri,
        "INSITU_CONFIG": str(work / "none.toml"),
    }
    (work / "none.toml").write_text("")
    cmd = [sys.executable, "-m", "insitu.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"the service from {src} died:\n{err}") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the service did not start within 60 s")


async def _load(base: str, secret: str, clients: int, duration: float) -> dict[str, Any]:
    import aiohttp

    lat: dict[str, list[float]] = {"token": [], "anonymous": []}
    errors: dict[str, int] = {}
    stop = time.monotonic() + duration

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        kind = "token" if i % 2 == 0 else "anonymous"
        ds = SECRET_ID if kind == "token" else PUBLIC_ID
        headers = {"Authorization": f"Bearer {secret}"} if kind == "token" else {}
        url = f"{base}/api/v1/zarr/{ds}/.zmetadata"
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            async with session.get(url, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors[f"{kind} {r.status}"] = errors.get(f"{kind} {r.status}", 0) + 1
            lat[kind].append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(clients)))
        elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"clients": clients, "errors": errors}
    total = 0
    for kind, values in lat.items():
        total += len(values)
        if values:
            ms = {k: round(v * 1000, 2) for k, v in percentiles(values, (50, 95)).items()}
            out[kind] = {"requests": len(values), **ms}
    out["requests_per_s"] = round(total / elapsed, 1)
    return out


def _base_tree(base: Path) -> Path:
    """The base checkout's src, with its C unshuffle module if it needs one we have."""
    src = base / "src"
    old = src / "insitu" / "catalog" / "_shuffle.c"
    built = list((HERE / "src" / "insitu" / "formats" / "netcdf").glob("_shuffle.*.so"))
    if old.exists() and not list(old.parent.glob("_shuffle.*.so")) and built:
        shutil.copy2(built[0], old.parent / built[0].name)  # the same C source, moved since
    return src


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare (its src/ runs)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=float, default=2.0, help="added to each DB reply")
    args = parser.parse_args()

    spec_root = importlib.util.find_spec("esmvaltool_sample_data")
    assert spec_root is not None and spec_root.submodule_search_locations
    demo = Path(next(iter(spec_root.submodule_search_locations))) / "data" / "timeseries"
    work = DATA_DIR / "service-db"
    work.mkdir(parents=True, exist_ok=True)
    server_url = _postgres_url()
    say(f"preparing a catalog on PostgreSQL in {work} ...")
    uri, secret = _prepare(work, server_url, demo)
    parsed = sa.make_url(uri)
    relay = DelayRelay((parsed.host or "127.0.0.1", parsed.port or 5432), args.delay_ms / 1000)
    relayed = parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    trees = {"after": HERE / "src"}
    if args.base is not None:
        trees = {"before": _base_tree(args.base), **trees}
    results: dict[str, Any] = {}
    for label, src in trees.items():
        port = _free_port()
        proc = _start(src, relayed, work, port)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_load(base, secret, 4, 2.0))  # views built, connections open
            runs = [asyncio.run(_load(base, secret, n, args.duration)) for n in (2, args.clients)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        results[label] = runs
        say(f"{label} ({src}):\n{json.dumps(runs, indent=1)}")
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()
    emit(
        "service_db",
        {"delay_ms": args.delay_ms, "duration_s": args.duration, "results": results},
    )


if __name__ == "__main__":
    main()

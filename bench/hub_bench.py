"""Benchmark: the multi-user platform (``insitu up``) as its users meet it.

Three parts, each on platforms of its own (own data folders under ``--data-dir``, own
loopback ports from ``--port``, 20 apart; unix accounts named ``hb<random>...``, removed at
the end, also after a failure or Ctrl-C):

``startup``
    Time from ``insitu up --detach`` to a usable hub: ``up`` returns (hub, data service and
    gateway answer), then the admin logs in through the hub's login form, their server
    starts, and JupyterLab's page loads. First the very first start on an empty data folder
    (it indexes the CMIP6 demo archive), then a cold start of the prepared folder (the
    venv, the Python standard library, node and the data folder evicted from the page
    cache first: as cold as it gets without a reboot), then ``--warm`` warm starts. The
    hub's log splits each start into its phases.

``spawn``
    Spawn latency with the local spawner (JupyterHub's REST API: POST the server, until the
    hub says it is ready, then DELETE it), for ``--cycles`` fresh users' first spawns and
    their later spawns, for each of ``--variants`` of the single-user server's start,
    interleaved cycle by cycle (one platform per variant, running side by side):

    - ``defaults``: JupyterHub's defaults (``jupyterhub-singleuser`` with no options but
      the platform's own, LocalProcessSpawner), what the code did before ``_quick_start_args``;
    - ``committed``: the platform as the code configures it now;
    - ``launcher``: committed, with the server started by :data:`LAUNCH` (below);
    - ``prompt``: committed, with :class:`PromptLocalProcessSpawner` (below);
    - ``proposed``: committed with both.

    ``launcher`` and ``prompt`` try changes to ``insitu/hub/config.py`` before they are
    made, through settings only (``hub.spawner`` and ``hub.spawner_config``). Each spawn
    records the CPU seconds of the user's server at ready and, from the hub's log, where
    the time went: the hub before it starts the process, the server's own start (process
    start to "Jupyter Server ... is running"), the hub noticing it (its
    ``wait_for_http_server`` backoff), the proxy route and the reply.

``users``
    ``--users`` users at once, each as a browser would: the login form, the spawn (the
    hub's spawn page, then its progress event stream until ready), JupyterLab's page
    (through the hub's OAuth), then a kernel (REST, then its websocket) that runs a small
    catalog search and an area-weighted field mean of the smallest Amon dataset. Success
    rate and p50/p95/max of each step; a failed step is recorded with its reason and ends
    that user's session.

``imports`` (not run by default)
    For each of ``--import-variants``, a user's second server start with
    ``PYTHONPROFILEIMPORTTIME=1``: the seconds of its imports, charged to the extension or
    package that caused them (:data:`IMPORT_CAUSES`).

Progress goes to stderr, one JSON line to stdout and to ``--json-out`` (default
``bench/data/hub/hub-results-<time>.json``), and a PNG of the spawn latencies, the users'
latency distribution and the start-up phases next to it. Needs root (unix accounts).

    python bench/hub_bench.py [--parts startup,spawn,users] [--cycles 5] [--users 20]
                              [--variants defaults,committed,launcher,prompt,proposed]
                              [--users-variant committed] [--json-out F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, code_info, machine, percentiles, say
from insitu.hub.config import SINGLEUSER_MAIN

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.prefix) / "bin"
# Loopback ports: platform k uses PORT + 20 k .. + 10 (hub, its API, the proxy's API, the
# gateway's three, the data service). Other sessions use 8000-8010, 8470, 18130-18131 and
# 18200-19999.
PORT = 17700
RESERVED_PORTS = [(8000, 8010), (8470, 8470), (18130, 18131), (18200, 19999)]
VARIANTS = ["defaults", "committed", "launcher", "prompt", "proposed"]
UMASK_WRAP = ["/bin/sh", "-c", 'umask 002 && exec "$0" "$@"']  # what config.py runs as root
# The single-user server without the 1.2 s import of rfc3987_syntax (see BENCHMARKS.md, Hub):
# the platform's own command (config.py), named so the variants can set it explicitly.
LAUNCH = SINGLEUSER_MAIN
AUTH_CACHE_SECONDS = 30
STEPS = ["login", "spawn", "lab", "kernel", "exec"]
KERNEL_CODE = """
import json, time
t0 = time.perf_counter()
import numpy as np
import insitu
total = insitu.Catalog().search(table_id="Amon").total
t1 = time.perf_counter()
ds = insitu.open_dataset({dataset!r})
v = ds[{variable!r}]
v = v.where(v < 1e30)  # levels below the ground hold netCDF's default fill value
mean = float(v.weighted(np.cos(np.deg2rad(ds["lat"]))).mean(("lat", "lon")).mean())
t2 = time.perf_counter()
print("RESULT " + json.dumps({{"total": total, "mean": mean, "search_s": t1 - t0,
                              "field_mean_s": t2 - t1}}))
"""


# -- the 'prompt' spawner, imported by the hub from this file (PYTHONPATH=bench) ----------


def _prompt_spawner() -> type:
    from jupyterhub.spawner import LocalProcessSpawner
    from jupyterhub.utils import can_connect

    class PromptLocalProcessSpawner(LocalProcessSpawner):
        """LocalProcessSpawner whose start() returns once the server listens.

        JupyterHub waits for a new server with a jittered exponential backoff (0.2 s,
        doubling, up to 5 s between checks): a server ready after 3 s is seen up to 3 s
        later. Checking the port every 50 ms first means the hub's first check succeeds.
        A server that exits while starting fails the spawn at once with its status.
        """

        async def start(self) -> tuple[str, int]:
            ip, port = await super().start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.http_timeout
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"The server of {self.user.name} exited with status "
                        f"{self.proc.returncode} while starting; see the hub's log."
                    )
                if can_connect(ip, port):
                    break
                await asyncio.sleep(0.05)
            return ip, port

    return PromptLocalProcessSpawner


def __getattr__(name: str) -> Any:
    if name == "PromptLocalProcessSpawner":
        cls = _prompt_spawner()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


# -- small helpers --------------------------------------------------------------------------


class StepFailed(Exception):
    """A step of a user's session went wrong; the message says how."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    out: dict[str, Any] = {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }
    out |= percentiles(values, (50, 95))
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "jupyterhub",
        "jupyter_server",
        "jupyterlab",
        "jupyter-collaboration",
        "jupyter-server-proxy",
        "dask-labextension",
        "ipyparallel",
        "jsonschema",
        "rfc3987-syntax",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def evict(paths: list[Path]) -> dict[str, Any]:
    """Drop these files from the page cache (posix_fadvise DONTNEED; pages other processes
    map stay): a start afterwards reads them from the disk, as after a reboot."""
    t0 = time.monotonic()
    files = size = 0
    for root in paths:
        if root.is_file():
            walk: Iterator[tuple[str, list[str], list[str]]] = iter(
                [(str(root.parent), [], [root.name])]
            )
        else:
            walk = os.walk(root)
        for folder, _, names in walk:
            for n in names:
                p = os.path.join(folder, n)
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    st = os.fstat(fd)
                    if st.st_size:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        files += 1
                        size += st.st_size
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return {"files": files, "bytes": size, "seconds": time.monotonic() - t0}


def disk_read_bytes() -> int:
    """Bytes read so far from the machine's disks (/proc/diskstats, whole disks only)."""
    try:
        disks = {d for d in os.listdir("/sys/block") if not d.startswith(("loop", "ram", "zram"))}
        lines = Path("/proc/diskstats").read_text().splitlines()
    except OSError:
        return 0
    return sum(int(f[5]) * 512 for f in map(str.split, lines) if f[2] in disks)


def uid_cpu(uid: int, since: float) -> float:
    """CPU seconds so far of the live processes of ``uid`` started after ``since`` (epoch;
    a stopped server the hub has not reaped yet stays a zombie, with its CPU time)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["uids", "status", "create_time"]):
        with contextlib.suppress(psutil.Error):
            if (
                p.info["uids"]
                and p.info["uids"].real == uid
                and p.info["status"] != psutil.STATUS_ZOMBIE
                and p.info["create_time"] >= since - 1.5  # psutil rounds the boot time
            ):
                c = p.cpu_times()
                total += c.user + c.system
    return total


class Sampler:
    """Load average and used memory every second, in a thread, while a part runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        t0 = time.monotonic()
        while not self._stop.is_set():
            vm = psutil.virtual_memory()
            self.samples.append(
                (time.monotonic() - t0, os.getloadavg()[0], (vm.total - vm.available) / 2**30)
            )
            self._stop.wait(1.0)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        return {
            "load_max": max(s[1] for s in self.samples),
            "load_mean": statistics.mean(s[1] for s in self.samples),
            "used_gb_max": max(s[2] for s in self.samples),
            "used_gb_start": self.samples[0][2],
        }


# -- the hub's log --------------------------------------------------------------------------

_LINE = re.compile(r"^\S*\[(\w) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\w+)")


def _log_events(path: Path, offset: int) -> list[tuple[float, str]]:
    """(epoch seconds, line) of the log's lines from byte ``offset`` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            ts = datetime.strptime(m.group(2), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            out.append((ts, line))
    return out


def _first(events: list[tuple[float, str]], *needles: str, after: float = 0.0) -> float | None:
    """Time of the first line at or after ``after`` that holds every needle."""
    return next((t for t, line in events if t >= after and all(n in line for n in needles)), None)


def start_phases(
    events: list[tuple[float, str]], t_cli: float, hub_started: float | None, t_up: float
) -> dict[str, float | None]:
    """Where the seconds of one ``insitu up`` went (epoch times in, seconds out).

    ``hub_started``: when the CLI said it started JupyterHub (its line, read as printed).
    """
    first = events[0][0] if events else None
    proxy = _first(events, "Starting proxy")
    api = _first(events, "Hub API listening")
    running = _first(events, "JupyterHub is now running")

    def d(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    return {
        "cli_before_hub": d(t_cli, hub_started),
        "hub_imports_and_config": d(hub_started, first),
        "hub_init": d(first, proxy),
        "proxy_start": d(proxy, api),
        "services_start": d(api, running),
        "cli_health_checks": d(running, t_up),
    }


def spawn_phases(
    events: list[tuple[float, str]], name: str, t_post: float, t_ready: float
) -> dict[str, Any]:
    """Where the seconds of one spawn went, from the hub's log (a spawn at a time)."""
    spawning = _first(events, "JupyterHub spawner", "] Spawning ", after=t_post - 1)
    running = _first(events, "is running at:", after=spawning or t_post)
    took = _first(events, f"User {name} took", after=running or t_post)
    imports = {}
    for _, line in events:
        m = re.search(r"Extension package (\S+) took ([\d.]+)s to import", line)
        if m:
            imports[m.group(1)] = float(m.group(2))

    def d(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    return {
        "hub_before_process": d(t_post, spawning),
        "server_start": d(spawning, running),
        "hub_notices": d(running, took),
        "route_and_reply": d(took, t_ready),
        "extension_imports": imports,
    }


# -- a platform -----------------------------------------------------------------------------


@dataclass
class Platform:
    """One ``insitu up`` of its own: data folder, ports, settings."""

    label: str
    data_dir: Path
    port: int
    admin: str
    extra_env: dict[str, str] = field(default_factory=dict)
    admin_password: str | None = None
    users: list[str] = field(default_factory=list)  # accounts this bench made here

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "hub" / "jupyterhub.log"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "hub" / "admin_token.secret").read_text().strip()

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("INSITU_") and k != "PYTHONPATH"
        }
        env |= {
            "INSITU_DATA_DIR": str(self.data_dir),
            "XDG_CONFIG_HOME": str(self.data_dir / "config"),
            "INSITU_HUB__PORT": str(self.port),
            "INSITU_HUB__INTERNAL_PORTS": str(self.port + 1),
            "INSITU_ACCESS__PORT": str(self.port + 10),
            "INSITU_HUB__HOME_TEMPLATE": str(self.data_dir / "home" / "{username}"),
            "INSITU_HUB__IDLE_TIMEOUT": "0",
            "INSITU_HUB__AUTH_CACHE_SECONDS": str(AUTH_CACHE_SECONDS),
            "INSITU_HUB__ADMIN": self.admin,
        }
        return env | self.extra_env

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "insitu"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=BENCH_DIR.parent,
        )

    def fresh(self) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        self.data_dir.chmod(0o755)  # users' kernels read the catalog in it

    def up(self, timeout: float = 600) -> dict[str, Any]:
        """``insitu up --detach``; its seconds, its progress lines and the hub log's phases."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        t_cli, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(
            # -u: its lines arrive as printed (the hub it starts does not inherit it)
            [sys.executable, "-u", "-m", "insitu.cli", "up", "--detach", "--timeout", str(timeout)],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=BENCH_DIR.parent,
        )
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append((round(time.monotonic() - t0, 3), line.rstrip()))
        rc = proc.wait()
        up_s = time.monotonic() - t0
        out = "\n".join(line for _, line in lines)
        if rc != 0:
            raise RuntimeError(f"insitu up ({self.label}) failed ({rc}):\n{out[-3000:]}")
        m = re.search(r"with password (\S+)", out)
        if m:
            self.admin_password = m.group(1)
            (self.data_dir / "bench-admin.txt").write_text(self.admin_password)
            (self.data_dir / "bench-admin.txt").chmod(0o600)
        elif self.admin_password is None:
            self.admin_password = (self.data_dir / "bench-admin.txt").read_text().strip()
        started = next((t for t, line in lines if line.startswith("Starting JupyterHub")), None)
        hub_started = None if started is None else t_cli + started
        events = _log_events(self.log, offset)
        return {
            "up_s": up_s,
            "indexed_demo": "indexing the CMIP6 demo archive" in out,
            "lines": [[t, line] for t, line in lines if " answers (" in line],
            "phases": start_phases(events, t_cli, hub_started, t_cli + up_s),
        }

    def down(self) -> float:
        t0 = time.monotonic()
        self.cli("down", timeout=180)
        return time.monotonic() - t0

    def add_user(self, name: str, password: str) -> None:
        pw_file = self.data_dir / f".{name}.pw"
        pw_file.write_text(password)
        try:
            for attempt in range(5):  # useradd may find /etc/passwd locked by another session
                r = self.cli("user", "add", name, "--password-file", str(pw_file))
                if r.returncode == 0:
                    self.users.append(name)
                    return
                time.sleep(1 + attempt)
            raise RuntimeError(f"insitu user add {name} failed:\n{r.stdout}\n{r.stderr}")
        finally:
            pw_file.unlink(missing_ok=True)

    def remove_users(self) -> list[str]:
        problems = []
        for name in [*self.users, self.admin]:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                r = self.cli("user", "remove", name, "--delete-home")
                if r.returncode != 0:
                    # not in the registry (a failed add): the unix account still goes
                    u = subprocess.run(["userdel", "--remove", name], capture_output=True)
                    if u.returncode != 0:
                        problems.append(f"{name}: {r.stderr.strip()} {u.stderr!r}")
        self.users.clear()
        return problems


def variant_env(variant: str, baseline_args: list[str]) -> dict[str, str]:
    """The settings that make a platform run ``variant`` (see the module's docstring)."""
    singleuser = str(VENV_BIN / "jupyterhub-singleuser")
    launcher = [sys.executable, "-c", LAUNCH]
    if variant == "defaults":
        config = {"cmd": [*UMASK_WRAP, singleuser], "args": baseline_args}
        return {
            "INSITU_HUB__SPAWNER": "jupyterhub.spawner.LocalProcessSpawner",
            "INSITU_HUB__SPAWNER_CONFIG": json.dumps(config),
        }
    if variant == "committed":
        return {}
    # The hub imports PromptLocalProcessSpawner from this file; users' servers do not
    # get the path.
    env: dict[str, str] = {}
    config: dict[str, Any] = {"environment": {"PYTHONPATH": ""}}
    if variant in ("launcher", "proposed"):
        config["cmd"] = [*UMASK_WRAP, *launcher]
    if variant in ("prompt", "proposed"):
        env = {"INSITU_HUB__SPAWNER": "hub_bench.PromptLocalProcessSpawner"}
        config.setdefault("cmd", [*UMASK_WRAP, singleuser])  # the wrap config.py gives 'local'
    env |= {"PYTHONPATH": str(BENCH_DIR), "INSITU_HUB__SPAWNER_CONFIG": json.dumps(config)}
    return env


def baseline_singleuser_args(plat: Platform) -> list[str]:
    """The options config.py gives the server, less those of ``_quick_start_args``."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(plat.env())
    try:
        from insitu.hub.singleuser import _quick_start_args, singleuser_args
        from insitu.settings import Settings

        settings = Settings.load()
        quick = set(_quick_start_args(settings))
        ours = [a for a in singleuser_args(settings) if a not in quick]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return [f"--HubAuth.cache_max_age={AUTH_CACHE_SECONDS}", *ours]


# -- a user, as a browser and a notebook client do --------------------------------------------


def _cookie(client: Any, name: str, path: str) -> str:
    for c in client.cookies.jar:
        if c.name == name and c.path == path:
            return str(c.value)
    raise StepFailed(f"no {name} cookie for {path}")


async def _login(web: Any, name: str, password: str) -> None:
    r = await web.get("/hub/login")
    if r.status_code != 200:
        raise StepFailed(f"GET /hub/login answered {r.status_code}")
    r = await web.post(
        "/hub/login",
        data={"username": name, "password": password, "_xsrf": _cookie(web, "_xsrf", "/hub/")},
    )
    if r.status_code != 302:
        raise StepFailed(f"POST /hub/login answered {r.status_code}")


async def _spawn(web: Any, name: str) -> None:
    """The spawn page (as a browser follows it), then its progress stream until ready."""
    url = "/hub/spawn"
    for _ in range(10):
        r = await web.get(url)
        if r.status_code in (301, 302, 303, 307):
            url = r.headers["location"]
            if url.startswith(f"/user/{name}/"):
                return  # ready within the spawn page's own wait
            continue
        if r.status_code != 200:
            raise StepFailed(f"GET {url} answered {r.status_code}")
        break
    headers = {"X-XSRFToken": _cookie(web, "_xsrf", "/hub/"), "Accept": "text/event-stream"}
    async with web.stream("GET", f"/hub/api/users/{name}/server/progress", headers=headers) as r:
        if r.status_code != 200:
            raise StepFailed(f"progress stream answered {r.status_code}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("ready"):
                return
            if event.get("failed"):
                raise StepFailed(f"spawn failed: {event.get('message', '')}")
    raise StepFailed("the progress stream ended before the server was ready")


async def _lab(web: Any, name: str) -> None:
    r = await web.get(f"/user/{name}/lab", follow_redirects=True)
    if r.status_code != 200 or "jupyter-config-data" not in r.text:
        raise StepFailed(f"JupyterLab answered {r.status_code} at {r.url.path}")


def _message(kind: str, content: dict[str, Any], user: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": user,
            "session": uuid.uuid4().hex,
            "msg_type": kind,
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


async def _reply(ws: Any, msg_id: str, until: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """Messages answering ``msg_id`` up to the one ``until`` accepts."""
    got = []
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        got.append(msg)
        if until(msg):
            return got


async def user_session(
    base: str,
    name: str,
    password: str,
    *,
    token: str | None = None,
    code: str | None = None,
    timeout: float = 900,
) -> dict[str, Any]:
    """One user's visit; seconds of each step, or the reason it failed."""
    import httpx
    import websockets

    steps: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {"user": name, "steps": steps}
    t_start = time.monotonic()

    async def step(label: str, coro: Any) -> Any:
        t0 = time.monotonic()
        try:
            out = await asyncio.wait_for(coro, timeout)
        except Exception as exc:
            steps[label] = {"error": _reason(exc), "s": time.monotonic() - t0}
            raise StepFailed(label) from exc
        steps[label] = {"s": time.monotonic() - t0}
        return out

    limits = httpx.Timeout(timeout, connect=60)
    async with httpx.AsyncClient(base_url=base, timeout=limits) as web:
        try:
            await step("login", _login(web, name, password))
            await step("spawn", _spawn(web, name))
            await step("lab", _lab(web, name))
            if code is not None and token is not None:
                headers = {"Authorization": f"token {token}"}
                api = f"/user/{name}/api/kernels"

                async def start_kernel() -> tuple[str, Any]:
                    r = await web.post(api, json={"name": "python3"}, headers=headers)
                    if r.status_code != 201:
                        raise StepFailed(f"POST kernels answered {r.status_code}")
                    kernel = r.json()["id"]
                    ws_url = base.replace("http", "ws", 1) + f"{api}/{kernel}/channels"
                    # No keepalive pings from the client, as a browser sends none: under
                    # load a server may not answer one for 20 s and still work.
                    ws = await websockets.connect(
                        ws_url,
                        additional_headers=headers,
                        max_size=2**26,
                        open_timeout=timeout,
                        ping_interval=None,
                    )
                    info = _message("kernel_info_request", {}, name)
                    await ws.send(json.dumps(info))
                    msg_id = info["header"]["msg_id"]
                    await _reply(ws, msg_id, lambda m: m["msg_type"] == "kernel_info_reply")
                    return kernel, ws

                kernel, ws = await step("kernel", start_kernel())
                try:

                    async def run() -> dict[str, Any]:
                        content = {"code": code, "silent": False, "store_history": False}
                        msg = _message("execute_request", content, name)
                        await ws.send(json.dumps(msg))
                        got = await _reply(
                            ws,
                            msg["header"]["msg_id"],
                            lambda m: (
                                m["msg_type"] == "status"
                                and m["content"]["execution_state"] == "idle"
                            ),
                        )
                        errors = [m["content"] for m in got if m["msg_type"] == "error"]
                        if errors:
                            raise StepFailed(f"{errors[0]['ename']}: {errors[0]['evalue']}")
                        text = "".join(
                            m["content"]["text"] for m in got if m["msg_type"] == "stream"
                        )
                        found = re.search(r"RESULT (.*)", text)
                        if not found:
                            raise StepFailed(f"no result in the output: {text[-300:]!r}")
                        parsed: dict[str, Any] = json.loads(found.group(1))
                        return parsed

                    result["computed"] = await step("exec", run())
                finally:
                    await ws.close()
                    with contextlib.suppress(Exception):
                        await web.delete(f"{api}/{kernel}", headers=headers)
        except StepFailed:
            pass
    result["ok"] = all("error" not in s for s in steps.values())
    result["total_s"] = time.monotonic() - t_start
    return result


# -- part 1: start-up -----------------------------------------------------------------------


def part_startup(args: argparse.Namespace, sfx: str, platforms: list[Platform]) -> dict[str, Any]:
    plat = Platform("startup", args.data_dir / "startup", args.port, f"hb{sfx}adm")
    platforms.append(plat)
    plat.fresh()
    starts: list[dict[str, Any]] = []
    kinds = ["first"] + (["cold"] if not args.no_cold else []) + ["warm"] * args.warm
    cache_paths = [Path(sys.prefix), Path("/usr/lib/python3.11"), plat.data_dir]
    node = shutil.which("node")
    if node:
        cache_paths.append(Path(node).resolve())
    for kind in kinds:
        record: dict[str, Any] = {"kind": kind, "load_before": os.getloadavg()[0]}
        if kind == "cold":
            record["evicted"] = evict(cache_paths)
            say(
                f"[startup] evicted {record['evicted']['files']} files "
                f"({record['evicted']['bytes'] / 2**30:.1f} GiB) from the page cache"
            )
        t0, read0 = time.monotonic(), disk_read_bytes()
        try:
            record |= plat.up(timeout=args.timeout)
            assert plat.admin_password
            session = asyncio.run(
                user_session(plat.base, plat.admin, plat.admin_password, timeout=args.timeout)
            )
            record["session"] = session
            record["usable_s"] = time.monotonic() - t0
            record["disk_read_mb"] = (disk_read_bytes() - read0) / 2**20
            record["ok"] = session["ok"]
        except Exception as exc:
            record |= {"ok": False, "error": _reason(exc)}
        finally:
            record["down_s"] = plat.down()
        starts.append(record)
        steps = record.get("session", {}).get("steps", {})
        say(
            f"[startup] {kind:5s}: up {record.get('up_s', float('nan')):5.1f} s, then "
            + ", ".join(
                f"{k} {v['s']:.1f} s" + (" FAILED " + v["error"] if "error" in v else "")
                for k, v in steps.items()
            )
            + f" -> usable after {record.get('usable_s', float('nan')):.1f} s "
            f"(phases {record.get('phases')}; {record.get('disk_read_mb', 0):.0f} MB read from "
            f"the disk; load {record['load_before']:.1f}; "
            f"down {record['down_s']:.1f} s)"
        )
    warm = [s["usable_s"] for s in starts if s["kind"] == "warm" and s.get("ok")]
    return {"starts": starts, "warm_usable": _stats(warm)}


# -- part 2: spawn latency ------------------------------------------------------------------


def _timed_spawn(http: Any, plat: Platform, name: str, timeout: float) -> dict[str, Any]:
    offset = plat.log.stat().st_size
    uid = pwd.getpwnam(name).pw_uid
    load = os.getloadavg()[0]
    t_post, t0 = time.time(), time.monotonic()
    r = http.post(f"/users/{name}/server")
    if r.status_code == 202:  # not ready within the hub's slow_spawn_timeout: poll
        while time.monotonic() - t0 < timeout:
            server = http.get(f"/users/{name}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                break
            if not server and time.monotonic() - t0 > 5:
                return {"error": "the server stopped while starting", "load": load}
            time.sleep(0.05)
        else:
            return {"error": f"not ready within {timeout:.0f} s", "load": load}
    elif r.status_code != 201:
        return {"error": f"POST server answered {r.status_code}: {r.text[:200]}", "load": load}
    ready = time.monotonic() - t0
    cpu = uid_cpu(uid, t_post)
    time.sleep(0.2)  # the log's last lines
    phases = spawn_phases(_log_events(plat.log, offset), name, t_post, t_post + ready)
    return {"s": ready, "server_cpu_s": cpu, "load": load, **phases}


def _stop(http: Any, name: str, timeout: float = 120) -> float:
    t0 = time.monotonic()
    http.delete(f"/users/{name}/server")
    while time.monotonic() - t0 < timeout:
        if not http.get(f"/users/{name}").json().get("servers"):
            break
        time.sleep(0.1)
    return time.monotonic() - t0


def part_spawn(args: argparse.Namespace, sfx: str, platforms: list[Platform]) -> dict[str, Any]:
    import httpx

    variants = [v for v in args.variants.split(",") if v]
    plats: dict[str, Platform] = {}
    for v in variants:
        k = VARIANTS.index(v) + 1
        plat = Platform(v, args.data_dir / v, args.port + 20 * k, f"hb{sfx}a{k}")
        platforms.append(plat)
        plat.fresh()
        plat.extra_env = variant_env(v, baseline_singleuser_args(plat))
        plats[v] = plat
        say(f"[spawn] {v}: starting its platform on port {plat.port}")
        plat.up(timeout=args.timeout)
    clients = {
        v: httpx.Client(
            base_url=f"{p.base}/hub/api",
            headers={"Authorization": f"token {p.admin_token}"},
            timeout=args.timeout,
        )
        for v, p in plats.items()
    }
    out: dict[str, dict[str, list[dict[str, Any]]]] = {v: {"first": [], "later": []} for v in plats}
    password = secrets.token_urlsafe(12)
    for i in range(args.cycles):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        for v in order:
            plat, http = plats[v], clients[v]
            name = f"hb{sfx}{v[0]}{i}"
            plat.add_user(name, password)
            for kind in ["first"] + ["later"] * args.later:
                time.sleep(args.pause)
                rec = _timed_spawn(http, plat, name, args.timeout)
                rec["user"] = name
                rec["stop_s"] = _stop(http, name)
                out[v][kind].append(rec)
                say(
                    f"[spawn] cycle {i + 1}/{args.cycles} {v:9s} {kind:5s}: "
                    + (
                        f"{rec['s']:5.2f} s (server {rec['server_start']} s, hub notices "
                        f"{rec['hub_notices']} s, cpu {rec['server_cpu_s']:.2f} s)"
                        if "s" in rec
                        else f"FAILED {rec['error']}"
                    )
                    + f"; load {rec['load']:.1f}"
                )
    for http in clients.values():
        http.close()
    summary: dict[str, Any] = {}
    for v, kinds in out.items():
        summary[v] = {}
        for kind, recs in kinds.items():
            ok = [r for r in recs if "s" in r]
            summary[v][kind] = {
                "latency_s": _stats([r["s"] for r in ok]),
                "server_cpu_s": _stats([r["server_cpu_s"] for r in ok]),
                "server_start_s": _stats([r["server_start"] for r in ok if r["server_start"]]),
                "hub_notices_s": _stats(
                    [r["hub_notices"] for r in ok if r["hub_notices"] is not None]
                ),
                "failures": [r for r in recs if "s" not in r],
            }
        both = [r["s"] for kind in kinds.values() for r in kind if "s" in r]
        summary[v]["all"] = _stats(both)
    return {"records": out, "summary": summary, "platforms_running": list(plats)}


# -- part 3: many users at once -------------------------------------------------------------


def _small_dataset(plat: Platform) -> tuple[str, str, int]:
    """The smallest Amon dataset of the demo catalog, its first variable, and the count."""
    r = plat.cli("catalog", "search", "table_id=Amon", "--json", "--limit", "1000")
    found = json.loads(r.stdout)
    best = min(found["results"], key=lambda d: d.get("size") or 0)
    variables = best.get("variables") or [best["facets"]["variable_id"]]
    variable = variables[0] if isinstance(variables[0], str) else variables[0]["name"]
    return best["dataset_id"], variable, int(found["total"])


async def _all_users(
    plat: Platform, users: dict[str, tuple[str, str]], code: str, timeout: float
) -> list[dict[str, Any]]:
    sessions = [
        user_session(plat.base, name, pw, token=token, code=code, timeout=timeout)
        for name, (pw, token) in users.items()
    ]
    done = await asyncio.gather(*sessions, return_exceptions=True)
    out = []
    for name, d in zip(users, done, strict=True):
        if isinstance(d, BaseException):
            out.append({"user": name, "ok": False, "steps": {}, "error": _reason(d)})
        else:
            out.append(d)
    return out


def part_users(args: argparse.Namespace, sfx: str, platforms: list[Platform]) -> dict[str, Any]:
    import httpx

    variant = args.users_variant
    k = VARIANTS.index(variant) + 1
    existing = [p for p in platforms if p.label == variant]
    if existing:
        plat = existing[0]
    else:
        plat = Platform(variant, args.data_dir / variant, args.port + 20 * k, f"hb{sfx}a{k}")
        platforms.append(plat)
        plat.fresh()
        plat.extra_env = variant_env(variant, baseline_singleuser_args(plat))
        say(f"[users] {variant}: starting its platform on port {plat.port}")
        plat.up(timeout=args.timeout)
    for other in platforms:  # idle hubs, gateways and data services: less noise
        if other is not plat:
            other.down()
    dataset, variable, total = _small_dataset(plat)
    code = KERNEL_CODE.format(dataset=dataset, variable=variable)
    say(f"[users] adding {args.users} unix accounts (insitu user add) ...")
    users: dict[str, tuple[str, str]] = {}
    with httpx.Client(
        base_url=f"{plat.base}/hub/api",
        headers={"Authorization": f"token {plat.admin_token}"},
        timeout=120,
    ) as http:
        for i in range(args.users):
            name = f"hb{sfx}u{i:02d}"
            password = secrets.token_urlsafe(12)
            plat.add_user(name, password)
            r = http.post(f"/users/{name}/tokens", json={"expires_in": 7200, "note": "bench"})
            r.raise_for_status()
            users[name] = (password, r.json()["token"])
    offset = plat.log.stat().st_size
    say(f"[users] {args.users} users log in at once on {variant} (load {os.getloadavg()[0]:.1f})")
    t0 = time.monotonic()
    with Sampler() as sampler:
        sessions = asyncio.run(_all_users(plat, users, code, args.timeout))
    wall = time.monotonic() - t0
    for s in sessions:
        c = s.get("computed")
        if c and c.get("total") != total:
            s["ok"] = False
            s["steps"]["exec"]["error"] = f"search gave {c.get('total')}, the catalog {total}"
    events = _log_events(plat.log, offset)
    hub_took = {}
    for _, line in events:
        m = re.search(r"User (\S+) took ([\d.]+) seconds to start", line)
        if m:
            hub_took[m.group(1)] = float(m.group(2))
    never = [line for _, line in events if "never showed up" in line or "failed to start" in line]
    steps: dict[str, Any] = {}
    for step in STEPS:
        tried = [s for s in sessions if step in s["steps"]]
        ok = [s["steps"][step]["s"] for s in tried if "error" not in s["steps"][step]]
        steps[step] = {"tried": len(tried), "ok": len(ok), "latency_s": _stats(ok)}
    ok_total = [s["total_s"] for s in sessions if s["ok"]]
    failures = [
        {"user": s["user"], "step": k, "reason": v["error"]}
        for s in sessions
        for k, v in s["steps"].items()
        if "error" in v
    ] + [{"user": s["user"], "step": "-", "reason": s["error"]} for s in sessions if "error" in s]
    for f in failures:
        say(f"[users] FAILED {f['user']} at {f['step']}: {f['reason']}")
    summary = {
        "variant": variant,
        "users": args.users,
        "succeeded": sum(1 for s in sessions if s["ok"]),
        "success_rate": sum(1 for s in sessions if s["ok"]) / max(1, len(sessions)),
        "steps": steps,
        "end_to_end_s": _stats(ok_total),
        "wall_s": wall,
        "hub_spawn_took_s": _stats(list(hub_took.values())),
        "hub_gave_up": never[:20],
        "failures": failures,
        "machine_during": sampler.summary(),
        "dataset": dataset,
        "catalog_amon_total": total,
    }
    say(
        f"[users] {summary['succeeded']}/{args.users} succeeded in {wall:.0f} s; "
        + "; ".join(
            f"{k} p50 {v['latency_s'].get('p50', float('nan')):.1f} / p95 "
            f"{v['latency_s'].get('p95', float('nan')):.1f} / max "
            f"{v['latency_s'].get('max', float('nan')):.1f} s ({v['ok']}/{v['tried']})"
            for k, v in steps.items()
        )
    )
    return {"summary": summary, "sessions": sessions}


# -- part 4: what the server imports ---------------------------------------------------------

# Where a module's import time is charged: the first of these among the module and the
# modules that imported it (in this order), else "other".
IMPORT_CAUSES = [
    "rfc3987_syntax",
    "dask_labextension",
    "ipyparallel",
    "jupyterlab",
    "jupyter_lsp",
    "jupyter_server_proxy",
    "jupyter_server_ydoc",
    "jupyter_server_fileid",
    "jupyter_server_terminals",
    "jupyterhub.singleuser.mixins",
    "jupyter_server",
    "jupyterhub",
]


def import_profile(text: str) -> dict[str, Any]:
    """Seconds of ``python -X importtime`` output charged to :data:`IMPORT_CAUSES`."""
    rows: list[tuple[int, int, str]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line[len("import time:") :].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, int(own), name.strip()))
    parent: dict[int, int] = {}
    open_: list[int] = []
    for i, (depth, _, _) in enumerate(rows):  # a module is listed after what it imported
        while open_ and rows[open_[-1]][0] > depth:
            parent[open_.pop()] = i
        open_.append(i)
    charged: dict[str, float] = {}
    for i, (_, own, _) in enumerate(rows):
        chain, j = [rows[i][2]], i
        while j in parent:
            j = parent[j]
            chain.append(rows[j][2])
        cause = next(
            (c for c in IMPORT_CAUSES if any(n == c or n.startswith(c + ".") for n in chain)),
            "other",
        )
        charged[cause] = charged.get(cause, 0.0) + own / 1e6
    return {
        "total_s": sum(charged.values()),
        "by_cause_s": dict(sorted(charged.items(), key=lambda kv: -kv[1])),
    }


def part_imports(args: argparse.Namespace, sfx: str, platforms: list[Platform]) -> dict[str, Any]:
    """Each variant's second server start with ``PYTHONPROFILEIMPORTTIME=1``."""
    import httpx

    out: dict[str, Any] = {}
    for variant in [v for v in args.import_variants.split(",") if v]:
        k = VARIANTS.index(variant) + 1
        label = f"imports-{variant}"
        plat = Platform(label, args.data_dir / label, args.port + 20 * k, f"hb{sfx}i{k}")
        platforms.append(plat)
        plat.fresh()
        env = variant_env(variant, baseline_singleuser_args(plat))
        config = json.loads(env.get("INSITU_HUB__SPAWNER_CONFIG", "{}"))
        config.setdefault("environment", {})["PYTHONPROFILEIMPORTTIME"] = "1"
        plat.extra_env = env | {"INSITU_HUB__SPAWNER_CONFIG": json.dumps(config)}
        say(f"[imports] {variant}: starting its platform on port {plat.port}")
        plat.up(timeout=args.timeout)
        name = f"hb{sfx}m{k}"
        plat.add_user(name, secrets.token_urlsafe(12))
        with httpx.Client(
            base_url=f"{plat.base}/hub/api",
            headers={"Authorization": f"token {plat.admin_token}"},
            timeout=args.timeout,
        ) as http:
            _timed_spawn(http, plat, name, args.timeout)  # the first, with the home's set-up
            _stop(http, name)
            offset = plat.log.stat().st_size
            rec = _timed_spawn(http, plat, name, args.timeout)
            _stop(http, name)
        with open(plat.log, "rb") as f:
            f.seek(offset)
            prof = import_profile(f.read().decode(errors="replace"))
        out[variant] = prof | {"spawn": rec}
        say(
            f"[imports] {variant}: {prof['total_s']:.2f} s of imports: "
            + ", ".join(f"{c} {t:.2f}" for c, t in prof["by_cause_s"].items() if t >= 0.01)
        )
        plat.down()
    return out


# -- the plot -------------------------------------------------------------------------------


def plot(res: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("spawn", "users", "startup", "imports") if p in res]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    for ax, part in zip(axes[0], panels, strict=True):
        if part == "spawn":
            recs = res["spawn"]["records"]
            labels, data = [], []
            for v, kinds in recs.items():
                for kind, rs in kinds.items():
                    labels.append(f"{v}\n{kind}")
                    data.append([r["s"] for r in rs if "s" in r])
            ax.boxplot(data, showfliers=False)
            for i, d in enumerate(data, start=1):
                ax.plot([i + 0.08 * ((j % 5) - 2) for j in range(len(d))], d, "o", alpha=0.6)
            ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
            ax.axhline(3.0, color="red", ls="--", lw=1, label="target: median < 3 s")
            ax.set_ylabel("seconds, POST server -> ready")
            ax.set_title("Spawn latency (local spawner), interleaved")
            ax.legend(fontsize=8)
        elif part == "users":
            sessions = res["users"]["sessions"]
            data, labels = [], []
            for step in STEPS:
                vals = [
                    s["steps"][step]["s"]
                    for s in sessions
                    if step in s["steps"] and "error" not in s["steps"][step]
                ]
                tried = sum(1 for s in sessions if step in s["steps"])
                labels.append(f"{step}\n{len(vals)}/{tried} ok")
                data.append(vals)
            data.append([s["total_s"] for s in sessions if s["ok"]])
            labels.append(f"end to end\n{len(data[-1])}/{len(sessions)} ok")
            ax.boxplot(data, whis=(0, 100))
            for i, d in enumerate(data, start=1):
                ax.plot([i] * len(d), d, ".", alpha=0.5)
            ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
            ax.set_ylabel("seconds")
            n = res["users"]["summary"]["users"]
            ax.set_title(f"{n} users at once: latency of each step")
        elif part == "imports":
            variants = list(res["imports"])
            bottoms = [0.0] * len(variants)
            for cause in [*IMPORT_CAUSES, "other"]:
                vals = [res["imports"][v]["by_cause_s"].get(cause, 0.0) for v in variants]
                if max(vals) < 0.01:
                    continue
                ax.bar(variants, vals, bottom=bottoms, label=cause)
                bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
            ax.set_ylabel("seconds of imports (python -X importtime)")
            ax.set_title("What a server's start imports")
            ax.legend(fontsize=7)
        else:
            starts = res["startup"]["starts"]
            names = [
                f"{s['kind']} {sum(1 for t in starts[: i + 1] if t['kind'] == s['kind'])}"
                for i, s in enumerate(starts)
            ]
            bottoms = [0.0] * len(starts)
            for key in ["up_s", "login", "spawn", "lab"]:
                vals = []
                for s in starts:
                    if key == "up_s":
                        vals.append(s.get("up_s") or 0.0)
                    else:
                        vals.append(s.get("session", {}).get("steps", {}).get(key, {}).get("s", 0))
                ax.bar(names, vals, bottom=bottoms, label=key.replace("_s", ""))
                bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
            ax.set_ylabel("seconds from 'insitu up --detach'")
            ax.set_title("Start-up to a usable hub")
            ax.legend(fontsize=8)
    fig.suptitle(
        f"insitu hub bench {res['date']} (load {res['load_avg_start'][0]:.1f} at start)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--parts", default="startup,spawn,users", help="of startup,spawn,users,imports")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"spawn variants, interleaved (of {', '.join(VARIANTS)})",
    )
    ap.add_argument("--cycles", type=int, default=5, help="fresh users per variant (5)")
    ap.add_argument("--later", type=int, default=2, help="later spawns per fresh user (2)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between spawns (1)")
    ap.add_argument("--users", type=int, default=20, help="users at once (20)")
    ap.add_argument("--users-variant", default="committed", choices=VARIANTS)
    ap.add_argument(
        "--import-variants",
        default="defaults,committed,proposed",
        help="variants whose server imports --parts imports profiles",
    )
    ap.add_argument("--warm", type=int, default=2, help="warm starts (2)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold start")
    ap.add_argument("--port", type=int, default=PORT, help=f"first port ({PORT})")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR / "hub")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per step (900)")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"startup", "spawn", "users", "imports"}
    bad = {v for v in args.variants.split(",") if v} - set(VARIANTS)
    if unknown or bad:
        ap.error(f"unknown parts {sorted(unknown)} or variants {sorted(bad)}")
    if os.geteuid() != 0:
        ap.error("run as root: the users are real unix accounts ('insitu user add')")
    used = (args.port, args.port + 20 * len(VARIANTS) + 10)
    if any(used[0] <= hi and lo <= used[1] for lo, hi in RESERVED_PORTS):
        ap.error(f"ports {used[0]}-{used[1]} meet others' {RESERVED_PORTS}: pick another --port")
    args.data_dir = args.data_dir.resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.data_dir.chmod(0o755)
    for parent in args.data_dir.parents:  # users' kernels read the catalog below it
        if parent.stat().st_mode & 0o005 != 0o005:
            ap.error(f"{parent} is not readable by others; pick another --data-dir")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_out = args.json_out or args.data_dir / f"hub-results-{stamp}.json"

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    sfx = secrets.token_hex(2)
    res: dict[str, Any] = {
        "benchmark": "hub",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_info(),
        "versions": versions(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "load_avg_start": os.getloadavg(),
    }
    t_start = time.monotonic()
    platforms: list[Platform] = []
    try:
        if "startup" in parts:
            res["startup"] = part_startup(args, sfx, platforms)
        if "spawn" in parts:
            res["spawn"] = part_spawn(args, sfx, platforms)
        if "users" in parts:
            res["users"] = part_users(args, sfx, platforms)
        if "imports" in parts:
            res["imports"] = part_imports(args, sfx, platforms)
    finally:
        problems = []
        for plat in platforms:
            plat.down()
            problems += plat.remove_users()
        if problems:
            say("[cleanup] could not remove: " + "; ".join(problems))
        res["cleanup_problems"] = problems
    res["load_avg_end"] = os.getloadavg()
    res["total_s"] = time.monotonic() - t_start
    line = json.dumps(res, default=str)
    print(line, flush=True)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(line + "\n")
    png = json_out.with_suffix(".png")
    try:
        if plot(res, png):
            say(f"wrote {json_out} and {png}")
        else:
            say(f"wrote {json_out}")
    except Exception as exc:
        say(f"wrote {json_out}; the plot failed: {_reason(exc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

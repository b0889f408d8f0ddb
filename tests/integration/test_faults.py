"""Faults injected for real, with nothing lost: the data service killed with ``kill -9``
while a job runs, PostgreSQL stopped in the middle of a scan, a full filesystem under a
result and under the results cache, and two scans of one collection at once.

(A Dask worker killed in the middle of a time mean: ``test_compute.py``.)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
INSITU = [sys.executable, "-m", "insitu.cli"]
MIROC_AMON_TA = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
MIROC_DAY_TA = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.day.ta.gn.v20191016"


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {"INSITU_DATA_DIR": str(data), "XDG_CONFIG_HOME": str(data / "cfg"), **extra}
    return env


def _cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*INSITU, *args], env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert out.returncode == 0, f"insitu {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _partial_files(folder: Path) -> list[Path]:
    """NetCDF files under ``folder`` that do not open (a half-written result)."""
    bad = []
    for path in folder.rglob("*.nc"):
        try:
            with xr.open_dataset(path) as ds:
                ds.load()
        except Exception:
            bad.append(path)
    return bad


# -- the data service killed while a job runs -------------------------------------------


class Service:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*INSITU, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "insitu serve exited while starting"
            assert time.monotonic() < deadline, "insitu serve did not answer in 60 s"
            time.sleep(0.2)

    def kill(self) -> None:
        """``kill -9`` the server and everything it started (its Dask cluster too)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def service(tmp_path: Path, demo_root: Path) -> Iterator[tuple[Service, dict[str, str]]]:
    env = _env(tmp_path / "data")
    _cli(env, "catalog", "add", "demo", str(demo_root))
    _cli(env, "catalog", "scan", "demo")
    secret = _cli(env, "token", "create", "ops", "--scope", "read", "--scope", "compute")
    token = re.search(r"ins_\S+", secret.stdout)
    assert token, secret.stdout
    svc = Service(env, _free_port())
    svc.start()
    try:
        yield svc, {"Authorization": f"Bearer {token.group(0)}"}
    finally:
        svc.stop()


def _job(svc: Service, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{svc.url}/api/v1/jobs/{job_id}", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_job_running_when_the_service_is_killed_reads_failed_and_runs_again(
    service: tuple[Service, dict[str, str]], tmp_path: Path
) -> None:
    svc, headers = service
    body = {"operation": "time_mean", "datasets": [MIROC_DAY_TA]}
    r = httpx.post(f"{svc.url}/api/v1/jobs", json=body, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while (status := _job(svc, headers, job_id)["status"]) == "queued":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    assert status == "running", status
    svc.kill()

    # Nothing half-written where results live.
    data = Path(svc.env["INSITU_DATA_DIR"])
    assert _partial_files(data) == []

    svc.start()
    dead = _job(svc, headers, job_id)
    assert dead["status"] == "failed", dead
    assert dead["error"]["type"] == "ServiceStopped", dead
    assert "submit it again" in dead["error"]["message"].lower(), dead

    r = httpx.post(f"{svc.url}/api/v1/jobs", json=body, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    again = r.json()["id"]
    deadline = time.monotonic() + 300
    while (done := _job(svc, headers, again))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the job did not finish in 300 s"
        time.sleep(0.2)
    assert done["status"] == "done", done["error"]
    got = httpx.get(f"{svc.url}{done['links']['result']}", headers=headers, timeout=120)
    assert got.status_code == 200
    path = tmp_path / "again.nc"
    path.write_bytes(got.content)
    with xr.open_dataset(path) as ds:
        assert "time" not in ds["ta"].dims
        assert np.isfinite(ds["ta"].values).any()
    assert _partial_files(data) == []


# -- PostgreSQL stopped during a scan ---------------------------------------------------


def _big_archive(demo_root: Path, root: Path, copies: int) -> int:
    """The demo archive ``copies`` times over, each copy a version of its own (copies: the
    scan counts hard links to one file once)."""
    n = 0
    for i in range(copies):
        for src in demo_root.rglob("*.nc"):
            rel = src.relative_to(demo_root)
            parts = [f"v2099{i:04d}" if re.fullmatch(r"v\d{8}", p) else p for p in rel.parts]
            dst = root.joinpath(*parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            n += 1
    return n


class PrivatePostgres:
    """A PostgreSQL server of this test's own (the shared one is never stopped)."""

    def __init__(self) -> None:
        # Its own folder, which the 'postgres' account can reach (pytest's are root's, 0700).
        self.folder = Path(tempfile.mkdtemp(prefix="insitu-pg-faults-", dir="/tmp"))
        os.chmod(self.folder, 0o755)
        self.env = {
            **os.environ,
            "INSITU_PG_PORT": str(_free_port()),
            "INSITU_PG_DIR": str(self.folder),
        }

    def start(self) -> str:
        out = subprocess.run(
            ["scripts/postgres.sh", "start"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        subprocess.run(
            ["scripts/postgres.sh", "stop"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=120,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _wait_for_scan_lock(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        deadline = time.monotonic() + 120
        query = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        while True:
            with engine.connect() as conn:
                if conn.execute(query).scalar():
                    return
            assert time.monotonic() < deadline, "the scan did not start in 120 s"
            time.sleep(0.05)
    finally:
        engine.dispose()


def _catalog_state(env: dict[str, str]) -> tuple[str, str]:
    listed = _cli(env, "catalog", "list").stdout
    searched = _cli(env, "catalog", "search", "--collection", "big", "--limit", "100000").stdout
    return listed, "\n".join(sorted(searched.splitlines()))


def test_postgres_stopped_during_a_scan_then_a_rescan_completes_the_catalog(
    tmp_path: Path, demo_root: Path
) -> None:
    archive = tmp_path / "big"
    files = _big_archive(demo_root, archive, copies=8)
    pg = PrivatePostgres()
    url = pg.start()
    try:
        env = _env(tmp_path / "data", INSITU_CATALOG__URI=url)
        _cli(env, "catalog", "add", "big", str(archive))
        scan = subprocess.Popen(
            [*INSITU, "catalog", "scan", "big"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_scan_lock(url)  # the scan has begun: it holds the collection's lock
        time.sleep(0.5)
        assert scan.poll() is None, "the scan ended before PostgreSQL could be stopped"
        pg.stop()
        out, err = scan.communicate(timeout=300)
        assert scan.returncode != 0, out
        assert "Traceback" not in err, err
        assert "database" in err.lower() and url.split("@")[-1].split("/")[0] in err, err
        assert "catalog scan big" in err, err  # what to run once it is back

        pg.start()
        _cli(env, "catalog", "scan", "big")
        after = _catalog_state(env)
    finally:
        pg.remove()
    # The same catalog as one uninterrupted scan (SQLite, another data folder).
    ref = _env(tmp_path / "ref")
    _cli(ref, "catalog", "add", "big", str(archive))
    _cli(ref, "catalog", "scan", "big")
    assert after == _catalog_state(ref)
    assert f" {files} " in after[0], after[0]


# -- a full filesystem ------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 KiB tmpfs: too small for a time mean of the demo's monthly ta."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _hidden_or_partial(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_full_disk_under_a_result_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, demo_root: Path, tiny_fs: Path
) -> None:
    env = _env(tmp_path / "data")
    _cli(env, "catalog", "add", "demo", str(demo_root))
    _cli(env, "catalog", "scan", "demo")
    out = tiny_fs / "tm.nc"
    run = _cli(
        env, "compute", "run", "time_mean", "--dataset", MIROC_AMON_TA, "--out", str(out), ok=False
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert "no space left" in run.stderr.lower() and str(tiny_fs) in run.stderr, run.stderr
    assert _hidden_or_partial(tiny_fs) == []  # no partial file, no temporary left


def test_a_full_disk_under_the_results_cache_keeps_the_cache_consistent(
    tmp_path: Path, demo_root: Path, tiny_fs: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "results").symlink_to(tiny_fs)  # DATA_DIR/results: the results cache
    env = _env(data)
    _cli(env, "catalog", "add", "demo", str(demo_root))
    _cli(env, "catalog", "scan", "demo")
    run = _cli(env, "compute", "run", "time_mean", "--dataset", MIROC_AMON_TA, ok=False)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert "no space left" in run.stderr.lower(), run.stderr
    assert str(data / "results") in run.stderr, run.stderr
    assert _hidden_or_partial(tiny_fs) == []
    # Room again: the same run computes and caches a whole result.
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_fs)], check=True)
    ok = _cli(env, "compute", "run", "time_mean", "--dataset", MIROC_AMON_TA)
    assert ok.returncode == 0
    assert _partial_files(tiny_fs) == []
    assert len(list(tiny_fs.rglob("*.nc"))) == 1


# -- two scans at once ------------------------------------------------------------------


def test_two_scans_of_one_collection_at_once_one_waits_or_is_refused(
    tmp_path: Path, demo_root: Path
) -> None:
    archive = tmp_path / "big"
    _big_archive(demo_root, archive, copies=3)
    env = _env(tmp_path / "data")
    _cli(env, "catalog", "add", "big", str(archive))
    scans = [
        subprocess.Popen(
            [*INSITU, "catalog", "scan", "big"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in scans]
    refused = [r for r in results if r[0] != 0]
    passed = [r for r in results if r[0] == 0]
    assert len(passed) >= 1, results
    for _code, _out, err in refused:
        assert "Traceback" not in err, err
        assert "is being scanned" in err and "big" in err, err
    # One did the work; a second that waited found nothing new.
    news = [int(m.group(1)) for _, out, _ in passed if (m := re.search(r"(\d+) new", out))]
    assert sorted(news)[-1] == 326 * 3 and sum(news) == 326 * 3, results
    ref = _env(tmp_path / "ref")
    _cli(ref, "catalog", "add", "big", str(archive))
    _cli(ref, "catalog", "scan", "big")
    assert _catalog_state(env) == _catalog_state(ref)

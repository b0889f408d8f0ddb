"""The compute engine on real clusters: stream vs xarray, a killed worker, the cluster CLI,
and the backend registry's errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from insitu.catalog import Catalog
from insitu.compute import cluster, get_backend, in_process, run
from insitu.errors import BackendUnavailable, ConfigError
from insitu.settings import Settings
from tests.integration.scanned import one_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Catalog]:
    tmp = tmp_path_factory.mktemp("compute")
    cat = Catalog(Settings.load(data_dir=tmp, catalog={"uri": f"sqlite:///{tmp / 'c.db'}"}))
    cat.add_collection("demo", demo_root)
    cat.scan(workers=2)
    yield cat
    cat.close()


def test_streaming_engine_equals_xarray_path(demo: Catalog) -> None:
    ids = demo.search(limit=1000).all_ids
    for dataset_id in ids[::3]:
        streamed = run(demo, "time_mean", [dataset_id], cache=False).open()
        plain = run(demo, "time_mean", [dataset_id], cache=False, engine="xarray").open()
        np.testing.assert_array_equal(streamed["ta"].values, plain["ta"].values)
        assert streamed["ta"].dtype == plain["ta"].dtype
        assert streamed["ta"].attrs == plain["ta"].attrs
        # Field means sum in another order than xarray: equal to one float32 ulp.
        fm = run(demo, "field_mean", [dataset_id], cache=False).open()["ta"]
        fm_plain = run(demo, "field_mean", [dataset_id], cache=False, engine="xarray").open()["ta"]
        np.testing.assert_allclose(fm.values, fm_plain.values, rtol=2.5e-7, atol=0)
        assert fm.dims == fm_plain.dims and fm.dtype == fm_plain.dtype


def _archive(root: Path, n_files: int = 40) -> None:
    d = root / "CMIP6/CMIP/X/M/historical/r1i1p1f1/Amon/tas/gn/v1"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n_files):
        year = 1900 + i
        with netCDF4.Dataset(
            d / f"tas_Amon_M_historical_r1i1p1f1_gn_{year}01-{year}12.nc", "w"
        ) as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", 90)
            nc.createDimension("lon", 180)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.axis = "days since 1900-01-01", "noleap", "T"
            t[:] = np.arange(12) * 30.0 + i * 365 + 15
            lat = nc.createVariable("lat", "f8", ("lat",))
            lat.units, lat.standard_name = "degrees_north", "latitude"
            lat[:] = np.linspace(-89, 89, 90)
            lon = nc.createVariable("lon", "f8", ("lon",))
            lon.units, lon.standard_name = "degrees_east", "longitude"
            lon[:] = np.arange(180) * 2.0
            v = nc.createVariable(
                "tas", "f4", ("time", "lat", "lon"), zlib=True, fill_value=np.float32(1e20)
            )
            v.units, v.standard_name = "K", "air_temperature"
            data = (280 + rng.normal(size=(12, 90, 180))).astype("f4")
            data[:, :5, :] = 1e20  # missing near the pole
            v[:] = data


def test_a_killed_worker_does_not_change_the_result(tmp_path: Path) -> None:
    root = tmp_path / "arch"
    _archive(root)
    with one_dataset(tmp_path, root) as (settings, cat, ds_id):
        reference = run(cat, "time_mean", [ds_id], cache=False, engine="xarray").open()
        with cluster(settings, backend="local", workers=2) as client:
            pids = client.run(os.getpid)
            killed: list[int] = []

            def kill_one() -> None:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if client.processing() and any(client.processing().values()):
                        victim = next(iter(pids.values()))
                        os.kill(victim, signal.SIGKILL)
                        killed.append(victim)
                        return
                    time.sleep(0.005)

            killer = threading.Thread(target=kill_one)
            killer.start()
            out = tmp_path / "out" / "tm.nc"
            result = run(cat, "time_mean", [ds_id], client=client, cache=False, out=out)
            killer.join()
            assert killed, "no task was seen running, so no worker was killed"
            assert killed[0] not in client.run(os.getpid).values()
        # At the output path: the whole, right result and nothing else (no partial file).
        assert result.path == out
        assert [p.name for p in out.parent.iterdir()] == ["tm.nc"]
        got = result.open()
        np.testing.assert_allclose(got["tas"].values, reference["tas"].values, rtol=0, atol=0)
        assert np.isnan(got["tas"].values[:5]).all()


def test_cluster_cli_up_status_scale_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["INSITU_DATA_DIR"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")

    def insitu(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "insitu.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    try:
        assert "Dashboard: http://127.0.0.1:" in insitu("cluster", "up", "--workers", "2")
        status = json.loads(insitu("cluster", "status", "--json"))
        assert (status["backend"], status["workers"]) == ("local", 2)
        assert "1 workers" in insitu("cluster", "scale", "1")
        assert json.loads(insitu("cluster", "status", "--json"))["workers"] == 1
        assert "already running" in insitu("cluster", "up")
    finally:
        stopped = insitu("cluster", "down")
    assert "Stopped the local cluster" in stopped
    assert not (tmp_path / "cluster.json").exists()
    out = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "cluster", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "No cluster is running" in out.stderr


def test_backend_registry_errors() -> None:
    with pytest.raises(ConfigError, match=r"Unknown compute backend 'yarn'.*local, lsf"):
        get_backend("yarn")
    try:
        import dask_gateway  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match=r"pip install 'insitu\[gateway\]'"):
            get_backend("gateway")
    assert get_backend("local").name == "local"
    assert get_backend("slurm").name == "slurm"


# By value (a lambda): a function of this module would make the worker import the module,
# and with it the libraries the check looks for.
_LIBRARIES = ["dask.array", "h5py", "insitu.compute", "netCDF4", "xarray"]
_imported = lambda: sorted(  # noqa: E731
    m for m in _LIBRARIES if m in __import__("sys").modules
)


def test_workers_import_the_libraries_before_their_first_task(tmp_path: Path) -> None:
    """A fresh worker that unpickled an xarray object before importing xarray hit a
    circular import and never ran another task; every worker, a scaled-up one too, now
    imports xarray first; and what the first task of a time mean would import (Dask's
    arrays, h5py) too, so that it is no slower than the next ones."""
    with cluster(Settings.load(data_dir=tmp_path), backend="local", workers=1) as client:
        assert list(client.run(_imported).values()) == [_LIBRARIES]
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        for imported in client.run(_imported).values():
            assert imported == _LIBRARIES


def test_a_cached_result_needs_no_cluster(demo: Catalog, tmp_path: Path) -> None:
    """`insitu compute run` answers a cached result without computing (nor starting a
    cluster, which costs seconds): the second run says neither where it computes nor a
    dashboard, and writes the same bytes."""
    from click.testing import CliRunner

    from insitu.cli.main import cli

    dataset_id = demo.search(limit=1).all_ids[0]
    env = {
        "INSITU_DATA_DIR": str(demo.settings.data_dir),
        "INSITU_CATALOG__URI": demo.settings.catalog_uri,
        "INSITU_COMPUTE__BACKEND": "local",
    }
    args = ["compute", "run", "time_mean", "--dataset", dataset_id, "--workers", "1"]
    # --no-cache: other tests of this module may have cached the result already.
    first = CliRunner().invoke(cli, [*args, "--no-cache", "--out", str(tmp_path / "a.nc")], env=env)
    assert first.exit_code == 0, first.output
    assert "Computing in this process" in first.output and "(in " in first.output
    again = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b.nc")], env=env)
    assert again.exit_code == 0, again.output
    assert "from the cache" in again.output
    assert "Dask dashboard" not in again.output and "Computing" not in again.output
    assert (tmp_path / "a.nc").read_bytes() == (tmp_path / "b.nc").read_bytes()


@pytest.mark.parametrize(
    "request_args",
    [["time_mean", "--dataset", "FIRST"], ["field_mean", "--search", "table_id=Amon"]],
    ids=["time_mean", "ensemble_field_mean"],
)
def test_a_small_request_computes_in_the_command_process(
    demo: Catalog, tmp_path: Path, request_args: list[str]
) -> None:
    """A small time or field mean computes in the command's own process, on threads,
    instead of on a local cluster started for it (whose start and stop cost seconds); the
    result is the cluster's, which a request over ``compute.in_process_bytes`` still gets.
    The README's multi-model field mean takes the batch path of many small datasets."""
    import xarray as xr
    from click.testing import CliRunner

    from insitu.cli.main import cli

    first = demo.search(limit=1).all_ids[0]
    env = {
        "INSITU_DATA_DIR": str(demo.settings.data_dir),
        "INSITU_CATALOG__URI": demo.settings.catalog_uri,
        "INSITU_COMPUTE__BACKEND": "local",
    }
    args = ["compute", "run", *(first if a == "FIRST" else a for a in request_args)]
    args += ["--no-cache", "--workers", "2"]
    small = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "threads.nc")], env=env)
    assert small.exit_code == 0, small.output
    assert "Computing in this process on 2 threads" in small.output
    assert "Dask dashboard" not in small.output
    big_env = {**env, "INSITU_COMPUTE__IN_PROCESS_BYTES": "1"}
    big = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "cluster.nc")], env=big_env)
    assert big.exit_code == 0, big.output
    assert "Dask dashboard" in big.output and "Computing in this process" not in big.output
    with (
        xr.open_dataset(tmp_path / "threads.nc") as threads,
        xr.open_dataset(tmp_path / "cluster.nc") as on_cluster,
    ):
        xr.testing.assert_identical(threads["ta"], on_cluster["ta"])


def test_which_requests_compute_in_process(demo: Catalog) -> None:
    """Only the streaming engine's time and field means of whole datasets, up to the
    configured size; 0 turns it off."""
    ids = demo.search(limit=2).all_ids
    assert in_process(demo, "time_mean", ids) and in_process(demo, "field_mean", ids)
    assert not in_process(demo, "climatology", ids)
    assert not in_process(demo, "time_mean", ids, time=slice("1990", None))
    assert not in_process(demo, "time_mean", ids, engine="xarray")
    size = sum(r.size for r in demo.datasets(ids))
    for limit, expected in ((size, True), (size - 1, False), (0, False)):
        compute = demo.settings.compute.model_copy(update={"in_process_bytes": limit})
        settings = demo.settings.model_copy(update={"compute": compute})
        with Catalog(settings) as cat:
            assert in_process(cat, "time_mean", ids) is expected


def _mark_at_exit(folder: str) -> None:
    """Leave a file named for this process in ``folder`` when it runs its exit handlers."""
    import atexit

    atexit.register(Path(folder, str(os.getpid())).touch)


def _directory(dask_worker: Any) -> str:
    return str(dask_worker.local_directory)


def test_a_stopped_local_cluster_ends_its_workers_at_once(tmp_path: Path) -> None:
    """Stopping a local cluster terminates its worker processes instead of waiting for
    each to close and tear its interpreter down (most of a second each): no worker runs
    its exit handlers. Their directories and lock files are removed all the same."""
    import psutil

    marks = tmp_path / "marks"
    marks.mkdir()
    with cluster(Settings.load(data_dir=tmp_path), backend="local", workers=2) as client:
        client.wait_for_workers(2, timeout=60)
        pids = list(client.run(os.getpid).values())
        client.run(_mark_at_exit, str(marks))
        directories = list(client.run(_directory).values())
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert sorted(p.name for p in marks.iterdir()) == []  # exit handlers never ran
    for directory in directories:
        assert not Path(directory).exists() and not Path(directory + ".dirlock").exists()

"""The ``insitu`` command, run as a user runs it (a subprocess with its own settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

INSITU = [sys.executable, "-m", "insitu.cli"]


def run(args: list[str], env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*INSITU, *args], env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    e["INSITU_DATA_DIR"] = str(tmp_path / "data")
    e["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return e


def test_help_everywhere(env: dict[str, str]) -> None:
    for args in (
        ["--help"],
        ["catalog", "--help"],
        ["config", "show", "--help"],
        *[
            ["catalog", c, "--help"]
            for c in (
                "add",
                "remove",
                "public",
                "list",
                "scan",
                "search",
                "show",
                "problems",
                "export",
            )
        ],
        ["demo", "--help"],
    ):
        out = run(args, env)
        assert "Usage:" in out.stdout


def test_demo_moves_a_demo_collection_left_by_a_deleted_installation(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The catalog outlives a checkout: a 'demo' collection registered from another
    installation's (since deleted) copy of the sample data is moved to this one's."""
    gone = tmp_path / "old-venv" / "timeseries"
    (gone / "CMIP6").mkdir(parents=True)
    run(["catalog", "add", "demo", str(gone)], env)
    gone.joinpath("CMIP6").rmdir()
    gone.rmdir()
    out = run(["demo"], env)
    assert "Moved collection demo" in out.stdout and "76 datasets" in out.stdout


def test_demo_search_show_export(env: dict[str, str], tmp_path: Path) -> None:
    out = run(["demo"], env)
    assert "76 datasets" in out.stdout
    assert (tmp_path / "data" / "catalog.db").is_file()

    out = run(["catalog", "search", "source_id=MIROC6", "variable_id=ta"], env)
    assert "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311" in out.stdout
    assert "2 datasets match" in out.stdout

    out = run(["catalog", "search", "model=MIROC6", "variable=ta", "--json", "--limit", "1"], env)
    data = json.loads(out.stdout)
    assert data["total"] == 2 and len(data["results"]) == 1
    assert data["results"][0]["facets"]["source_id"] == "MIROC6"
    out = run(["catalog", "search", "model=MIROC6", "--json", "--offset", "1"], env)
    assert [r["facets"]["table_id"] for r in json.loads(out.stdout)["results"]] == ["day"]

    out = run(["catalog", "search", "table_id=Amon", "--time", "1850/1850", "--facets"], env)
    assert "source_id:" in out.stdout

    out = run(
        ["catalog", "show", "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"], env
    )
    assert "ta(time, plev, lat, lon) [K] Air Temperature" in out.stdout

    out = run(["catalog", "list", "--json"], env)
    (coll,) = json.loads(out.stdout)
    assert (coll["name"], coll["datasets"], coll["files"], coll["public"]) == (
        "demo",
        76,
        326,
        True,
    )

    out = run(["catalog", "export", "demo", "--out", str(tmp_path / "esm")], env)
    assert (tmp_path / "esm" / "demo.json").is_file()

    out = run(["catalog", "problems"], env)
    assert "0 problems" in out.stdout


def test_errors_are_one_clear_line(env: dict[str, str], tmp_path: Path) -> None:
    out = run(["catalog", "search", "nonsense"], env, ok=False)
    assert out.returncode == 1
    assert "is not FACET=VALUE" in out.stderr and "Traceback" not in out.stderr
    out = run(["catalog", "scan", "nope"], env, ok=False)
    assert "Collection 'nope' is not registered" in out.stderr
    out = run(["catalog", "add", "x", str(tmp_path / "missing")], env, ok=False)
    assert "is not a directory" in out.stderr
    out = run(["catalog", "add", "x", str(tmp_path), "--template", "cmip7"], env, ok=False)
    assert "Unknown path template 'cmip7'" in out.stderr
    out = run(["catalog", "show", "no.such.dataset"], env, ok=False)
    assert "Dataset 'no.such.dataset' is not in the catalog" in out.stderr


def test_custom_template_from_toml(env: dict[str, str], tmp_path: Path) -> None:
    import numpy as np
    import xarray as xr

    root = tmp_path / "site"
    d = root / "obs" / "era5" / "t2m" / "v2"
    d.mkdir(parents=True)
    time = xr.date_range("2000-01-01", periods=3, freq="D")
    xr.Dataset({"t2m": (("time",), np.arange(3.0))}, coords={"time": time}).to_netcdf(
        d / "t2m_era5_2000.nc"
    )
    (d / "README.txt").write_text("not data")
    cfg = tmp_path / "insitu.toml"
    cfg.write_text(
        "[catalog.templates.site]\n"
        'directory = "{project}/{source}/{variable}/{version}"\n'
        'filename = "{variable}_{source}_{year}.nc"\n'
        'aliases = {model = "source"}\n'
    )
    env = {**env, "INSITU_CONFIG": str(cfg)}
    run(["catalog", "add", "site", str(root), "--template", "site", "--scan"], env)
    out = run(["catalog", "search", "model=era5", "--json"], env)
    (hit,) = json.loads(out.stdout)["results"]
    assert hit["dataset_id"] == "obs.era5.t2m.v2"
    assert hit["time_start"] == "2000-01-01T00:00:00"
    out = run(["catalog", "problems", "--json"], env)
    (prob,) = json.loads(out.stdout)
    assert prob["status"] == "bad_path" and prob["path"].endswith("README.txt")


def test_invalid_settings_name_the_key(env: dict[str, str], tmp_path: Path) -> None:
    out = run(["config", "show"], {**env, "INSITU_CATALOG__SCAN_WORKERS": "zero"}, ok=False)
    assert out.returncode == 2
    assert "catalog.scan_workers" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[catalog]\nnot_a_key = 1\n")
    out = run(["--config", str(bad), "config", "show"], env, ok=False)
    assert "catalog.not_a_key" in out.stderr and str(bad) in out.stderr

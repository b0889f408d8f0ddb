"""``insitu ingest demo``: the lab demo set up and ingested in an empty data directory, found
by a catalog search and opened with calibrated values; a second run does nothing new."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from nptdms import TdmsFile

import insitu
from insitu.cli.main import cli
from insitu.ingest import install_demo_pipelines
from insitu.settings import Settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("INSITU_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("INSITU_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def demo() -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "ingest", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done, time.perf_counter() - started


def test_ingest_demo(data_dir: Path) -> None:
    first, took = demo()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 products in the collection 'lab-demo' (4 new)" in first.stdout
    print(f"\ninsitu ingest demo: {took:.1f} s (process included), again:", end=" ")

    found = CliRunner().invoke(cli, ["catalog", "search", "--collection", "lab-demo"])
    assert found.exit_code == 0, found.output
    for dataset in ("3001.v1", "3002.v1", "3003.v1", "vacuum-20260302.v1"):
        assert dataset in found.output

    # Calibrated values, against the raw file read with npTDMS and the polynomial written out.
    raws = list(data_dir.glob("ingest/lab-demo/raw/*/*.tdms"))
    assert len(raws) == 3
    raw = next(r for r in raws if TdmsFile.read(r).properties["shot_id"] == "3002")
    channels = TdmsFile.read(raw)["PXI M6251"]
    volts = channels["Lang_I"].read_data(scaled=False)
    ds = insitu.open_dataset("3002.v1")
    assert ds["langmuir_current"].attrs["units"] == "mA"
    assert np.allclose(ds["langmuir_current"].values, 0.05 + 2.0 * volts + 0.01 * volts**2)
    millivolts = channels["Baratron"].read_data(scaled=False)
    assert np.allclose(ds["neutral_pressure"].values, 13.332 * millivolts / 1000)  # mV -> V
    assert ds.attrs["configuration_id"] and ds.attrs["operator"] == "alice"

    # Its pipelines are in the pipelines folder: every command knows them, with no settings.
    assert (data_dir / "pipelines" / "lab-demo.toml").is_file()
    status = CliRunner().invoke(cli, ["ingest", "status", "lab-demo"])
    assert status.exit_code == 0, status.output
    # A demo set up by an older version (no such file) gets it when the platform starts.
    (data_dir / "pipelines" / "lab-demo.toml").unlink()
    assert install_demo_pipelines(Settings.load()) == data_dir / "pipelines" / "lab-demo.toml"
    assert install_demo_pipelines(Settings.load()) is None  # the settings know them now

    products = sorted(data_dir.glob("lab-demo/products/*/*/*_v*"))  # Zarr stores
    assert products
    before = {p: p.stat().st_mtime_ns for p in products}
    second, took_again = demo()
    print(f"{took_again:.1f} s")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(0 new)" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in data_dir.glob("lab-demo/products/*/*/*_v*")} == (
        before
    )
    assert not any((data_dir / "lab-demo/inbox").iterdir())

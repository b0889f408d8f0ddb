"""Ingest end to end on files written by npTDMS's TdmsWriter (and CSV logs): calibrated
values against an independent computation, metadata and provenance, the catalog's
collection, and one test per row of the specification's bad-input table (5.6)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
from click.testing import CliRunner
from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

from insitu.catalog import Catalog
from insitu.cli.main import cli
from insitu.ingest import Pipeline
from insitu.settings import Settings

GROUP = "PXI M6251"
CALIBRATIONS = """\
id: langmuir_current/probe-A
version: 1
valid_from: 2026-01-01T00:00:00Z
valid_to: null
input: {units: V}
output: {units: A, long_name: Langmuir probe current}
kind: polynomial
coefficients: [0.5, 0.02, 0.001]
---
id: coil_field/coil-1
version: 1
valid_from: 2026-01-01T00:00:00Z
input: {units: V}
output: {units: T, long_name: Coil field}
kind: lut
x: [-10.0, 0.0, 10.0]
y: [-2.0, 0.0, 3.0]
extrapolation: clip
"""


def write_shot(
    path: Path,
    shot: str = "1001",
    *,
    n: int = 5000,
    seed: int = 0,
    root: dict[str, Any] | None = None,
    units: str = "V",
    manifest: bool = False,
) -> dict[str, np.ndarray]:
    """A TDMS shot: two DAQ channels (volts) sampled at 1 MHz; returns the raw values."""
    rng = np.random.default_rng(seed)
    values = {"Lang_I": rng.normal(0, 3, n), "Coil_B": rng.uniform(-12, 12, n)}
    props = {"shot_id": shot, "acquired_at": "2026-03-02T10:00:00Z", "operator": "alice"}
    props.update(root or {})
    wf = {"wf_increment": 1e-6, "wf_start_offset": -0.001, "unit_string": units}
    with TdmsWriter(str(path)) as writer:
        writer.write_segment(
            [
                RootObject({k: v for k, v in props.items() if v is not None}),
                GroupObject(GROUP),
                *(ChannelObject(GROUP, k, v, properties=wf) for k, v in values.items()),
            ]
        )
    if manifest:
        data = path.read_bytes()
        path.with_name(path.name + ".manifest.json").write_text(
            json.dumps(
                {
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "shot_id": shot,
                    "samples": {f"{GROUP}/{k}": n for k in values},
                }
            )
        )
    return values


def make_lab(tmp_path: Path) -> dict[str, Path]:
    """A lab of these tests: its inbox, data folder and calibrations file."""
    paths = {k: tmp_path / k for k in ("inbox", "data")}
    for p in paths.values():
        p.mkdir()
    paths["calibrations"] = tmp_path / "calibrations.yaml"
    paths["calibrations"].write_text(CALIBRATIONS)
    return paths


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    return make_lab(tmp_path)


def make_settings(lab: dict[str, Path], **pipeline: Any) -> Settings:
    spec = {
        "source": str(lab["inbox"]),
        "parser": "tdms",
        "channels": {f"{GROUP}/Lang_I": "langmuir_current", f"{GROUP}/Coil_B": "coil_field"},
        "calibrations": str(lab["calibrations"]),
        "stable_seconds": 0,
        "attributes": {"institution": "Test lab"},
        "product_format": "netcdf4",  # these tests read NetCDF-4; Zarr: test_zarr_products
        **pipeline,
    }
    return Settings(
        data_dir=lab["data"],
        catalog={"uri": f"sqlite:///{lab['data'] / 'catalog.db'}"},
        ingest={"pipelines": {"lab": spec}},
    )


def run(settings: Settings) -> dict[str, Any]:
    with Pipeline("lab", settings) as p:
        report = p.run()
    return {o.name: o for o in report.outcomes}


def product(settings: Settings, shot: str, version: int = 1) -> Path:
    return (
        settings.data_dir / "ingest/lab/products" / shot / f"v{version}" / f"{shot}_v{version}.nc"
    )


def test_shots_become_calibrated_stamped_registered_products(lab: dict[str, Path]) -> None:
    settings = make_settings(lab)
    raw1 = write_shot(lab["inbox"] / "shot1001.tdms", "1001", manifest=True)
    write_shot(lab["inbox"] / "shot1002.tdms", "1002", seed=1)
    digest = hashlib.sha256((lab["inbox"] / "shot1001.tdms").read_bytes()).hexdigest()
    outcomes = run(settings)
    assert {o.state for o in outcomes.values()} == {"ingested"}
    assert not list(lab["inbox"].iterdir())  # taken, with the manifest

    # Independent computation: the polynomial written out, the table by its two segments.
    x = raw1["Lang_I"]
    want_i = 0.5 + 0.02 * x + 0.001 * x * x
    v = np.clip(raw1["Coil_B"], -10, 10)
    want_b = np.where(v < 0, v * 0.2, v * 0.3)
    with netCDF4.Dataset(product(settings, "1001")) as nc:
        assert np.allclose(nc["langmuir_current"][:], want_i, rtol=1e-12, atol=1e-12)
        assert np.allclose(nc["coil_field"][:], want_b, rtol=1e-12, atol=1e-12)
        var = nc["langmuir_current"]
        assert var.units == "A" and var.raw_channel == f"{GROUP}/Lang_I"
        assert var.calibration_id == "langmuir_current/probe-A" and var.calibration_version == 1
        assert var.sample_interval == 1e-6 and var.time_offset == -0.001
        assert "time" not in nc.variables  # offset and interval, no time axis
        assert nc.Conventions == "CF-1.11" and nc.institution == "Test lab"
        assert (nc.shot_id, nc.operator, nc.raw_sha256) == ("1001", "alice", digest)
        assert nc.acquired_at == "2026-03-02T10:00:00Z"
        assert "insitu-ingest" in nc.history
        prov = json.loads(nc.provenance)
        assert f"raw:{digest}" in prov["entity"]
        kinds = sorted(e["prov:type"] for e in prov["entity"].values())
        assert kinds == ["calibration", "calibration", "product", "raw file"]
        assert "operator:alice" in prov["agent"]

    raw = lab["data"] / "ingest/lab/raw" / digest[:2] / f"{digest}.tdms"
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest
    assert not os.access(raw, os.W_OK) or os.geteuid() == 0
    assert oct(raw.stat().st_mode & 0o777) == oct(0o444)

    with Catalog(settings) as catalog:
        assert catalog.stats()["lab"].files == 2
        # Indexed (a warning only: shots have offset and interval, no time axis).
        assert {f.status.value for f in catalog.problems("lab")} <= {"ok"}
        found = catalog.search(collection="lab", shot_id="1001")
        assert found.total == 1
        ds = catalog.open_dataset(found.results[0].dataset_id)
        assert np.allclose(ds["langmuir_current"].values, want_i)


def test_a_file_still_growing_is_not_taken(lab: dict[str, Path]) -> None:
    settings = make_settings(lab, stable_seconds=30)
    write_shot(lab["inbox"] / "growing.tdms")
    with Pipeline("lab", settings) as p:
        assert p.pending() == []
        assert p.run().outcomes == []
        assert [c.path.name for c in p.pending(now=time.time() + 31)] == ["growing.tdms"]
    assert (lab["inbox"] / "growing.tdms").exists()


def _quarantined(settings: Settings, name: str, code: str) -> dict[str, Any]:
    outcomes = run(settings)
    assert outcomes[name].state == "quarantined", outcomes[name]
    assert outcomes[name].code == code
    sha = outcomes[name].sha256
    report = json.loads(
        (settings.data_dir / f"ingest/lab/quarantine/{code}/{sha}/report.json").read_text()
    )
    assert report["code"] == code and report["sha256"] == sha and report["suggested_action"]
    assert Path(report["raw"]).exists()  # raw bytes kept
    return report


def test_truncated_and_short_files_are_incomplete(lab: dict[str, Path]) -> None:
    settings = make_settings(lab)
    path = lab["inbox"] / "cut.tdms"
    write_shot(path)
    path.write_bytes(path.read_bytes()[:-1000])
    write_shot(lab["inbox"] / "short.tdms", "1002", manifest=True)
    m = lab["inbox"] / "short.tdms.manifest.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "samples": {f"{GROUP}/Lang_I": 9999}}))
    write_shot(lab["inbox"] / "good.tdms", "1003")
    _quarantined(settings, "cut.tdms", "E_INCOMPLETE")
    with Pipeline("lab", settings) as p:
        short = next(i for i in p.store.items() if i.name == "short.tdms")
        assert "9999" in p.store.report(short.sha256)["message"]  # the manifest's count
    with Pipeline("lab", settings) as p:
        states = {i.name: (i.state, i.code) for i in p.store.items()}
    assert states == {
        "cut.tdms": ("quarantined", "E_INCOMPLETE"),
        "short.tdms": ("quarantined", "E_INCOMPLETE"),
        "good.tdms": ("ingested", None),  # other files are still ingested
    }


def test_empty_and_header_only_files_are_incomplete(lab: dict[str, Path]) -> None:
    settings = make_settings(lab)
    (lab["inbox"] / "empty.tdms").write_bytes(b"")
    with TdmsWriter(str(lab["inbox"] / "header.tdms")) as writer:
        writer.write_segment([RootObject({"shot_id": "9", "operator": "a"})])
    outcomes = run(settings)
    assert (outcomes["empty.tdms"].code, outcomes["header.tdms"].code) == (
        "E_INCOMPLETE",
        "E_INCOMPLETE",
    )


def test_not_tdms_and_csv_not_fitting_its_dialect_are_format_errors(
    lab: dict[str, Path],
) -> None:
    (lab["inbox"] / "notes.tdms").write_text("this is a lab notebook page, not a TDMS file\n")
    _quarantined(make_settings(lab), "notes.tdms", "E_FORMAT")
    (lab["inbox"] / "log.csv").write_text("t;p\n0,0;1013,25\n")
    settings = make_settings(lab, parser="csv", pattern="*.csv", channels={})
    _quarantined(settings, "log.csv", "E_FORMAT")


@pytest.mark.parametrize("missing", ["shot_id", "acquired_at", "operator"])
def test_a_missing_root_property_is_a_schema_error_naming_it(
    lab: dict[str, Path], missing: str
) -> None:
    write_shot(lab["inbox"] / "s.tdms", root={missing: None})
    report = _quarantined(make_settings(lab), "s.tdms", "E_SCHEMA")
    assert missing in report["message"]


def test_an_unknown_unit_is_a_units_error(lab: dict[str, Path]) -> None:
    write_shot(lab["inbox"] / "s.tdms", units="Volt-ish")
    report = _quarantined(make_settings(lab), "s.tdms", "E_UNITS")
    assert "Volt-ish" in report["message"]


def test_no_calibration_then_fixed_and_retried(lab: dict[str, Path]) -> None:
    write_shot(lab["inbox"] / "s.tdms", root={"acquired_at": "2025-06-01T00:00:00Z"})
    report = _quarantined(make_settings(lab), "s.tdms", "E_CAL_MISSING")
    assert "2025-06-01" in report["message"] and "langmuir_current" in report["message"]
    sha = report["sha256"]
    # The fix: calibrations valid since 2025.
    lab["calibrations"].write_text(CALIBRATIONS.replace("2026-01-01", "2025-01-01"))
    result = CliRunner().invoke(
        cli, ["ingest", "retry", "lab", sha], obj=None, env=_env(lab, make_settings(lab))
    )
    assert result.exit_code == 0, result.output
    settings = make_settings(lab)
    assert product(settings, "1001").exists()
    resolved = settings.data_dir / f"ingest/lab/quarantine/resolved/{sha}/report.json"
    retries = json.loads(resolved.read_text())["retries"]
    assert [r["outcome"] for r in retries] == ["ingested"]
    assert not (settings.data_dir / f"ingest/lab/quarantine/E_CAL_MISSING/{sha}").exists()


def test_ambiguous_calibration(lab: dict[str, Path]) -> None:
    second = CALIBRATIONS.split("---")[0].replace("version: 1", "version: 2")
    lab["calibrations"].write_text(CALIBRATIONS + "---\n" + second)
    write_shot(lab["inbox"] / "s.tdms")
    report = _quarantined(make_settings(lab), "s.tdms", "E_CAL_AMBIGUOUS")
    assert "langmuir_current" in report["message"] and "2026-03-02" in report["message"]


def test_same_bytes_again_do_nothing_and_other_bytes_conflict(lab: dict[str, Path]) -> None:
    settings = make_settings(lab)
    write_shot(lab["inbox"] / "s.tdms")
    data = (lab["inbox"] / "s.tdms").read_bytes()
    assert run(settings)["s.tdms"].state == "ingested"
    before = product(settings, "1001").stat().st_mtime_ns
    (lab["inbox"] / "again.tdms").write_bytes(data)
    assert run(settings)["again.tdms"].state == "duplicate-ignored"
    assert product(settings, "1001").stat().st_mtime_ns == before
    assert not product(settings, "1001", 2).exists()
    write_shot(lab["inbox"] / "other.tdms", seed=7)  # shot 1001, other bytes
    _quarantined(settings, "other.tdms", "E_DUPLICATE_CONFLICT")
    assert len(list(settings.data_dir.glob("ingest/lab/raw/*/*.tdms"))) == 2  # both kept


def test_csv_logs_with_a_time_column(lab: dict[str, Path]) -> None:
    (lab["inbox"] / "gas.csv").write_text(
        '# :shot_id = "2001"\n# :acquired_at = "2026-03-02T11:00:00Z"\n'
        '# :operator = "bob"\nt;Lang_I\ns;V\n0,0;1,5\n0,5;2,5\n1,0;-1,0\n'
    )
    settings = make_settings(
        lab,
        parser="csv",
        pattern="*.csv",
        delimiter=";",
        decimal=",",
        units_row=True,
        time_column="t",
        channels={"Lang_I": "langmuir_current"},
    )
    assert run(settings)["gas.csv"].state == "ingested"
    x = np.array([1.5, 2.5, -1.0])
    with netCDF4.Dataset(product(settings, "2001")) as nc:
        assert np.allclose(nc["langmuir_current"][:], 0.5 + 0.02 * x + 0.001 * x**2)
        assert nc["langmuir_current"].sample_interval == 0.5


def _env(lab: dict[str, Path], settings: Settings) -> dict[str, str]:
    config = lab["data"] / "insitu.toml"
    spec = settings.ingest.pipelines["lab"]
    lines = [
        f'data_dir = "{settings.data_dir}"',
        "[catalog]",
        f'uri = "{settings.catalog.uri}"',
        "[ingest.pipelines.lab]",
        f'source = "{spec.source}"',
        f'calibrations = "{spec.calibrations}"',
        f"stable_seconds = {spec.stable_seconds}",
        f'product_format = "{spec.product_format}"',
        "[ingest.pipelines.lab.channels]",
        *(f'"{k}" = "{v}"' for k, v in spec.channels.items()),
    ]
    config.write_text("\n".join(lines) + "\n")
    return {"INSITU_CONFIG": str(config)}


def test_cli_run_exits_non_zero_when_something_is_quarantined(lab: dict[str, Path]) -> None:
    env = _env(lab, make_settings(lab))
    write_shot(lab["inbox"] / "good.tdms")
    (lab["inbox"] / "bad.tdms").write_text("not tdms at all, not even close to it\n")
    result = CliRunner().invoke(cli, ["ingest", "run", "lab", "--no-progress"], env=env)
    assert result.exit_code == 1
    assert "1 ingested" in result.output and "1 quarantined" in result.output
    listing = CliRunner().invoke(cli, ["ingest", "quarantine", "lab"], env=env)
    assert "E_FORMAT" in listing.output
    status = json.loads(CliRunner().invoke(cli, ["ingest", "status", "lab"], env=env).output)
    assert status["states"] == {"ingested": 1, "quarantined": 1}


def test_kill_9_while_writing_leaves_nothing_partial_and_a_rerun_completes(
    lab: dict[str, Path],
) -> None:
    settings = make_settings(lab)
    env = {**os.environ, **_env(lab, settings)}
    write_shot(lab["inbox"] / "big.tdms", n=4_000_000)
    tmp = settings.data_dir / "ingest/lab/tmp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "insitu.cli", "ingest", "run", "lab", "--no-progress"], env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp.is_dir() and any(tmp.iterdir())):
        assert proc.poll() is None, "the run ended before it wrote anything"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(tmp.iterdir())  # killed in the middle of writing the product
    products = settings.data_dir / "ingest/lab/products"
    assert not list(products.rglob("*.nc"))  # nothing partial visible
    outcomes = run(settings)
    assert outcomes["big.tdms"].state == "ingested"
    assert not any(tmp.iterdir())  # the temporary file is gone
    with netCDF4.Dataset(product(settings, "1001")) as nc:
        assert nc["langmuir_current"].shape == (4_000_000,)

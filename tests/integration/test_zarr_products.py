"""Ingest's default products: one Zarr store (format 3) per shot and version.

Shots written by npTDMS's TdmsWriter become stores with consolidated metadata, shuffle +
zstd chunks of about 1 MB compressed, and the attributes of the NetCDF-4 product (the same
shot written both ways is compared); the catalog indexes each store as one file (its total
size, its newest mtime: a changed chunk is seen by a rescan), opens it with
``open_dataset`` and serves it through the data service's Zarr view; the same bytes again
write nothing, a reprocess writes v2 beside v1, and a ``kill -9`` while writing leaves
nothing partial visible.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner

from insitu import formats
from insitu.access.zarrview import ZarrView
from insitu.catalog import Catalog
from insitu.cli.main import cli
from insitu.settings import Settings
from tests.integration.test_ingest_pipeline import (
    GROUP,
    _env,
    make_lab,
    make_settings,
    run,
    write_shot,
)
from tests.integration.test_ingest_reprocess import CHANGED


def zarr_settings(lab: dict[str, Path], **pipeline: Any) -> Settings:
    return make_settings(lab, product_format="zarr", **pipeline)


def store(settings: Settings, shot: str, version: int = 1, suffix: str = ".zarr") -> Path:
    name = f"{shot}_v{version}{suffix}"
    return settings.data_dir / "ingest/lab/products" / shot / f"v{version}" / name


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    return make_lab(tmp_path)


def _want(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The calibrations written out (the polynomial; the table by its two segments)."""
    x = raw["Lang_I"]
    v = np.clip(raw["Coil_B"], -10, 10)
    return {
        "langmuir_current": 0.5 + 0.02 * x + 0.001 * x * x,
        "coil_field": np.where(v < 0, v * 0.2, v * 0.3),
    }


def test_a_shot_becomes_a_consolidated_zarr_store_with_the_netcdf_product_s_metadata(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    settings = zarr_settings(lab)
    assert (
        Settings(ingest={"pipelines": {"p": {"source": "x"}}}).ingest.pipelines["p"].product_format
        == "zarr"
    )  # the default
    raw = write_shot(lab["inbox"] / "s.tdms", "1001", n=400_000, manifest=True)
    data = (lab["inbox"] / "s.tdms").read_bytes()
    assert run(settings)["s.tdms"].state == "ingested"
    path = store(settings, "1001")
    assert path.is_dir() and not store(settings, "1001", suffix=".nc").exists()

    root = json.loads((path / "zarr.json").read_text())
    assert root["zarr_format"] == 3 and root["node_type"] == "group"
    consolidated = root["consolidated_metadata"]["metadata"]
    assert set(consolidated) == {"langmuir_current", "coil_field"}
    meta = consolidated["langmuir_current"]
    assert meta["data_type"] == "float64" and meta["dimension_names"] == ["PXI_M6251"]
    codec = meta["codecs"][-1]
    assert codec["name"] == "blosc"
    assert codec["configuration"]["cname"] == "zstd"
    assert codec["configuration"]["shuffle"] == "shuffle"
    chunk = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    sizes = [f.stat().st_size for f in (path / "langmuir_current/c").iterdir()]
    assert len(sizes) == -(-400_000 // chunk) > 1
    assert 0.5e6 < max(sizes) < 2e6  # about 1 MB compressed (noise compresses little)

    group = zarr.open_group(path, mode="r")  # zarr-python alone, no insitu
    for name, values in _want(raw).items():
        np.testing.assert_allclose(group[name][:], values, rtol=1e-12, atol=1e-12)
    attrs = dict(group.attrs)
    var = dict(group["langmuir_current"].attrs)
    assert var["units"] == "A" and var["raw_channel"] == f"{GROUP}/Lang_I"
    assert var["calibration_id"] == "langmuir_current/probe-A"
    assert var["calibration_version"] == 1
    assert var["sample_interval"] == 1e-6 and var["time_offset"] == -0.001
    assert attrs["Conventions"] == "CF-1.11" and attrs["institution"] == "Test lab"
    assert (attrs["shot_id"], attrs["operator"], attrs["product_version"]) == ("1001", "alice", 1)
    assert "insitu-ingest" in attrs["history"]
    prov = json.loads(attrs["provenance"])
    assert sorted(e["prov:type"] for e in prov["entity"].values()) == [
        "calibration",
        "calibration",
        "product",
        "raw file",
    ]

    # The same shot as a NetCDF-4 product: the same attributes, the same values.
    other = {k: tmp_path / "nc" / k for k in ("inbox", "data")}
    for p in other.values():
        p.mkdir(parents=True)
    other["calibrations"] = lab["calibrations"]
    (other["inbox"] / "s.tdms").write_bytes(data)
    nc_settings = make_settings(other, product_format="netcdf4")
    assert run(nc_settings)["s.tdms"].state == "ingested"
    nc_path = store(nc_settings, "1001", suffix=".nc")
    z, n = (formats.reader_for(str(p)) for p in (path, nc_path))
    assert isinstance(z, formats.ZarrReader)
    with z.header(str(path)) as zh, n.header(str(nc_path)) as nh:
        moving = {"ingested_at", "provenance", "history"}
        assert {k: v for k, v in zh.global_attrs.items() if k not in moving} == {
            k: v for k, v in nh.global_attrs.items() if k not in moving
        }
        assert [(v.name, v.dims, v.shape, v.dtype, v.attrs) for v in zh.variables] == [
            (v.name, v.dims, v.shape, v.dtype, v.attrs) for v in nh.variables
        ]
    for name in _want(raw):
        assert np.array_equal(formats.read(str(path), name), formats.read(str(nc_path), name))


def test_the_catalog_indexes_opens_and_serves_a_store_as_one_file(lab: dict[str, Path]) -> None:
    settings = zarr_settings(lab)
    raw = write_shot(lab["inbox"] / "a.tdms", "1001", n=300_000)
    write_shot(lab["inbox"] / "b.tdms", "1002", seed=1)
    assert {o.state for o in run(settings).values()} == {"ingested"}
    path = store(settings, "1001")
    files = [p for p in path.rglob("*") if p.is_file()]
    with Catalog(settings) as catalog:
        assert catalog.stats()["lab"].files == 2  # a store is one file, not its chunks
        assert {f.status.value for f in catalog.problems("lab")} <= {"ok"}
        (record,) = catalog.files("1001.v1")
        assert record.path == "1001/v1/1001_v1.zarr"
        assert record.size == sum(f.stat().st_size for f in files)
        assert record.mtime_ns == max(f.stat().st_mtime_ns for f in files)
        assert record.facets["format"] == "zarr"
        found = catalog.search(collection="lab", shot_id="1001")
        assert [r.dataset_id for r in found.results] == ["1001.v1"]
        ds = catalog.open_dataset("1001.v1")
        want = _want(raw)
        np.testing.assert_allclose(ds["langmuir_current"].values, want["langmuir_current"])
        assert ds.attrs["raw_sha256"] and ds["coil_field"].attrs["units"] == "T"

        # The data service's Zarr view (format 2, read through the formats reader).
        view = ZarrView.build(catalog.dataset("1001.v1"), catalog.locate("1001.v1"), 1 << 20)
        served = lab["data"] / "served.zarr"
        for key, doc in view.documents.items():
            (served / key).parent.mkdir(parents=True, exist_ok=True)
            (served / key).write_bytes(doc)
        for name, plan in view.arrays.items():
            for index in np.ndindex(*(plan.grid or (1,))):
                key = f"{name}/{'.'.join(map(str, index))}"
                ref = view.lookup(key)
                assert not isinstance(ref, bytes)
                (served / key).write_bytes(bytes(view.read(ref)))
        remote = xr.open_zarr(served, consolidated=True, zarr_format=2)
        np.testing.assert_allclose(remote["coil_field"].values, want["coil_field"])
        assert remote["langmuir_current"].attrs["calibration_id"] == "langmuir_current/probe-A"

    # A chunk changed in place: the rescan sees the store changed, as it would a file.
    chunk = path / "coil_field/c/0"
    time.sleep(0.01)
    chunk.write_bytes(chunk.read_bytes())
    with Catalog(settings) as catalog:
        (report,) = catalog.scan("lab", progress=False)
        assert (report.changed, report.unchanged) == (1, 1)


def test_same_bytes_do_nothing_and_a_reprocess_writes_v2_beside_v1(lab: dict[str, Path]) -> None:
    settings = zarr_settings(lab)
    raw = write_shot(lab["inbox"] / "a.tdms", "1001", seed=1)
    data = (lab["inbox"] / "a.tdms").read_bytes()
    assert run(settings)["a.tdms"].state == "ingested"
    v1 = store(settings, "1001")
    before = {p: p.stat().st_mtime_ns for p in v1.rglob("*")}
    (lab["inbox"] / "again.tdms").write_bytes(data)
    assert run(settings)["again.tdms"].state == "duplicate-ignored"
    assert {p: p.stat().st_mtime_ns for p in v1.rglob("*")} == before

    lab["calibrations"].write_text(CHANGED)
    env = _env(lab, settings)
    args = ["ingest", "reprocess", "lab", "--calibration", "langmuir_current/probe-A@2"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "1 reprocessed" in result.output
    v2 = store(settings, "1001", 2)
    assert {p: p.stat().st_mtime_ns for p in v1.rglob("*")} == before  # v1 untouched
    x = raw["Lang_I"]
    group = zarr.open_group(v2, mode="r")
    np.testing.assert_allclose(group["langmuir_current"][:], 0.1 + 0.03 * x, rtol=1e-12)
    assert group.attrs["product_version"] == 2
    assert len(str(group.attrs["history"]).splitlines()) == 2
    with Catalog(settings) as catalog:
        latest = catalog.search(collection="lab", shot_id="1001")
        assert [r.dataset_id for r in latest.results] == ["1001.v2"]
        old = catalog.open_dataset("1001.v1")
        np.testing.assert_allclose(old["langmuir_current"].values, 0.5 + 0.02 * x + 0.001 * x * x)
    again = CliRunner().invoke(cli, args, env=env)
    assert "0 reprocessed, 1 unchanged" in again.output, again.output
    assert not store(settings, "1001", 3).exists()


def test_kill_9_while_writing_a_store_leaves_nothing_partial(lab: dict[str, Path]) -> None:
    settings = zarr_settings(lab)
    env = {**os.environ, **_env(lab, settings)}
    write_shot(lab["inbox"] / "big.tdms", n=4_000_000)
    tmp = settings.data_dir / "ingest/lab/tmp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "insitu.cli", "ingest", "run", "lab", "--no-progress"], env=env
    )
    deadline = time.monotonic() + 60
    # killed once chunks are being written into the temporary store
    while time.monotonic() < deadline and not list(tmp.glob("*.zarr/*/c/*")):
        assert proc.poll() is None, "the run ended before it wrote anything"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(tmp.glob("*.zarr"))
    products = settings.data_dir / "ingest/lab/products"
    assert not list(products.rglob("*.zarr"))  # nothing partial visible
    assert run(settings)["big.tdms"].state == "ingested"
    assert not any(tmp.iterdir())
    group = zarr.open_group(store(settings, "1001"), mode="r")
    assert group["langmuir_current"].shape == (4_000_000,)
    assert np.isfinite(group["langmuir_current"][-5:]).all()


@pytest.mark.parametrize("product_format", ["zarr", "netcdf4"])
def test_the_summary_made_while_writing_is_summarize_s_and_a_failed_check_publishes_nothing(
    lab: dict[str, Path], tmp_path: Path, product_format: str
) -> None:
    from insitu.errors import IngestError
    from insitu.ingest.calibration import load_calibrations
    from insitu.ingest.product import write_product
    from insitu.ingest.shot import open_shot, summarize

    spec = zarr_settings(lab).ingest.pipelines["lab"]
    raw = write_shot(lab["inbox"] / "s.tdms", "1001", n=300_000)
    output, work = tmp_path / "products", tmp_path / "tmp"
    work.mkdir()
    common: dict[str, Any] = dict(
        output=output,
        tmp=work,
        raw_sha256="0" * 64,
        pipeline="lab",
        attributes={},
        args="test",
        started="2026-03-02T10:00:00Z",
        product_format=product_format,
    )
    with open_shot(lab["inbox"] / "s.tdms", spec, load_calibrations(spec.calibrations)) as shot:
        want = summarize(shot, {})
        plain = write_product(shot, version=1, **common)
        assert plain.summary == {}  # not asked for: not computed
        info = write_product(shot, version=2, summarize=True, **common)
        assert set(info.summary) == set(want) == {"langmuir_current", "coil_field"}
        for name, got in info.summary.items():
            assert (got["n"], got["nan"]) == (want[name]["n"], want[name]["nan"]) == (300_000, 0)
            assert (got["min"], got["max"]) == (want[name]["min"], want[name]["max"])
            assert got["mean"] == pytest.approx(want[name]["mean"], rel=1e-12)
        assert info.summary["coil_field"]["max"] == _want(raw)["coil_field"].max()

        seen: list[dict[str, Any]] = []

        def refuse(summary: dict[str, dict[str, Any]]) -> None:
            seen.append(summary)
            raise IngestError("E_NAN", "validate", "refused", "fix it")

        with pytest.raises(IngestError):
            write_product(shot, version=3, check=refuse, **common)
    assert seen and seen[0]["langmuir_current"]["n"] == 300_000
    assert not (output / "1001" / "v3").exists() or not any((output / "1001" / "v3").iterdir())
    assert not any(work.iterdir())  # the temporary product is gone


def test_a_store_left_by_a_run_killed_after_its_rename_is_replaced(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    from insitu.ingest.calibration import load_calibrations
    from insitu.ingest.product import write_product
    from insitu.ingest.shot import open_shot

    spec = zarr_settings(lab).ingest.pipelines["lab"]
    write_shot(lab["inbox"] / "s.tdms", "1001", n=1000)
    output, work = tmp_path / "products", tmp_path / "tmp"
    work.mkdir()
    common: dict[str, Any] = dict(
        output=output,
        tmp=work,
        version=1,
        raw_sha256="0" * 64,
        pipeline="lab",
        attributes={},
        started="2026-03-02T10:00:00Z",
    )
    with open_shot(lab["inbox"] / "s.tdms", spec, load_calibrations(spec.calibrations)) as shot:
        first = write_product(shot, args="first", **common)
        again = write_product(shot, args="again", **common)  # the same version, once more
    assert first.path == again.path
    assert str(zarr.open_group(again.path, mode="r").attrs["history"]).endswith("again")
    assert not any(work.iterdir())

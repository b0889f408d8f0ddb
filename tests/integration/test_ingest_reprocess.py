"""``insitu ingest reprocess``: after a calibration change, a new version of exactly the
shots it affects, the catalog's latest moved to it, the old version still readable, and
nothing new the second time."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
from click.testing import CliRunner

from insitu.catalog import Catalog
from insitu.cli.main import cli
from tests.integration.test_ingest_pipeline import (
    CALIBRATIONS,
    _env,
    make_lab,
    make_settings,
    product,
    run,
    write_shot,
)

# Version 1 now ends where version 2 (other coefficients) starts.
CHANGED = CALIBRATIONS.replace("valid_to: null\n", "valid_to: 2026-03-01T00:00:00Z\n", 1) + (
    "---\n"
    "id: langmuir_current/probe-A\n"
    "version: 2\n"
    "valid_from: 2026-03-01T00:00:00Z\n"
    "input: {units: V}\n"
    "output: {units: A, long_name: Langmuir probe current}\n"
    "kind: polynomial\n"
    "coefficients: [0.1, 0.03]\n"
)


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    return make_lab(tmp_path)


def test_reprocess_writes_new_versions_of_the_affected_shots_only(
    lab: dict[str, Path],
) -> None:
    settings = make_settings(lab)
    raw = {
        "1001": write_shot(lab["inbox"] / "a.tdms", "1001", seed=1),  # 2 March: affected
        "1002": write_shot(
            lab["inbox"] / "b.tdms", "1002", seed=2, root={"acquired_at": "2026-03-05T08:00:00Z"}
        ),  # affected
        "1003": write_shot(
            lab["inbox"] / "c.tdms", "1003", seed=3, root={"acquired_at": "2026-02-01T08:00:00Z"}
        ),  # before version 2's validity: not affected
    }
    assert {o.state for o in run(settings).values()} == {"ingested"}
    v1_mtimes = {shot: product(settings, shot).stat().st_mtime_ns for shot in raw}

    lab["calibrations"].write_text(CHANGED)
    env = _env(lab, settings)
    args = ["ingest", "reprocess", "lab", "--calibration", "langmuir_current/probe-A@2"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "2 reprocessed, 0 unchanged, 0 failed" in result.output

    versions = {
        shot: sorted(settings.data_dir.glob(f"ingest/lab/products/{shot}/v*")) for shot in raw
    }
    assert {shot: [p.name for p in v] for shot, v in versions.items()} == {
        "1001": ["v1", "v2"],
        "1002": ["v1", "v2"],
        "1003": ["v1"],
    }
    for shot in raw:  # the old versions are untouched
        assert product(settings, shot).stat().st_mtime_ns == v1_mtimes[shot]

    for shot in ("1001", "1002"):
        x = raw[shot]["Lang_I"]
        with netCDF4.Dataset(product(settings, shot, 2)) as nc:
            assert np.allclose(nc["langmuir_current"][:], 0.1 + 0.03 * x, rtol=1e-12)
            assert nc["langmuir_current"].calibration_version == 2
            assert nc.product_version == 2
            lines = nc.history.splitlines()
            assert len(lines) == 2 and "reprocess lab --calibration" in lines[1]
            assert nc.raw_sha256 == netCDF4.Dataset(product(settings, shot)).raw_sha256
        with netCDF4.Dataset(product(settings, shot, 1)) as nc:  # v1: the old calibration
            assert np.allclose(nc["langmuir_current"][:], 0.5 + 0.02 * x + 0.001 * x * x)

    with Catalog(settings) as catalog:
        latest = catalog.search(collection="lab", shot_id="1001")
        assert [r.dataset_id for r in latest.results] == ["1001.v2"]
        every = catalog.search(collection="lab", shot_id="1001", latest=False)
        assert sorted(r.dataset_id for r in every.results) == ["1001.v1", "1001.v2"]
        old = catalog.open_dataset("1001.v1")  # the old version still opens
        x = raw["1001"]["Lang_I"]
        assert np.allclose(old["langmuir_current"].values, 0.5 + 0.02 * x + 0.001 * x * x)
        new = catalog.open_dataset("1001.v2")
        assert np.allclose(new["langmuir_current"].values, 0.1 + 0.03 * x)
        assert catalog.search(collection="lab", shot_id="1003").results[0].dataset_id == ("1003.v1")

    again = CliRunner().invoke(cli, args, env=env)
    assert again.exit_code == 0, again.output
    assert "0 reprocessed, 2 unchanged, 0 failed" in again.output
    assert not list(settings.data_dir.glob("ingest/lab/products/*/v3"))

    # Without --calibration: every shot whose context changed. Only 1003's is left: its
    # version-1 definition was edited (its validity now ends), so its hash changed.
    everything = CliRunner().invoke(cli, ["ingest", "reprocess", "lab"], env=env)
    assert "1 reprocessed, 2 unchanged" in everything.output, everything.output
    assert product(settings, "1003", 2).exists()


def test_reprocess_names_what_is_defined_when_the_calibration_is_unknown(
    lab: dict[str, Path],
) -> None:
    settings = make_settings(lab)
    env = _env(lab, settings)
    result = CliRunner().invoke(
        cli, ["ingest", "reprocess", "lab", "--calibration", "langmuir_current/probe-A@7"], env=env
    )
    assert result.exit_code != 0
    assert "langmuir_current/probe-A@1" in result.output  # what is defined
    bad = CliRunner().invoke(
        cli, ["ingest", "reprocess", "lab", "--calibration", "probe-A"], env=env
    )
    assert bad.exit_code != 0 and "ID@VERSION" in bad.output

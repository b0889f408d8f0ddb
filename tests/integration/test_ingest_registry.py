"""Ingest's tables in the catalog database: shot records and the shot search, calibration
definitions and configuration snapshots managed through the CLI (refused when bad, with
nothing stored), the NaN policy, and a pipeline's older ledger file taken in. On SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

from insitu.cli.main import cli
from insitu.errors import InvalidRequest
from insitu.ingest import Pipeline, Registry, find_shots
from insitu.settings import Settings
from tests.integration.test_ingest_pipeline import CALIBRATIONS, GROUP, make_lab

TREE = {
    "testbed": "bench-1",
    "daq": {"id": GROUP, "type": "NI PXI-6251", "serial": "01A2"},
    "diagnostics": {
        "probe-A": {"type": "Langmuir probe", "present": True, "position_mm": 45.0},
        "coil-1": {"type": "Hall sensor", "present": True, "gain": 10.0},
        "spare": {"type": "Hall sensor", "present": False},
    },
}


def canonical_id(tree: dict[str, Any]) -> str:
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def tdms(
    path: Path,
    shot: str,
    start: str,
    channels: dict[str, np.ndarray],
    campaign: str = "exp-A",
) -> None:
    root = {"shot_id": shot, "acquired_at": start, "operator": "alice", "experiment_id": campaign}
    wf = {"wf_increment": 1e-6, "wf_start_offset": 0.0, "unit_string": "V"}
    with TdmsWriter(str(path)) as writer:
        writer.write_segment(
            [
                RootObject(root),
                GroupObject(GROUP),
                *(ChannelObject(GROUP, k, v, properties=wf) for k, v in channels.items()),
            ]
        )


def lang_i(x: np.ndarray) -> np.ndarray:  # the polynomial of CALIBRATIONS, written out
    return 0.5 + 0.02 * x + 0.001 * x * x


def coil_b(v: np.ndarray) -> np.ndarray:  # its lookup table by its two segments, clipped
    v = np.clip(v, -10, 10)
    return np.where(v < 0, v * 0.2, v * 0.3)


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    paths = make_lab(tmp_path)
    paths["configurations"] = tmp_path / "configurations.json"
    paths["configurations"].write_text(
        json.dumps([{"valid_from": "2026-01-01T00:00:00Z", "valid_to": None, "tree": TREE}])
    )
    return paths


def settings_for(lab: dict[str, Path], uri: str, **pipeline: Any) -> Settings:
    spec = {
        "source": str(lab["inbox"]),
        "channels": {f"{GROUP}/Lang_I": "langmuir_current", f"{GROUP}/Coil_B": "coil_field"},
        "calibrations": str(lab["calibrations"]),
        "configurations": str(lab["configurations"]),
        "stable_seconds": 0,
        **pipeline,
    }
    spec = {k: v for k, v in spec.items() if v is not None}
    return Settings(data_dir=lab["data"], catalog={"uri": uri}, ingest={"pipelines": {"lab": spec}})


def ingest(settings: Settings) -> dict[str, Any]:
    with Pipeline("lab", settings) as p:
        return {o.name: o for o in p.run().outcomes}


def cli_env(lab: dict[str, Path], settings: Settings) -> dict[str, str]:
    config = lab["data"] / "insitu.toml"
    spec = settings.ingest.pipelines["lab"]
    lines = [
        f'data_dir = "{settings.data_dir}"',
        "[catalog]",
        f'uri = "{settings.catalog.uri}"',
        "[ingest.pipelines.lab]",
        f'source = "{spec.source}"',
        "stable_seconds = 0",
        "[ingest.pipelines.lab.channels]",
        *(f'"{k}" = "{v}"' for k, v in spec.channels.items()),
    ]
    config.write_text("\n".join(lines) + "\n")
    return {"INSITU_CONFIG": str(config)}


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["ingest", *args], env=env)


def test_shot_records_and_the_shot_search(lab: dict[str, Path], store_uri: str) -> None:
    settings = settings_for(lab, store_uri)
    rng = np.random.default_rng(3)
    shots = {
        "1001": ("2026-03-02T10:00:00Z", "exp-A", 2.0),
        "1002": ("2026-03-03T10:00:00Z", "exp-B", 6.0),
        "1003": ("2026-03-04T10:00:00Z", "exp-A", 9.0),
    }
    raw: dict[str, dict[str, np.ndarray]] = {}
    for shot, (start, campaign, peak) in shots.items():
        raw[shot] = {"Lang_I": rng.normal(0, 3, 3000), "Coil_B": rng.uniform(0, peak, 3000)}
        tdms(lab["inbox"] / f"s{shot}.tdms", shot, start, raw[shot], campaign)
    # A shot with the probe only: no coil_field signal.
    tdms(
        lab["inbox"] / "s1004.tdms",
        "1004",
        "2026-03-05T10:00:00Z",
        {"Lang_I": np.linspace(-1, 1, 100)},
        "exp-B",
    )
    assert {o.state for o in ingest(settings).values()} == {"ingested"}

    page = find_shots(settings)
    assert page.total == 4
    assert [s.shot for s in page.shots] == ["1004", "1003", "1002", "1001"]  # newest first
    one = next(s for s in page.shots if s.shot == "1002")
    assert (one.pipeline, one.collection, one.version, one.latest) == ("lab", "lab", 1, True)
    assert (one.campaign, one.operator, one.acquired_at) == ("exp-B", "alice", shots["1002"][0])
    assert one.configuration_id == canonical_id(TREE)
    assert one.components == ["PXI M6251", "coil-1", "probe-A"]  # 'spare' is not present
    assert one.signals == ["langmuir_current", "coil_field"]
    assert one.calibrations["coil_field"]["id"] == "coil_field/coil-1"
    assert one.dataset_id == "1002.v1" and Path(one.path).name.startswith("1002_v1")
    # Summary values against an independent computation of the calibrated values.
    for signal, values in (
        ("langmuir_current", lang_i(raw["1002"]["Lang_I"])),
        ("coil_field", coil_b(raw["1002"]["Coil_B"])),
    ):
        got = one.summary[signal]
        assert got["n"] == 3000 and got["nan"] == 0
        assert np.isclose(got["min"], values.min()) and np.isclose(got["max"], values.max())
        assert np.isclose(got["mean"], values.mean())

    def shots_of(**kw: Any) -> list[str]:
        return [s.shot for s in find_shots(settings, **kw).shots]

    assert shots_of(campaign="exp-A") == ["1003", "1001"]
    assert shots_of(start="2026-03-03", end="2026-03-05T10:00:00Z") == ["1003", "1002"]
    assert shots_of(signal="coil_field") == ["1003", "1002", "1001"]
    assert shots_of(signal=["coil_field", "langmuir_current"], campaign="exp-B") == ["1002"]
    assert shots_of(component="coil-1") == ["1004", "1003", "1002", "1001"]
    assert shots_of(component="spare") == []
    # Coil peaks of 2, 6 and 9 V are 0.6, 1.8 and 2.7 T after the table.
    assert shots_of(where="coil_field_max>1.0") == ["1003", "1002"]
    assert shots_of(where="coil_field_max > 1.0, coil_field_max<2.0") == ["1002"]
    assert shots_of(where="coil_field_max>=0 and campaign_max>0") == []  # no such signal
    assert shots_of(collections=["other"]) == []
    page = find_shots(settings, limit=2, offset=1)
    assert (page.total, [s.shot for s in page.shots]) == (4, ["1003", "1002"])

    for bad, named in (
        ({"where": "b_max>>1"}, "b_max>>1"),
        ({"where": "coil_field_median>1"}, "coil_field_median>1"),
        ({"start": "yesterday"}, "yesterday"),
        ({"start": "2026-03-05", "end": "2026-03-01"}, "2026-03-01"),
        ({"limit": 5000}, "5000"),
        ({"offset": -1}, "-1"),
    ):
        with pytest.raises(InvalidRequest, match=named.replace("+", r"\+")):
            find_shots(settings, **bad)


def test_reprocess_supersedes_the_shot_record(lab: dict[str, Path]) -> None:
    settings = settings_for(lab, f"sqlite:///{lab['data'] / 'catalog.db'}")
    tdms(lab["inbox"] / "a.tdms", "1001", "2026-03-02T10:00:00Z", {"Lang_I": np.ones(10)})
    ingest(settings)
    lab["calibrations"].write_text(CALIBRATIONS.replace("[0.5, 0.02, 0.001]", "[1.0, 0.5]"))
    with Pipeline("lab", settings) as p:
        assert p.reprocess().count("reprocessed") == 1
    (latest,) = find_shots(settings, shot="1001").shots
    assert (latest.version, latest.state, latest.summary["langmuir_current"]["max"]) == (
        2,
        "ingested",
        1.5,
    )
    every = find_shots(settings, shot="1001", latest=False).shots
    assert [(s.version, s.state, s.latest) for s in every] == [
        (2, "ingested", True),
        (1, "superseded", False),
    ]


def test_calibrations_managed_through_the_cli(lab: dict[str, Path], store_uri: str) -> None:
    settings = settings_for(lab, store_uri, calibrations=None, configurations=None)
    env = cli_env(lab, settings)
    good = lab["data"] / "good.yaml"
    good.write_text(CALIBRATIONS)
    added = invoke(env, "calibration", "add", str(good))
    assert added.exit_code == 0, added.output
    assert "added      langmuir_current/probe-A@1" in added.output
    assert "unchanged" in invoke(env, "calibration", "add", str(good)).output

    def listed() -> list[str]:
        out = invoke(env, "calibration", "list", "--json")
        assert out.exit_code == 0, out.output
        return [f"{c['id']}@{c['version']}" for c in json.loads(out.output)]

    before = listed()
    assert before == ["coil_field/coil-1@1", "langmuir_current/probe-A@1"]
    shown = json.loads(invoke(env, "calibration", "show", "coil_field/coil-1@1").output)
    assert shown["x"] == [-10.0, 0.0, 10.0] and shown["_stored"]["source"] is None

    def refused(text: str, *named: str) -> None:
        bad = lab["data"] / "bad.yaml"
        bad.write_text(text)
        result = invoke(env, "calibration", "add", str(bad))
        assert result.exit_code != 0, result.output
        for n in named:
            assert n in result.output, result.output
        assert listed() == before  # nothing of the file stored

    new_id = "id: neutral_pressure/gauge-1\nversion: 1\nvalid_from: 2026-01-01T00:00:00Z\n"
    lut = new_id + "kind: lut\nx: [0.0, 2.0, 1.0]\ny: [0, 1, 2]\n"
    refused(lut, "strictly increasing", "x[1] = 2.0", "x[2] = 1.0")
    # A good definition in the same file as a bad one is not stored either.
    refused(new_id + "kind: identity\n---\n" + lut, "strictly increasing")
    refused(new_id + "kind: identity\noutput: {units: furlongs-ish}\n", "furlongs-ish")
    refused(new_id + "kind: identity\ninput: {units: V}\noutput: {units: Pa}\n", "'V'", "'Pa'")
    refused(new_id + "kind: polynomial\ncoefficients: [1, .nan]\n", "finite")
    version2 = CALIBRATIONS.split("---")[0].replace("version: 1", "version: 2")
    refused(version2.replace("2026-01-01", "2026-03-01"), "overlap", "supersedes: 1", "2026-03-01")
    gap = version2.replace("valid_to: null", "valid_to: 2026-02-01T00:00:00Z") + (
        "---\n" + version2.replace("version: 2", "version: 3").replace("2026-01-01", "2026-03-01")
    )
    refused(gap.replace("version: 2\n", "version: 2\nsupersedes: 1\n"), "gap", "2026-02-01")
    refused(CALIBRATIONS.replace("[0.5, 0.02, 0.001]", "[0.5, 0.03]"), "version 2")
    missing = invoke(env, "calibration", "show", "nothing/here")
    assert missing.exit_code != 0 and "'nothing/here'" in missing.output

    # A new version superseding the first is stored, and the pipeline calibrates with it:
    # the pipeline has no calibrations file, only the database.
    v2 = lab["data"] / "v2.yaml"
    v2.write_text(
        version2.replace("version: 2\n", "version: 2\nsupersedes: 1\n").replace(
            "[0.5, 0.02, 0.001]", "[0.1, 0.03]"
        )
    )
    assert invoke(env, "calibration", "add", str(v2)).exit_code == 0
    assert "superseded" in invoke(env, "calibration", "list").output
    x = np.linspace(-5, 5, 50)
    tdms(lab["inbox"] / "s.tdms", "1001", "2026-03-02T10:00:00Z", {"Lang_I": x})
    assert ingest(settings)["s.tdms"].state == "ingested"
    (record,) = find_shots(settings).shots
    assert record.calibrations["langmuir_current"]["version"] == 2
    assert np.isclose(record.summary["langmuir_current"]["max"], (0.1 + 0.03 * x).max())


def test_configurations_managed_through_the_cli(lab: dict[str, Path], store_uri: str) -> None:
    lab["calibrations"].write_text(CALIBRATIONS.replace("2026-01-01", "2025-01-01"))
    settings = settings_for(lab, store_uri, configurations=None)
    env = cli_env(lab, settings)
    trees = {}
    for name, change in (("one", 1.0), ("two", 2.0), ("three", 3.0)):
        tree = json.loads(json.dumps(TREE))
        tree["diagnostics"]["coil-1"]["gain"] = change
        if name == "three":
            tree["diagnostics"]["probe-B"] = {"type": "Langmuir probe", "present": True}
        trees[name] = tree
        (lab["data"] / f"{name}.json").write_text(json.dumps(tree))
    first = invoke(env, "configuration", "add", str(lab["data"] / "one.json"),
                   "--valid-from", "2026-01-01T00:00:00Z")  # fmt: skip
    assert first.exit_code == 0, first.output
    assert f"added      {canonical_id(trees['one'])}" in first.output
    second = invoke(env, "configuration", "add", str(lab["data"] / "two.json"),
                    "--valid-from", "2026-03-03")  # fmt: skip
    assert second.exit_code == 0 and "ended" in second.output, second.output
    third = invoke(env, "configuration", "add", str(lab["data"] / "three.json"),
                   "--shots", "1001-1001")  # fmt: skip
    assert third.exit_code == 0, third.output
    for args, named in (
        (["--valid-from", "2026-01-15", "--valid-to", "2026-02-01"], "overlaps"),
        (["--shots", "1000-1005"], "overlaps"),
        (["--shots", "9-1"], "9-1"),
        (["--valid-from", "soon"], "soon"),
        ([], "--valid-from"),
    ):
        result = invoke(env, "configuration", "add", str(lab["data"] / "one.json"), *args)
        assert result.exit_code != 0 and named in result.output, result.output
    listed = json.loads(invoke(env, "configuration", "list", "--json").output)
    assert [(c["valid_from"], c["valid_to"], c["shots"]) for c in listed] == [
        ("2026-01-01T00:00:00Z", "2026-03-03T00:00:00Z", None),
        ("2026-03-03T00:00:00Z", None, None),
        (None, None, "1001-1001"),
    ]
    shown = json.loads(invoke(env, "configuration", "show", canonical_id(trees["two"])[:10]).output)
    assert shown["tree"] == trees["two"] and shown["validity"][0]["valid_from"].startswith(
        "2026-03-03"
    )

    x = {"Lang_I": np.zeros(10)}
    tdms(lab["inbox"] / "a.tdms", "1001", "2026-03-02T10:00:00Z", x)  # its shot range
    tdms(lab["inbox"] / "b.tdms", "1002", "2026-03-02T11:00:00Z", x)  # the first snapshot
    tdms(lab["inbox"] / "c.tdms", "1003", "2026-03-04T11:00:00Z", x)  # the second
    tdms(lab["inbox"] / "d.tdms", "1004", "2025-06-01T11:00:00Z", x)  # before any
    outcomes = ingest(settings)
    assert outcomes["d.tdms"].code == "E_CONFIG_MISSING"
    assert "1004" in outcomes["d.tdms"].message and "2025-06-01" in outcomes["d.tdms"].message
    found = {s.shot: s for s in find_shots(settings).shots}
    assert {k: s.configuration_id for k, s in found.items()} == {
        "1001": canonical_id(trees["three"]),
        "1002": canonical_id(trees["one"]),
        "1003": canonical_id(trees["two"]),
    }
    assert [s.shot for s in find_shots(settings, component="probe-B").shots] == ["1001"]


def test_nan_policy_per_signal(lab: dict[str, Path]) -> None:
    uri = f"sqlite:///{lab['data'] / 'catalog.db'}"
    values = np.linspace(-1, 1, 200)
    values[[5, 50]] = np.nan
    tdms(lab["inbox"] / "a.tdms", "1001", "2026-03-02T10:00:00Z", {"Lang_I": values})
    # 'reject' for the probe current: quarantined, naming the signal and the count.
    settings = settings_for(lab, uri, nan={"langmuir_current": "reject"})
    outcome = ingest(settings)["a.tdms"]
    assert (outcome.state, outcome.code) == ("quarantined", "E_NAN")
    assert "langmuir_current" in outcome.message and "2 NaN of 200" in outcome.message
    # Allowed (the default, or '*'): ingested, the NaN counted and left out of the summary.
    allowed = settings_for(lab, uri, nan={"*": "allow", "coil_field": "reject"})
    with Pipeline("lab", allowed) as p:
        assert p.retry(outcome.sha256).state == "ingested"
    (record,) = find_shots(allowed).shots
    good = lang_i(values[~np.isnan(values)])
    assert record.summary["langmuir_current"]["nan"] == 2
    assert np.isclose(record.summary["langmuir_current"]["mean"], good.mean())


def test_an_older_ledger_file_is_taken_into_the_catalog_database(lab: dict[str, Path]) -> None:
    settings = settings_for(lab, f"sqlite:///{lab['data'] / 'catalog.db'}")
    store = lab["data"] / "ingest" / "lab"
    store.mkdir(parents=True)
    con = sqlite3.connect(store / "ledger.db")
    con.execute(
        "CREATE TABLE items (sha256 TEXT PRIMARY KEY, name TEXT, state TEXT, shot TEXT, "
        "code TEXT, product TEXT, version INTEGER, updated TEXT)"
    )
    con.execute(
        "INSERT INTO items VALUES ('ab', 'old.tdms', 'quarantined', NULL, 'E_FORMAT', NULL, "
        "NULL, '2026-01-01T00:00:00Z')"
    )
    con.commit()
    con.close()
    with Pipeline("lab", settings) as p:
        assert [(i.name, i.code) for i in p.store.items("quarantined")] == [
            ("old.tdms", "E_FORMAT")
        ]
    assert not (store / "ledger.db").exists() and (store / "ledger.db.imported").exists()
    registry = Registry(settings.catalog_uri, "lab")
    try:
        assert registry.item("ab") is not None
    finally:
        registry.close()

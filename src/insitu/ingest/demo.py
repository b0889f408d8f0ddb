"""The lab demo: a small lab's raw files, calibrations and configuration, ingested.

:func:`run_demo` makes, under ``DATA_DIR/lab-demo/``::

    inbox/                 where the acquisition drops its files (emptied by the pipelines)
    calibrations.yaml      the calibration set (polynomial, lookup table, unit conversion)
    configurations.json    the testbed's configuration snapshot
    pipelines.toml         the two pipelines' settings tables, to copy into a settings file
    products/              the products: the catalog collection ``lab-demo``

and puts ``pipelines.toml`` in the pipelines folder (``DATA_DIR/pipelines/lab-demo.toml``)
unless the settings define these pipelines, so that every command and the data service
know them. It then writes three TDMS shots (written with npTDMS, each with its manifest,
as LabVIEW would) and a CSV vacuum log into the inbox, runs the pipelines ``lab-demo`` (TDMS) and
``lab-demo-log`` (CSV) on them and registers the products as the collection ``lab-demo``.
The raw files are made the same, byte for byte, every time: a file whose bytes were
ingested already is not written again, so a second run does nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from insitu.ingest.pipeline import Outcome, Pipeline
from insitu.settings import IngestSettings, PipelineSettings, Settings

__all__ = ["COLLECTION", "DemoReport", "demo_pipelines", "run_demo"]

COLLECTION = "lab-demo"
GROUP = "PXI M6251"
_RATE = 100_000  # samples per second
_SAMPLES = 100_000  # one second per shot

CALIBRATIONS = """\
# The lab demo's calibrations: one YAML document per definition, versioned.
id: langmuir_current/probe-A
version: 1
valid_from: 2026-01-01T00:00:00Z
valid_to: null
input: {units: V}
output: {units: mA, long_name: Langmuir probe ion saturation current}
kind: polynomial
coefficients: [0.05, 2.0, 0.01]
author: demo
reference: "demo logbook 2026-01-01"
---
id: coil_field/coil-1
version: 1
valid_from: 2026-01-01T00:00:00Z
input: {units: V}
output: {units: T, long_name: Magnetic field at the coil centre}
kind: lut
x: [0.0, 2.0, 5.0, 10.0]
y: [0.0, 0.08, 0.21, 0.45]
extrapolation: clip
author: demo
---
id: neutral_pressure/baratron-1
version: 1
valid_from: 2026-01-01T00:00:00Z
input: {units: V}
output: {units: Pa, long_name: Neutral gas pressure}
kind: polynomial
coefficients: [0.0, 13.332]
author: demo
reference: "Baratron 1 Torr full scale at 10 V"
"""

CONFIGURATIONS: list[dict[str, Any]] = [
    {
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": None,
        "tree": {
            "testbed": "insitu demo plasma device",
            "daq": {
                "id": GROUP,
                "type": "NI PXI-6251",
                "serial": "01A2B3C4",
                "firmware": "21.0",
                "channels": {"ai0": "Lang_I", "ai1": "Coil_B", "ai2": "Baratron"},
            },
            "diagnostics": {
                "probe-A": {"type": "Langmuir probe", "present": True, "position_mm": 45.0},
                "coil-1": {"type": "Hall sensor", "present": True, "gain": 10.0},
                "baratron-1": {"type": "capacitance gauge", "present": True, "range": "1 Torr"},
            },
        },
    }
]

# (file, shot id, acquisition start, operator, peak coil voltage, fill pressure in V)
SHOTS = [
    ("shot_3001.tdms", "3001", "2026-03-02T09:00:00Z", "alice", 6.0, 0.6),
    ("shot_3002.tdms", "3002", "2026-03-02T10:30:00Z", "alice", 8.0, 0.8),
    ("shot_3003.tdms", "3003", "2026-03-02T14:00:00Z", "bob", 9.5, 0.5),
]
LOG = ("vacuum_2026-03-02.csv", "vacuum-20260302", "2026-03-02T08:00:00Z", "bob")


def demo_pipelines(lab: Path) -> dict[str, PipelineSettings]:
    """The demo's pipelines, with ``lab`` the demo's lab folder."""
    common: dict[str, Any] = {
        "source": str(lab / "inbox"),
        "calibrations": str(lab / "calibrations.yaml"),
        "configurations": str(lab / "configurations.json"),
        "output": str(lab / "products"),
        "collection": COLLECTION,
        "stable_seconds": 5.0,
        "attributes": {
            "institution": "insitu demo lab",
            "source": "insitu lab demo (synthetic acquisition)",
        },
    }
    return {
        "lab-demo": PipelineSettings(
            parser="tdms",
            pattern="*.tdms",
            channels={
                f"{GROUP}/Lang_I": "langmuir_current",
                f"{GROUP}/Coil_B": "coil_field",
                f"{GROUP}/Baratron": "neutral_pressure",
            },
            **common,
        ),
        "lab-demo-log": PipelineSettings(
            parser="csv",
            pattern="*.csv",
            delimiter=";",
            decimal=",",
            units_row=True,
            time_column="t",
            channels={"Baratron": "neutral_pressure"},
            **common,
        ),
    }


def _shot_bytes(shot: str, start: str, operator: str, coil: float, fill: float) -> bytes:
    from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

    rng = np.random.default_rng(int(shot))
    t = np.arange(_SAMPLES) / _RATE
    # A 0.6 s flat-top coil pulse, a plasma current following it, a pressure dip.
    envelope = np.clip(np.minimum(t - 0.1, 0.8 - t) / 0.05, 0.0, 1.0)
    values = {
        "Lang_I": envelope * (1.5 + 0.4 * np.sin(2 * np.pi * 35 * t)) + rng.normal(0, 0.05, t.size),
        "Coil_B": envelope * coil + rng.normal(0, 0.01, t.size),
        "Baratron": 1000.0 * fill * (1 - 0.2 * envelope) + rng.normal(0, 2.0, t.size),  # mV
    }
    units = {"Lang_I": "V", "Coil_B": "V", "Baratron": "mV"}
    root = {
        "shot_id": shot,
        "acquired_at": start,
        "operator": operator,
        "experiment_id": "demo-campaign",
        "name": f"demo shot {shot}",
    }
    buffer = io.BytesIO()
    with TdmsWriter(buffer) as writer:
        writer.write_segment(
            [
                RootObject(root),
                GroupObject(GROUP),
                *(
                    ChannelObject(
                        GROUP,
                        name,
                        data,
                        properties={
                            "wf_increment": 1.0 / _RATE,
                            "wf_start_offset": -0.1,
                            "unit_string": units[name],
                        },
                    )
                    for name, data in values.items()
                ),
            ]
        )
    return buffer.getvalue()


def _log_bytes(shot: str, start: str, operator: str) -> bytes:
    lines = [
        f'# :shot_id = "{shot}"',
        f'# :acquired_at = "{start}"',
        f'# :operator = "{operator}"',
        '# :experiment_id = "demo-campaign"',
        '# :comment = "vacuum log, one row a minute"',
        "t;Baratron",
        "s;V",
    ]
    for minute in range(0, 8 * 60):
        volts = 0.5 + 0.3 * np.exp(-minute / 90.0) + 0.01 * np.sin(minute / 7.0)
        lines.append(f"{minute * 60}.0;{volts:.4f}".replace(".", ","))
    return ("\n".join(lines) + "\n").encode()


def _manifest(data: bytes, shot: str) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "shot_id": shot}


def _drop(inbox: Path, name: str, data: bytes, manifest: dict[str, Any]) -> None:
    """Write a file into the inbox as an instrument would: the file, then its manifest."""
    part = inbox / f".{name}.part"
    part.write_bytes(data)
    part.replace(inbox / name)
    mpart = inbox / f".{name}.manifest.part"
    mpart.write_text(json.dumps(manifest))
    mpart.replace(inbox / f"{name}.manifest.json")


@dataclass(slots=True)
class DemoReport:
    """What :func:`run_demo` did."""

    lab: Path
    outcomes: list[Outcome] = field(default_factory=list)
    products: int = 0
    seconds: float = 0.0

    @property
    def new(self) -> int:
        """How many products this run made."""
        return sum(o.state == "ingested" for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """Nothing was quarantined."""
        return not any(o.state == "quarantined" for o in self.outcomes)


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with the demo's pipelines added."""
    lab = settings.data_dir / COLLECTION
    pipelines = {**settings.ingest.pipelines, **demo_pipelines(lab)}
    return settings.model_copy(update={"ingest": IngestSettings(pipelines=pipelines)})


def _pipelines_toml(specs: dict[str, PipelineSettings]) -> str:
    lines = ["# The lab demo's pipelines: add these tables to your insitu settings file.\n"]
    for name, spec in specs.items():
        data = spec.model_dump(exclude_defaults=True)
        tables = {k: data.pop(k) for k in ("channels", "attributes") if k in data}
        lines.append(f"[ingest.pipelines.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in data.items()]
        for key, table in tables.items():
            lines.append(f"\n[ingest.pipelines.{name}.{key}]")
            lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def install_demo_pipelines(settings: Settings) -> Path | None:
    """The demo's pipelines in the pipelines folder (``ingest.pipelines_dir``), so that every
    command and the data service's pages know them (also for a demo set up by a version
    that did not put them there); not where the settings name them or with no demo. Returns
    the file, if there is one."""
    lab = settings.data_dir / COLLECTION
    if not (lab / "pipelines.toml").is_file() or (
        set(demo_pipelines(lab)) & set(settings.ingest.pipelines)
    ):
        return None
    folder = settings.ingest.pipelines_dir or settings.data_dir / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{COLLECTION}.toml"
    if not target.exists():
        target.write_text((lab / "pipelines.toml").read_text())
    return target


def run_demo(settings: Settings) -> DemoReport:
    """Set up the lab demo under ``settings.data_dir`` and ingest it (see the module
    docstring); does nothing new when run again."""
    started = time.perf_counter()
    lab = settings.data_dir / COLLECTION
    inbox = lab / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("calibrations.yaml", CALIBRATIONS),
        ("configurations.json", json.dumps(CONFIGURATIONS, indent=2) + "\n"),
        ("pipelines.toml", _pipelines_toml(demo_pipelines(lab))),
    ):
        if not (lab / name).exists():  # an operator may edit them, then reprocess
            (lab / name).write_text(text)
    install_demo_pipelines(settings)
    full = demo_settings(settings)
    report = DemoReport(lab)
    files = {
        "lab-demo": [
            (name, shot, _shot_bytes(shot, start, op, coil, fill))
            for name, shot, start, op, coil, fill in SHOTS
        ],
        "lab-demo-log": [(LOG[0], LOG[1], _log_bytes(LOG[1], LOG[2], LOG[3]))],
    }
    for pipeline_name, raws in files.items():
        with Pipeline(pipeline_name, full) as pipeline:
            for name, shot, data in raws:
                if pipeline.store.item(hashlib.sha256(data).hexdigest()) is None:
                    _drop(inbox, name, data, _manifest(data, shot))
            report.outcomes += pipeline.run().outcomes
            report.products += len(pipeline.store.items("ingested"))
    _ensure_registered(full)
    report.seconds = time.perf_counter() - started
    return report


def _ensure_registered(settings: Settings) -> None:
    """Register the collection if the catalog lacks it (e.g. a fresh catalog database)."""
    from insitu.catalog import Catalog
    from insitu.errors import CollectionNotFound

    with Catalog(settings) as catalog:
        try:
            catalog.collection(COLLECTION)
            return
        except CollectionNotFound:
            pass
    with Pipeline("lab-demo", settings) as pipeline:
        pipeline.register()

"""Ingest: raw instrument files to calibrated, metadata-stamped, versioned datasets.

Sits beside compute, above the catalog: it reads raw files through :mod:`insitu.formats`
and registers its products in :mod:`insitu.catalog`; only cli, access and hub import it.

A :class:`Pipeline` (``[ingest.pipelines.NAME]`` in the settings) takes the complete files
of its inbox, keeps their bytes in a content-addressed raw store, checks them, calibrates
their signals with versioned :class:`Calibration` s and writes one product per shot, which
the catalog indexes as a collection. Files that cannot be ingested are quarantined with a
report; :meth:`Pipeline.retry` takes them again once fixed. :meth:`Pipeline.watch` keeps
taking files as they become complete; :meth:`Pipeline.reprocess` writes a new version of the
shots a calibration change affects. :func:`run_demo` sets up and ingests the lab demo.

Item states, shot records, calibration definitions and configuration snapshots are tables
of the catalog database (:mod:`insitu.ingest.registry`); :func:`find_shots` searches the shot
records (by campaign, time, signal, configuration component, summary values).
"""

from insitu.ingest.calibration import Calibration, Calibrations, load_calibrations
from insitu.ingest.definitions import (
    Snapshot,
    add_calibrations,
    add_configuration,
    calibration_rows,
    configuration_id,
    one_snapshot,
    snapshots,
)
from insitu.ingest.demo import DemoReport, install_demo_pipelines, run_demo
from insitu.ingest.pipeline import Outcome, Pipeline, RunReport, poll_interval
from insitu.ingest.product import product_id
from insitu.ingest.registry import Item, Registry, ShotRecord
from insitu.ingest.search import MAX_SHOTS, Condition, ShotPage, find_shots, parse_where
from insitu.ingest.store import Candidate, RawStore, candidates, sha256_of

__all__ = [
    "MAX_SHOTS",
    "Calibration",
    "Calibrations",
    "Candidate",
    "Condition",
    "DemoReport",
    "Item",
    "Outcome",
    "Pipeline",
    "RawStore",
    "Registry",
    "RunReport",
    "ShotPage",
    "ShotRecord",
    "Snapshot",
    "add_calibrations",
    "add_configuration",
    "calibration_rows",
    "candidates",
    "configuration_id",
    "find_shots",
    "install_demo_pipelines",
    "load_calibrations",
    "one_snapshot",
    "parse_where",
    "poll_interval",
    "product_id",
    "run_demo",
    "sha256_of",
    "snapshots",
]

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
"""

from insitu.ingest.calibration import Calibration, Calibrations, load_calibrations
from insitu.ingest.demo import DemoReport, run_demo
from insitu.ingest.pipeline import Outcome, Pipeline, RunReport, poll_interval
from insitu.ingest.product import product_id
from insitu.ingest.store import Candidate, Item, RawStore, candidates, sha256_of

__all__ = [
    "Calibration",
    "Calibrations",
    "Candidate",
    "DemoReport",
    "Item",
    "Outcome",
    "Pipeline",
    "RawStore",
    "RunReport",
    "candidates",
    "load_calibrations",
    "poll_interval",
    "product_id",
    "run_demo",
    "sha256_of",
]

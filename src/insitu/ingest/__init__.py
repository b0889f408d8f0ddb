"""Ingest: raw instrument files to calibrated, metadata-stamped, versioned datasets.

Sits beside compute, above the catalog: it reads raw files through :mod:`insitu.formats`
and registers its products in :mod:`insitu.catalog`; only cli, access and hub import it.
"""

__all__: list[str] = []

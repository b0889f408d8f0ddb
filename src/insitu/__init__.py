"""insitu: notebooks and a parallel computer brought to where the data lives.

The top level imports nothing heavy; ``Catalog`` and ``open_dataset`` load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Catalog", "Settings", "__version__", "cluster", "open_dataset"]

if TYPE_CHECKING:
    from insitu.catalog import Catalog, open_dataset
    from insitu.compute import cluster
    from insitu.settings import Settings


def __getattr__(name: str) -> Any:
    if name in ("Catalog", "open_dataset"):
        from insitu import catalog

        return getattr(catalog, name)
    if name == "cluster":
        from insitu.compute import cluster

        return cluster
    if name == "Settings":
        from insitu.settings import Settings

        return Settings
    raise AttributeError(f"module 'insitu' has no attribute {name!r}")

"""A SQLite catalog of one small generated archive, scanned, for engine and cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from insitu.catalog import Catalog
from insitu.settings import Settings


@contextmanager
def one_dataset(tmp_path: Path, root: Path) -> Iterator[tuple[Settings, Catalog, str]]:
    """Settings (1 MiB slabs), the catalog of ``root`` (collection ``a``) and the id of its
    one dataset."""
    settings = Settings.load(
        data_dir=tmp_path / "state",
        catalog={"uri": f"sqlite:///{tmp_path / 'c.db'}"},
        compute={"chunk_bytes": 2**20},
    )
    with Catalog(settings) as cat:
        cat.add_collection("a", root)
        cat.scan(workers=1)
        (ds_id,) = cat.search().all_ids
        yield settings, cat, ds_id

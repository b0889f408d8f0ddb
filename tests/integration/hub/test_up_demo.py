"""``insitu up`` on a machine where an earlier, deleted installation left the demo
collection: it is moved to this installation's sample data, as ``insitu demo`` does."""

from __future__ import annotations

from pathlib import Path

from insitu.catalog import Catalog
from insitu.cli._hub import _index_demo_if_empty
from insitu.settings import Settings


def test_a_demo_collection_whose_folder_is_gone_is_moved(tmp_path: Path, demo_root: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    old = tmp_path / "old-venv-sample-data"
    old.mkdir()
    with Catalog(settings) as cat:
        cat.add_collection("demo", old, template="cmip6", public=True)
    old.rmdir()  # the earlier checkout and its venv were deleted
    _index_demo_if_empty(settings)
    with Catalog(settings) as cat:
        assert Path(cat.collection("demo").root) == demo_root.resolve()
        assert cat.stats()["demo"].datasets > 0

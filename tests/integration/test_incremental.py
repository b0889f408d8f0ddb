"""Rescans: unchanged files are not reopened, new ones added, vanished ones removed, and
the latest version moves when versions come and go (compared as versions)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from insitu.catalog import Catalog

MIROC = "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn/v20190311"
MASTER = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn"


@pytest.fixture
def archive(tmp_path: Path, demo_root: Path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(demo_root / MIROC, root / MIROC)
    return root


def _versions(cat: Catalog) -> dict[str, bool]:
    return {r.version: r.latest for r in cat.search(model="MIROC6", latest=False)}


def test_rescan_is_incremental(store_uri: str, archive: Path) -> None:
    cat = Catalog(store_uri)
    cat.add_collection("a", archive)
    (first,) = cat.scan(workers=2)
    assert (first.new, first.unchanged, first.datasets) == (7, 0, 1)

    (again,) = cat.scan(workers=2)
    assert (again.new, again.changed, again.unchanged, again.removed) == (0, 0, 7, 0)

    files = sorted((archive / MIROC).iterdir())
    files[-1].unlink()  # 201001-201412 vanishes
    os.utime(files[0], ns=(1, 1))  # 195001-195912 "changes"
    (third,) = cat.scan(workers=2)
    assert (third.new, third.changed, third.unchanged, third.removed) == (0, 1, 5, 1)
    (record,) = cat.search(model="MIROC6").results
    assert record.n_files == 6
    assert record.time_end is not None and record.time_end.startswith("2009-12")


def test_latest_version_moves(store_uri: str, archive: Path) -> None:
    cat = Catalog(store_uri)
    cat.add_collection("a", archive)
    cat.scan(workers=1)
    assert _versions(cat) == {"v20190311": True}

    newer = archive / MIROC.replace("v20190311", "v20200101")
    newer.mkdir(parents=True)
    shutil.copy(sorted((archive / MIROC).iterdir())[0], newer)
    cat.scan(workers=1)
    assert _versions(cat) == {"v20190311": False, "v20200101": True}
    (latest,) = cat.search(model="MIROC6").results
    assert latest.version == "v20200101" and latest.n_files == 1

    # v9 < v10 < v20190311 as versions; as strings 'v9' would beat 'v20200101'.
    for v in ("v9", "v10"):
        d = archive / MIROC.replace("v20190311", v)
        d.mkdir(parents=True)
        shutil.copy(sorted((archive / MIROC).iterdir())[0], d)
    cat.scan(workers=1)
    assert _versions(cat) == {"v20190311": False, "v20200101": True, "v9": False, "v10": False}

    shutil.rmtree(newer)
    (report,) = cat.scan(workers=1)
    assert report.removed == 1
    assert _versions(cat) == {"v20190311": True, "v9": False, "v10": False}
    assert f"{MASTER}.v20200101" not in cat.search(latest=False).all_ids


def test_missing_root_changes_nothing(store_uri: str, archive: Path, tmp_path: Path) -> None:
    from insitu.errors import DataError

    cat = Catalog(store_uri)
    cat.add_collection("a", archive)
    cat.scan(workers=1)
    archive.rename(tmp_path / "unmounted")
    with pytest.raises(DataError, match="is missing or unreadable; is its storage mounted"):
        cat.scan(workers=1)
    assert cat.search(model="MIROC6").total == 1


def test_the_files_of_a_dataset_follow_rescans(store_uri: str, archive: Path) -> None:
    """``Catalog.files`` keeps recent answers, but never across a change of the store."""
    cat = Catalog(store_uri)
    cat.add_collection("a", archive)
    cat.scan(workers=2)
    (record,) = cat.search(model="MIROC6").results
    first = cat.files(record.dataset_id)
    assert len(first) == 7
    first.clear()  # a caller's own list
    assert len(cat.files(record.dataset_id)) == 7
    sorted((archive / MIROC).iterdir())[-1].unlink()
    cat.scan(workers=2)
    after = cat.files(record.dataset_id)
    assert len(after) == 6
    assert not any(f.path.endswith("201001-201412.nc") for f in after)

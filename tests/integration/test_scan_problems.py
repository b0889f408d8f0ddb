"""Acceptance: a test archive with every kind of bad file. The scan completes, the good files
are indexed, and each bad one is listed once, with its status and a reason that names the
problem; rescans are incremental, and a bad file that is fixed or removed stops being listed.

The archive is built by :mod:`tests.integration.badarchive`. As root (as in CI), where file
modes are ignored and "permission denied" would never happen, each scan runs in a
subprocess that drops to an unprivileged user before it touches the archive (it imports what
it needs first: the interpreter's own files may be unreadable to that user); otherwise it
runs here. The catalog is inspected here, through the Python API, either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import insitu
from insitu.catalog import Catalog, FileRecord, FileStatus, ScanReport
from tests.integration.badarchive import (
    VERSION,
    BadArchive,
    build,
    dataset_id,
    drs_dir,
    drs_name,
    undecodable_name,
)

NOBODY = 65534  # uid and gid the scan runs as when the tests run as root
AS_ROOT = os.geteuid() == 0
COLLECTION = "bad"

_SCAN = """
import dataclasses, json, os, sys
import sqlite3, tomllib  # the standard library may be unreadable once privileges are dropped
import sqlalchemy.dialects.sqlite, tqdm
from insitu.catalog import Catalog

uri, name, root, uid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
with Catalog(uri) as cat:
    if name not in {c.name for c in cat.collections()}:
        cat.add_collection(name, root)
    (report,) = cat.scan(name, workers=2)
print(json.dumps(dataclasses.asdict(report)))
"""


@dataclasses.dataclass
class Site:
    """A bad archive and its catalog database in a directory every user can traverse."""

    base: Path
    archive: BadArchive

    @property
    def db_dir(self) -> Path:
        return self.base / "db"

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.db_dir / 'catalog.db'}"

    @classmethod
    def create(cls) -> Site:
        base = Path(tempfile.mkdtemp(prefix="insitu-badarchive-", dir="/tmp"))
        base.chmod(0o755)
        old = os.umask(0o022)  # readable by the unprivileged scanner whatever the CI's umask
        try:
            archive = build(base / "archive")
            (base / "db").mkdir(mode=0o777)
            (base / "db").chmod(0o777)
        finally:
            os.umask(old)
        return cls(base, archive)

    def remove(self) -> None:
        self.archive.unlock()
        shutil.rmtree(self.base)

    def scan(self) -> ScanReport:
        """Scan the archive: here, or as root in a subprocess run by an unprivileged user."""
        if not AS_ROOT:
            with self.catalog() as cat:
                if COLLECTION not in {c.name for c in cat.collections()}:
                    cat.add_collection(COLLECTION, self.archive.root)
                (report,) = cat.scan(COLLECTION, workers=2)
            return report
        for path in [self.db_dir, *self.db_dir.iterdir()]:  # e.g. a WAL file made here
            os.chown(path, NOBODY, NOBODY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
        src = str(Path(insitu.__file__).resolve().parent.parent)
        env.update(
            HOME=str(self.base),
            XDG_CONFIG_HOME=str(self.base / "config"),
            XDG_DATA_HOME=str(self.base / "data"),
            PYTHONPATH=os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")])),
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _SCAN,
                self.uri,
                COLLECTION,
                str(self.archive.root),
                str(NOBODY),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.base,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"the scan failed:\n{proc.stderr}"
        return ScanReport(**json.loads(proc.stdout.splitlines()[-1]))

    def catalog(self) -> Catalog:
        return Catalog(self.uri)

    def problems(self) -> dict[str, FileRecord]:
        with self.catalog() as cat:
            return {p.path: p for p in cat.problems(COLLECTION)}


def _expected_report(arch: BadArchive) -> dict[str, object]:
    """Counts of a first scan, from what the archive was built with."""
    paths = set(arch.good_files) | set(arch.problems)
    walked = sum(p.walk for p in arch.problems.values())
    return {
        "seen": len(paths),
        "new": len(paths) - walked,
        "changed": 0,
        "unchanged": 0,
        "removed": 0,
        "aliases": arch.aliases,
        "datasets": len(arch.good),
        "problems": dict(
            Counter(p.status.value for p in arch.problems.values() if p.status is not FileStatus.OK)
        ),
    }


def _check_reasons(arch: BadArchive, found: dict[str, FileRecord]) -> None:
    assert sorted(found) == sorted(arch.problems)
    for path, exp in arch.problems.items():
        rec = found[path]
        reason = rec.reason.lower()
        assert rec.status is exp.status, (path, rec.status, rec.reason)
        for word in exp.words:
            assert word.lower() in reason, (path, word, rec.reason)
        for word in exp.not_words:
            assert word.lower() not in reason, (path, word, rec.reason)
        assert rec.dataset_id is None or rec.ok, path  # a bad file joins no dataset


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[Site, ScanReport]]:
    """The bad archive after its first scan, shared by the read-only tests."""
    site = Site.create()
    try:
        yield site, site.scan()
    finally:
        site.remove()


@pytest.fixture
def site() -> Iterator[Site]:
    """A fresh bad archive, for tests that change it."""
    site = Site.create()
    try:
        yield site
    finally:
        site.remove()


def test_the_scan_completes_with_the_right_counts(scanned: tuple[Site, ScanReport]) -> None:
    site, report = scanned
    got = {k: getattr(report, k) for k in _expected_report(site.archive)}
    assert got == _expected_report(site.archive)
    assert report.collection == COLLECTION
    with site.catalog() as cat:
        stats = cat.stats()[COLLECTION]
    assert stats.datasets == stats.latest_datasets == len(site.archive.good)
    assert stats.files == report.seen
    assert stats.problems == sum(report.problems.values())  # notes on good files not counted


def test_the_good_files_are_indexed(scanned: tuple[Site, ScanReport]) -> None:
    site, _ = scanned
    good = site.archive.good
    with site.catalog() as cat:
        result = cat.search(limit=100)
        assert result.total == len(good)
        assert sorted(result.dataset_ids) == sorted(good)
        for record in result:
            exp = good[record.dataset_id]
            assert record.latest
            assert record.version == VERSION
            assert record.n_files == len(exp.files)
            assert (record.calendar, record.time_start, record.time_end) == (
                exp.calendar,
                exp.time_start,
                exp.time_end,
            )
            assert record.bbox == (0.0, -45.0, 270.0, 45.0)
            files = cat.files(record.dataset_id)
            assert tuple(f.path for f in files) == exp.files
            assert {f.data_model for f in files} == {exp.data_model}
        # Facet and time searches see the good datasets and nothing of the bad ones.
        assert cat.search(model="MODEL-360").dataset_ids == [dataset_id("INST-B", "MODEL-360")]
        assert cat.search(institution_id="BAD").total == 0
        assert cat.search(variable="orog").total == 1
        timed = {d for d, g in good.items() if g.time_start}
        assert set(cat.search(time=("1955", "1956"), limit=100).dataset_ids) == timed


def test_each_bad_file_is_listed_once_with_its_reason(scanned: tuple[Site, ScanReport]) -> None:
    site, _ = scanned
    found = site.problems()
    _check_reasons(site.archive, found)
    # The note on a good file does not keep it out of its dataset.
    notime = found[
        site.archive.good[dataset_id("INST-E", "MODEL-NOTIME", table="fx", var="orog")].files[0]
    ]
    assert notime.ok and notime.dataset_id is not None
    # Unreadable files keep the facets their path gives, to help find them.
    corrupt = found[f"{drs_dir('BAD', 'corrupt-signature')}/{drs_name('corrupt-signature')}"]
    assert corrupt.facets["source_id"] == "corrupt-signature"


def test_esgf_aliases_count_once_and_are_not_problems(scanned: tuple[Site, ScanReport]) -> None:
    site, report = scanned
    assert report.aliases == site.archive.aliases == 8
    with site.catalog() as cat:
        paths = [f.path for f in cat.store.files(COLLECTION)]
    assert len(paths) == len(set(paths)) == report.seen
    assert not [p for p in paths if "/latest/" in p or "/files/" in p]
    std = dataset_id("INST-A", "MODEL-STD")
    assert all(f"/{VERSION}/" in p for p in site.archive.good[std].files)


def test_a_second_scan_is_incremental_and_keeps_the_problems(
    scanned: tuple[Site, ScanReport],
) -> None:
    site, first = scanned
    before = {p: (r.status, r.reason) for p, r in site.problems().items()}
    second = site.scan()
    # Files denied at the last scan are retried; everything else is left alone.
    retried = sum(
        not p.walk and p.status is FileStatus.DENIED for p in site.archive.problems.values()
    )
    assert retried == 1
    assert (second.new, second.removed, second.changed) == (0, 0, retried)
    assert second.unchanged == first.new - retried
    for key in ("seen", "aliases", "datasets", "problems"):
        assert getattr(second, key) == getattr(first, key), key
    assert {p: (r.status, r.reason) for p, r in site.problems().items()} == before


def test_fixed_and_removed_bad_files_stop_being_listed(site: Site) -> None:
    arch = site.archive
    first = site.scan()
    assert first.problems == _expected_report(arch)["problems"]

    std = drs_dir("INST-A", "MODEL-STD")
    corrupt = f"{drs_dir('BAD', 'corrupt-signature')}/{drs_name('corrupt-signature')}"
    broken = f"{std}/{drs_name('MODEL-STD', '196001-196412')}"
    badname = next(p for p, e in arch.problems.items() if e.status is FileStatus.BAD_NAME)
    denied = f"{drs_dir('INST-B', 'MODEL-360')}/{drs_name('MODEL-360', '196001-196912')}"
    (arch.root / corrupt).unlink()
    (arch.root / broken).unlink()
    os.unlink(os.fsencode(arch.root / std) + b"/" + undecodable_name())
    arch.unlock(arch.root / denied)

    report = site.scan()
    assert (report.new, report.removed, report.changed) == (0, 3, 1)
    for path in (corrupt, broken, badname, denied):
        del arch.problems[path]
    _check_reasons(arch, site.problems())
    assert report.problems == _expected_report(arch)["problems"]
    assert report.aliases == first.aliases and report.datasets == first.datasets

    # The file that can now be read joined its dataset.
    with site.catalog() as cat:
        record = cat.dataset(dataset_id("INST-B", "MODEL-360"))
        assert record.n_files == 2
        assert (record.time_start, record.time_end) == (
            "1950-01-16T00:00:00",
            "1969-12-16T00:00:00",
        )
        assert [f.path for f in cat.files(record.dataset_id)][-1] == denied

"""Scanning a collection: walk, parse paths, read new headers in parallel, group, store.

Rescans are incremental: a file whose size and mtime are unchanged is not reopened, new
files are added and vanished ones removed; only the datasets they touch are regrouped.
Bad input never stops a scan: every file that cannot be indexed is stored with its status
and reason (``insitu catalog problems``), and the scan ends with counts.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from insitu._util import gc_paused
from insitu.catalog.grouping import aggregate, mark_latest
from insitu.catalog.headers import HeaderResult, read_headers
from insitu.catalog.models import (
    Collection,
    DatasetRecord,
    FileRecord,
    FileStatus,
    ScanReport,
    VariableInfo,
)
from insitu.catalog.store import CatalogStore
from insitu.catalog.templates import ParsedPath, Template
from insitu.catalog.walk import Entry, walk_archive
from insitu.errors import DataError

__all__ = ["scan_collection"]

log = logging.getLogger(__name__)

_BATCH = 64  # files per task sent to a worker process
_IN_PROCESS_BELOW = 48  # fewer new files than this are read without a pool
_RETRY = frozenset({FileStatus.DENIED})  # re-read even when size and mtime are unchanged


def scan_collection(
    store: CatalogStore,
    collection: Collection,
    template: Template,
    *,
    workers: int = 1,
    progress: bool = False,
) -> ScanReport:
    """Scan ``collection`` into ``store`` and return what happened."""
    t0 = time.perf_counter()
    report = ScanReport(collection.name)
    root = os.path.abspath(os.path.expanduser(collection.root))
    if not os.path.isdir(root) or not os.access(root, os.R_OK | os.X_OK):
        # An unmounted file system must not look like an archive whose files all vanished.
        raise DataError(
            f"Archive root {root} of collection {collection.name!r} is missing or unreadable; "
            "is its storage mounted? Nothing in the catalog was changed. Mount it and scan "
            f"again, or 'insitu catalog remove {collection.name}' if it is gone for good."
        )
    entries, walk_problems = walk_archive(root)
    chosen, report.aliases = _choose_paths(entries, template)
    report.seen = len(chosen) + len(walk_problems)

    known = store.file_states(collection.name)
    records: list[FileRecord] = []
    to_read: list[tuple[Entry, ParsedPath]] = []
    affected: set[str] = set()
    for entry, parsed in chosen:
        state = known.get(entry.relpath)
        if (
            state is not None
            and state.size == entry.size
            and state.mtime_ns == entry.mtime_ns
            and state.status not in _RETRY
        ):
            report.unchanged += 1
            continue
        if state is None:
            report.new += 1
        else:
            report.changed += 1
            if state.dataset_id:
                affected.add(state.dataset_id)
        if isinstance(parsed, str):
            records.append(
                FileRecord(
                    collection.name,
                    entry.relpath,
                    entry.size,
                    entry.mtime_ns,
                    FileStatus.BAD_PATH,
                    parsed,
                )
            )
        else:
            to_read.append((entry, parsed))
    for p in walk_problems:
        records.append(FileRecord(collection.name, p.relpath, 0, 0, p.status, p.reason))

    current = {e.relpath for e, _ in chosen} | {p.relpath for p in walk_problems}
    removed = [path for path in known if path not in current]
    for path in removed:
        ds = known[path].dataset_id
        if ds:
            affected.add(ds)
    report.removed = len(removed)

    # The records pile up until the write and none of them is cyclic: the cyclic collector
    # would re-walk them all again and again (15% of this process's time, measured).
    with gc_paused():
        shared: dict[int, tuple[list[Any], tuple[VariableInfo, ...]]] = {}
        for entry, parsed, result in _read_all(root, to_read, workers, progress):
            rec = _file_record(collection.name, entry, parsed, result, shared)
            records.append(rec)
            if rec.dataset_id:
                affected.add(rec.dataset_id)
        shared.clear()

        datasets, gone = _regroup(store, collection.name, affected, records, removed)
        store.write(
            collection.name,
            files=records,
            removed_paths=removed,
            datasets=datasets,
            removed_datasets=gone,
        )
    for rec in store.files(collection.name, problems_only=True):
        if not rec.ok:
            report.problems[rec.status.value] = report.problems.get(rec.status.value, 0) + 1
    report.datasets = store.stats().get(collection.name).datasets  # type: ignore[union-attr]
    report.seconds = time.perf_counter() - t0
    log.info("scan finished: %s", report.line())
    return report


def _choose_paths(
    entries: Sequence[Entry], template: Template
) -> tuple[list[tuple[Entry, ParsedPath | str]], int]:
    """One path per file: where several paths reach one file, keep the one that fits.

    ESGF data nodes reach each file through a versioned directory, a ``latest`` link and a
    ``files/`` tree; counting all three would triple the archive.
    """
    by_identity: dict[tuple[int, int], list[tuple[Entry, ParsedPath | str]]] = {}
    for entry in entries:
        by_identity.setdefault(entry.identity, []).append((entry, template.parse(entry.relpath)))
    chosen: list[tuple[Entry, ParsedPath | str]] = []
    aliases = 0
    for group in by_identity.values():
        if len(group) > 1:
            group.sort(
                key=lambda item: (
                    isinstance(item[1], str),
                    item[0].via_link,
                    len(item[0].relpath),
                    item[0].relpath,
                )
            )
            aliases += len(group) - 1
        chosen.append(group[0])
    return chosen, aliases


def _read_all(
    root: str, items: list[tuple[Entry, ParsedPath]], workers: int, progress: bool
) -> Iterator[tuple[Entry, ParsedPath, HeaderResult]]:
    """Header of every item, read by ``workers`` processes, with a progress bar."""
    if not items:
        return
    from tqdm.auto import tqdm  # an ipywidgets bar in a notebook

    bar = tqdm(
        total=len(items),
        unit="file",
        desc="reading headers",
        disable=not progress,
        smoothing=0.1,
        mininterval=0.5,
    )
    batches = [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]
    jobs = [[(e.relpath, os.path.join(root, e.relpath)) for e, _ in b] for b in batches]
    try:
        if workers <= 1 or len(items) < _IN_PROCESS_BELOW:
            # Other threads of this process may be inside HDF5 (a data service, Dask tasks):
            # the format readers hold insitu.formats.HDF5_LOCK around every HDF5 call.
            for batch, job in zip(batches, jobs, strict=True):
                res = read_headers(job)
                yield from _pair(batch, res)
                bar.update(len(batch))
            return
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["insitu.catalog.headers"])
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for batch, res in zip(batches, pool.map(read_headers, jobs), strict=True):
                yield from _pair(batch, res)
                bar.update(len(batch))
    finally:
        bar.close()


def _pair(
    batch: list[tuple[Entry, ParsedPath]], results: list[HeaderResult]
) -> Iterator[tuple[Entry, ParsedPath, HeaderResult]]:
    for (entry, parsed), result in zip(batch, results, strict=True):
        yield entry, parsed, result


def _file_record(
    collection: str,
    entry: Entry,
    parsed: ParsedPath,
    result: HeaderResult,
    shared: dict[int, tuple[list[Any], tuple[VariableInfo, ...]]],
) -> FileRecord:
    """The file's record. ``shared`` maps ``id()`` of a header's variables list (which the
    files of a dataset share, see ``headers._share``) to that list and its records, so
    they are made once and the records share them too."""
    _, status, reason, header = result
    if header is None:
        return FileRecord(
            collection,
            entry.relpath,
            entry.size,
            entry.mtime_ns,
            status,
            reason,
            facets=parsed.facets,
        )
    h: dict[str, Any] = header
    ok = status is FileStatus.OK
    bbox = h.get("bbox")
    found = shared.get(id(h["variables"]))
    if found is None or found[0] is not h["variables"]:
        found = h["variables"], tuple(VariableInfo.from_json(v) for v in h["variables"])
        shared[id(h["variables"])] = found  # holding the list keeps its id from being reused
    return FileRecord(
        collection=collection,
        path=entry.relpath,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        status=status,
        reason=reason,
        dataset_id=parsed.dataset_id if ok else None,
        master_id=parsed.master_id if ok else None,
        version=parsed.version,
        facets=parsed.facets,
        data_model=h["data_model"],
        dims=h["dims"],
        variables=found[1],
        global_attrs=h["global_attrs"],
        time_var=h.get("time_var"),
        time_units=h.get("time_units"),
        calendar=h.get("calendar"),
        time_start=h.get("time_start"),
        time_end=h.get("time_end"),
        tkey_start=h.get("tkey_start"),
        tkey_end=h.get("tkey_end"),
        n_times=h.get("n_times", 0),
        time_values=h.get("time_values"),
        bbox=(bbox[0], bbox[1], bbox[2], bbox[3]) if bbox else None,
    )


def _regroup(
    store: CatalogStore,
    collection: str,
    affected: set[str],
    records: list[FileRecord],
    removed: list[str],
) -> tuple[list[DatasetRecord], list[str]]:
    """Dataset records to write and dataset ids to delete after this scan's file changes."""
    if not affected:
        return [], []
    replaced = {r.path for r in records} | set(removed)
    members: dict[str, list[FileRecord]] = {ds: [] for ds in affected}
    for f in store.files(collection, dataset_ids=affected):
        if f.path not in replaced and f.ok and f.dataset_id in members:
            members[f.dataset_id].append(f)
    for r in records:
        if r.ok and r.dataset_id in members:
            members[r.dataset_id].append(r)
    fresh = {ds: aggregate(fs) for ds, fs in members.items() if fs}
    gone = [ds for ds, fs in members.items() if not fs]
    masters = {d.master_id for d in fresh.values()}
    masters |= {d.master_id for d in store.datasets(collection, dataset_ids=gone)}
    previous = {d.dataset_id: d for d in store.datasets(collection, master_ids=masters)}
    versions = {ds: d for ds, d in previous.items() if ds not in gone}
    versions.update(fresh)
    out = [
        d
        for d in mark_latest(versions.values())
        if d.dataset_id in fresh or d.latest != previous[d.dataset_id].latest
    ]
    return out, gone

"""The search index saved on disk, mapped by every process that searches the same store.

Building the index of 100,000 datasets takes seconds, and each server process
(``insitu serve --workers N``) did it again on its first search after every start, each
keeping its own copy. Saved once as NumPy ``.npy`` files and loaded with
``np.load(mmap_mode="r")``, an index is one read-only copy in the page cache that every
process maps, and a process that starts searches after a load of milliseconds.

Layout, under the settings' data directory::

    cache/search-index/<store>/lock           held (flock) by the one process building
    cache/search-index/<store>/gen-<N>/       the index of store generation N:
        index.json                            format, generation and its stamp, counts,
                                              facet values, each array's dtype and shape
                                              (written last)
        <array>.npy                           one per array of SearchIndex.parts()

``<store>`` is :attr:`StoreVersion.store <insitu.catalog.store.StoreVersion>`: another
database (a new one at the same path, a copy) is never served this one's index. An index
is loaded for a generation only if it was saved with the stamp the store drew for it, so
a store that went back (a backup restored in place) and was written again up to that
generation is not served it either. A directory is filled under a temporary name and
renamed into place: a reader sees a whole index or none, and of two processes saving the
same generation the first wins and the other takes its index. A saved index that does not
match its ``index.json`` (a file cut short, a count that differs) is removed with a
warning and built again, never served. The newest two generations of a store are kept,
and the few stores saved most recently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from insitu.catalog.index import SearchIndex, TextMatches
from insitu.catalog.templates import Template

__all__ = ["FORMAT", "DamagedIndex", "OtherHistory", "SavedIndexes", "load", "save"]

log = logging.getLogger(__name__)

FORMAT = 1  # of index.json and the arrays' names: another is not read
_META = "index.json"
_GENERATION = re.compile(r"gen-(\d+)")
_NAME = re.compile(r"[A-Za-z0-9_.]+")  # of an array, hence of its file
_GENERATIONS_KEPT = 2  # a process may be about to load the one before the newest
_STORES_KEPT = 4  # other stores' indexes (older databases, tests) are removed past these
_STALE_TMP_S = 3600.0  # a temporary directory this old was left by a writer that died
_LOCK_WAIT_S = 600.0  # longest wait for another process's build, then build our own
_LOCK_POLL_S = 0.02


class DamagedIndex(ValueError):
    """A saved index that does not match its ``index.json``."""


class OtherHistory(LookupError):
    """A saved index of the same generation of another history of the store."""


def save(index: SearchIndex, directory: Path, stamp: int) -> None:
    """Write ``index`` of the store generation with ``stamp`` into ``directory`` (made
    here: it must not exist), every file flushed to the disk before ``index.json``, which
    is written last."""
    state, arrays = index.parts()
    directory.mkdir()
    shapes = {}
    for name, a in arrays.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"array name {name!r} cannot name a file")
        with open(directory / f"{name}.npy", "wb") as f:
            np.save(f, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        shapes[name] = {"dtype": a.dtype.str, "shape": list(a.shape)}
    meta = {"format": FORMAT, **state, "stamp": stamp, "arrays": shapes}
    with open(directory / _META, "w", encoding="utf-8") as f:
        json.dump(meta, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())


def load(
    directory: Path,
    templates: Mapping[str, Template],
    text_matches: TextMatches | None = None,
    *,
    stamp: int | None = None,
) -> SearchIndex:
    """The index saved in ``directory``, its arrays read-only maps of the files.

    Raises :class:`DamagedIndex` when the files do not match ``index.json`` (or it is not
    of this :data:`FORMAT`), :class:`OtherHistory` when ``stamp`` is given and the index
    was saved with another, ``OSError`` when they cannot be read (gone meanwhile).
    """
    try:
        meta, arrays = _read(directory, stamp)
        return SearchIndex.from_parts(meta, arrays, templates, text_matches)
    except (DamagedIndex, OtherHistory):
        raise
    except FileNotFoundError as exc:  # index.json is written last: all were there
        if directory.is_dir():
            raise DamagedIndex(f"{Path(exc.filename or '').name} is missing") from exc
        raise
    # json, np.load (a file cut short: EOFError, ValueError), from_parts (ValueError)
    except (ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
        raise DamagedIndex(f"{exc.__class__.__name__}: {exc}") from exc


def _read(
    directory: Path, stamp: int | None = None
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    meta = json.loads((directory / _META).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise DamagedIndex(f"format {meta.get('format')!r}, not {FORMAT}")
    if stamp is not None and meta.get("stamp") != stamp:
        raise OtherHistory(f"stamp {meta.get('stamp')}, not {stamp}")
    arrays = {}
    for name, spec in meta["arrays"].items():
        if not _NAME.fullmatch(name):
            raise DamagedIndex(f"array name {name!r}")
        try:
            a = np.asarray(np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False))
        except (ValueError, EOFError) as exc:  # cut short
            raise DamagedIndex(f"{name}.npy: {exc}") from exc
        if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
            raise DamagedIndex(
                f"{name}.npy holds {a.dtype.str}{list(a.shape)}, "
                f"{_META} says {spec['dtype']}{spec['shape']}"
            )
        arrays[name] = a
    return meta, arrays


class SavedIndexes:
    """The saved search indexes of one store, in ``<cache>/<store>/``.

    Nothing here fails a search: a directory that cannot be written (a user's read-only
    view of the data directory) means the index is built and kept in memory, as before.
    """

    def __init__(self, cache: Path, store: str) -> None:
        if not _NAME.fullmatch(store):
            raise ValueError(f"store name {store!r} cannot name a directory")
        self.cache = cache
        self.root = cache / store

    def generations(self) -> list[int]:
        """Generations saved, oldest first."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(int(m[1]) for m in map(_GENERATION.fullmatch, names) if m)

    def get(
        self,
        generation: int,
        stamp: int,
        templates: Mapping[str, Template],
        text_matches: TextMatches | None,
        current: Callable[[], int],
        build: Callable[[], SearchIndex],
    ) -> SearchIndex:
        """The index of store ``generation`` (with ``stamp``): the saved one if there is,
        else made by ``build``, by one process at a time (the others wait, then load it),
        and saved.

        An index of an older generation is not updated from: the store keeps the stamp of
        its generation only, so that index could be of a history the store no longer has
        (restored from a copy, written again). ``current`` reads the store's generation: a
        saved one newer than it means the store went back, and all are removed.
        """
        found = self._load(generation, templates, text_matches, stamp)
        if found is not None:
            return found
        with self._building():
            # another process may have saved it while this one waited for the lock
            found = self._load(generation, templates, text_matches, stamp)
            if found is not None:
                return found
            saved = self.generations()
            now = current() if saved else 0
            if saved and saved[-1] > now:
                log.warning(
                    "The catalog store is at generation %d, older than its search index "
                    "saved in %s (generation %d): was it restored from a copy? The saved "
                    "indexes are removed and the index is built from the store.",
                    now,
                    self.root,
                    saved[-1],
                )
                self._remove(saved)
            built = build()
            return self._save(built, stamp, templates, text_matches) or built

    def _load(
        self,
        generation: int,
        templates: Mapping[str, Template],
        text_matches: TextMatches | None,
        stamp: int | None = None,
    ) -> SearchIndex | None:
        """The saved index of ``generation`` if there is one (of the store's history with
        ``stamp`` if given), with ``templates`` (read with the store's generation, as for
        an index built); a damaged one, or one of another history, is removed."""
        directory = self.root / f"gen-{generation}"
        if not directory.is_dir():
            return None
        started = time.perf_counter()
        try:
            index = load(directory, templates, text_matches, stamp=stamp)
        except OtherHistory as exc:
            log.warning(
                "The search index saved in %s is of another history of the catalog store "
                "(%s: was the store restored from a copy?): it is removed and built again.",
                directory,
                exc,
            )
            shutil.rmtree(directory, ignore_errors=True)
            return None
        except DamagedIndex as exc:
            log.warning(
                "The search index saved in %s is damaged (%s): it is removed and built again.",
                directory,
                exc,
            )
            shutil.rmtree(directory, ignore_errors=True)
            return None
        except OSError as exc:  # removed meanwhile by another process: build
            log.info("Cannot read the search index saved in %s: %s", directory, exc)
            return None
        if index.generation != generation:
            log.warning("The search index in %s is of generation %d.", directory, index.generation)
            shutil.rmtree(directory, ignore_errors=True)
            return None
        log.info(
            "Search index of %d datasets (generation %d) loaded from %s in %.3f s.",
            index.n,
            generation,
            directory,
            time.perf_counter() - started,
        )
        return index

    def _save(
        self,
        index: SearchIndex,
        stamp: int,
        templates: Mapping[str, Template],
        text_matches: TextMatches | None,
    ) -> SearchIndex | None:
        """``index`` saved, then loaded back (its arrays mapped: this process shares them
        too); the one another process saved first if it did; None if none can be read."""
        final = self.root / f"gen-{index.generation}"
        tmp = self.root / f"tmp-{os.getpid()}-{secrets.token_hex(4)}"
        started = time.perf_counter()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            save(index, tmp, stamp)
            try:
                tmp.rename(final)
            except OSError:  # another process saved this generation first: take that
                shutil.rmtree(tmp, ignore_errors=True)
                return self._load(index.generation, templates, text_matches, stamp)
            _fsync_dir(self.root)
        except OSError as exc:
            log.info("Cannot save the search index in %s: %s", self.root, exc)
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        log.info(
            "Search index of %d datasets (generation %d) saved in %s in %.3f s.",
            index.n,
            index.generation,
            final,
            time.perf_counter() - started,
        )
        self._prune(index.generation)
        return self._load(index.generation, templates, text_matches, stamp)

    def _prune(self, newest: int) -> None:
        """Remove older generations than the newest kept, temporary directories of
        writers that died, and the indexes of other stores past the most recent few."""
        gens = self.generations()
        self._remove([g for g in gens[:-_GENERATIONS_KEPT] if g < newest])
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):
                if entry.name.startswith("tmp-") and now - entry.stat().st_mtime > _STALE_TMP_S:
                    shutil.rmtree(entry.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            stores = sorted(
                (e for e in os.scandir(self.cache) if e.is_dir() and e.path != str(self.root)),
                key=lambda e: e.stat().st_mtime,
            )
            for entry in stores[: max(0, len(stores) - (_STORES_KEPT - 1))]:
                shutil.rmtree(entry.path, ignore_errors=True)

    def _remove(self, generations: list[int]) -> None:
        for g in generations:
            shutil.rmtree(self.root / f"gen-{g}", ignore_errors=True)

    @contextlib.contextmanager
    def _building(self) -> Iterator[None]:
        """Held while this process builds: another waits, then loads what it saved. Not
        held (nothing to share with) where the lock file cannot be made."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            deadline = time.monotonic() + _LOCK_WAIT_S
            held = False
            while not held and time.monotonic() < deadline:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                except BlockingIOError:
                    time.sleep(_LOCK_POLL_S)
            yield
        finally:
            os.close(fd)  # releases the lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

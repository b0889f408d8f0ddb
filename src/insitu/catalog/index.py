"""The in-memory search index: facet postings as NumPy arrays, rebuilt when the store changes.

Faceted search with counts over every facet has to answer in milliseconds on 100,000
datasets. SQL ``GROUP BY`` per facet does not; integer codes and ``np.bincount`` do. The
store stays the source of truth; this index is a cache keyed by the store's generation.
It keeps arrays only (about 300 bytes a dataset, no records): free text is looked up in
the store's text index, and the records of a page of results are read from the store.

Once built, an index is saved in the data directory by the catalog and loaded by the other
processes on the same store, its arrays mapped read-only from the files
(:mod:`insitu.catalog._indexfile`): one copy that every server process shares, and no
build after a restart. Nothing here writes
into an index's arrays once :meth:`SearchIndex._finish` made them.

An index never changes once built, so it also remembers its recent answers: a web page or
a notebook that asks the same search again (the landing page, a facet click and back)
costs a dictionary lookup. It keeps the datasets of recent free-text terms too, which
come back in searches that differ otherwise. The memory both take is bounded
(``MEMO_BYTES``, ``TEXT_MEMO_BYTES``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import numpy.typing as npt

from insitu.catalog.models import IndexRow, parse_text
from insitu.catalog.templates import Template
from insitu.errors import InvalidQuery

__all__ = ["IndexQuery", "SearchIndex", "SortKey"]

SortKey = str
_SORTS = ("dataset_id", "version", "size", "n_files", "time_start", "time_end")
_NO_TIME_START = np.iinfo(np.int64).max
_NO_TIME_END = np.iinfo(np.int64).min

# What the remembered answers of one index may hold: index arrays plus facet counts
# (about 100 bytes a value). An answer bigger than an eighth of it is not kept.
MEMO_BYTES = 64 * 2**20
_COUNT_BYTES = 100
# The datasets of recent text terms, as positions (4 bytes a match).
TEXT_MEMO_BYTES = 16 * 2**20
# Collection masks kept per index (each readable set of collections a caller has).
_COLL_MASKS = 16

Answer = tuple[npt.NDArray[np.intp], dict[str, dict[str, int]]]
#: Asks the store's text index: row numbers of the datasets whose text has every phrase
#: (a phrase: words in a row, the last one a word's beginning).
TextMatches = Callable[[Sequence[Sequence[str]]], npt.NDArray[np.int64]]


@dataclass(frozen=True, slots=True)
class IndexQuery:
    """A search, with facet names already as the user gave them (aliases allowed)."""

    facets: Mapping[str, Sequence[str]]
    text: str | None = None
    time: tuple[int, int] | None = None
    bbox: tuple[float, float, float, float] | None = None
    latest: bool = True
    collections: Sequence[str] | None = None
    sort: SortKey = "dataset_id"
    count_facets: Sequence[str] | None = None

    def key(self) -> Hashable:
        """The same for queries that have the same answer (facet order aside)."""
        return (
            tuple(sorted((k, tuple(v)) for k, v in self.facets.items())),
            self.text,
            self.time,
            self.bbox,
            self.latest,
            tuple(self.collections) if self.collections is not None else None,
            self.sort,
            tuple(self.count_facets) if self.count_facets is not None else None,
        )


# The index's arrays with one entry per dataset, by position (collection first).
_PER_DATASET = (
    "collection",
    "latest",
    "tstart",
    "tend",
    "box",
    "size",
    "n_files",
    "rows",
    "_ids",
    "_versions",
)


class _Postings:
    """Which datasets (index positions ``ds``) have which value (``codes`` into the sorted
    ``values``) of one facet. A facet with one value for every dataset, in position order
    (most are), is ``dense``: its codes are then read by position directly."""

    def __init__(
        self, values: list[str], ds: npt.NDArray[np.int32], codes: npt.NDArray[np.int32], n: int
    ) -> None:
        self.values = values
        self.lookup = {v: i for i, v in enumerate(values)}
        self.ds = ds
        self.codes = codes
        self.dense = len(ds) == n and bool((ds == np.arange(n, dtype=np.int32)).all())

    @classmethod
    def from_pairs(cls, pairs: list[tuple[int, str]], n: int) -> _Postings:
        values = sorted({v for _, v in pairs})
        lookup = {v: i for i, v in enumerate(values)}
        ds = np.fromiter((d for d, _ in pairs), dtype=np.int32, count=len(pairs))
        codes = np.fromiter((lookup[v] for _, v in pairs), dtype=np.int32, count=len(pairs))
        return cls(values, ds, codes, n)

    def merged(
        self, newpos: npt.NDArray[np.int64], fresh: _Postings | None, offset: int, n: int
    ) -> _Postings:
        """These postings with old position ``i`` moved to ``newpos[i]`` (-1: dropped), and
        ``fresh``'s positions moved up by ``offset``."""
        other = fresh or _Postings([], np.zeros(0, np.int32), np.zeros(0, np.int32), 0)
        values = sorted(set(self.values) | set(other.values))
        lookup = {v: i for i, v in enumerate(values)}
        mine = np.fromiter((lookup[v] for v in self.values), np.int32, len(self.values))
        theirs = np.fromiter((lookup[v] for v in other.values), np.int32, len(other.values))
        moved = newpos[self.ds]
        kept = moved >= 0
        ds = np.concatenate([moved[kept], other.ds.astype(np.int64) + offset]).astype(np.int32)
        codes = np.concatenate([mine[self.codes[kept]], theirs[other.codes]]).astype(np.int32)
        return _Postings(values, ds, codes, n)

    def match(self, patterns: Sequence[str], n: int) -> npt.NDArray[np.bool_]:
        wanted: set[int] = set()
        for p in patterns:
            if any(ch in p for ch in "*?["):
                wanted.update(i for i, v in enumerate(self.values) if fnmatchcase(v, p))
            elif p in self.lookup:
                wanted.add(self.lookup[p])
        if self.dense:
            if len(wanted) == 1:
                return np.asarray(self.codes == next(iter(wanted)), dtype=bool)
            return np.isin(self.codes, np.fromiter(wanted, np.int32, len(wanted)))
        hit = np.zeros(n, dtype=bool)
        if len(wanted) == 1:
            hit[self.ds[self.codes == next(iter(wanted))]] = True
        elif wanted:
            hit[self.ds[np.isin(self.codes, np.fromiter(wanted, np.int32))]] = True
        return hit

    def counts(self, mask: npt.NDArray[np.bool_], idx: npt.NDArray[np.intp]) -> dict[str, int]:
        """Datasets per value among those in ``mask`` (``idx``: its positions), most first
        (ties by value)."""
        # A dense facet's codes are read at the matches' positions: a search matches a
        # few of the datasets, and gathering those is far cheaper than scanning a mask.
        chosen = self.codes[idx] if self.dense else self.codes[mask[self.ds]]
        counts = np.bincount(chosen, minlength=len(self.values))
        nz = np.flatnonzero(counts)
        if len(nz) > 1:
            nz = nz[np.lexsort((nz, -counts[nz]))]
        values = self.values
        return dict(zip([values[i] for i in nz.tolist()], counts[nz].tolist(), strict=True))


class SearchIndex:
    """Answers :class:`IndexQuery` over a fixed list of datasets (:class:`IndexRow`).

    :meth:`updated` makes the index of the store after a change from this one and the
    rows written since, reading only those.
    """

    def __init__(
        self,
        rows: Sequence[IndexRow],
        templates: Mapping[str, Template],
        generation: int = -1,
        text_matches: TextMatches | None = None,
    ) -> None:
        self.generation = generation
        self.templates = dict(templates)
        self._text_matches = text_matches
        n = self.n = len(rows)
        pairs: dict[str, list[tuple[int, str]]] = {}
        self.collections = sorted({r.collection for r in rows})
        codes = {c: i for i, c in enumerate(self.collections)}
        self.collection = np.empty(n, dtype=np.int16)
        self.latest = np.empty(n, dtype=bool)
        self.tstart = np.full(n, _NO_TIME_START, dtype=np.int64)
        self.tend = np.full(n, _NO_TIME_END, dtype=np.int64)
        self.box = np.full((n, 4), np.nan)
        self.size = np.empty(n, dtype=np.int64)
        self.n_files = np.empty(n, dtype=np.int64)
        self.rows = np.empty(n, dtype=np.int64)
        for i, r in enumerate(rows):
            for facet, values in r.facets.items():
                bucket = pairs.setdefault(facet, [])
                bucket.extend((i, v) for v in values)
            self.collection[i] = codes[r.collection]
            self.latest[i] = r.latest
            if r.tkey_start is not None:
                self.tstart[i] = r.tkey_start
                self.tend[i] = r.tkey_end if r.tkey_end is not None else r.tkey_start
            if r.bbox:
                self.box[i] = r.bbox
            self.size[i] = r.size
            self.n_files[i] = r.n_files
            self.rows[i] = r.row
        self.postings = {f: _Postings.from_pairs(p, n) for f, p in pairs.items()}
        # Ids and versions as blocks of UTF-8 bytes (80 bytes a CMIP6 id, against 130 as
        # str objects): byte order is code point order, so they sort as the strings do.
        self._ids = np.array([r.dataset_id.encode() for r in rows], dtype=np.bytes_)
        self._versions = np.array([r.version.encode() for r in rows], dtype=np.bytes_)
        self._finish()

    def _finish(self) -> None:
        """Datasets put in the order of (id, collection, row), however they came, so that
        equal sort keys give the same order in every index of the same rows; then the
        derived arrays (ranks, row order) and an empty memo."""
        n = self.n
        order = np.lexsort((self.rows, self.collection, self._ids))
        if (order != np.arange(n)).any():
            for name in _PER_DATASET:
                setattr(self, name, getattr(self, name)[order])
            moved = np.empty(n, dtype=np.int64)
            moved[order] = np.arange(n)
            for facet, p in self.postings.items():
                ds = moved[p.ds]
                by_ds = np.argsort(ds, kind="stable")
                self.postings[facet] = _Postings(
                    p.values, ds[by_ds].astype(np.int32), p.codes[by_ds], n
                )
        self._id_rank = np.arange(n, dtype=np.int64)
        self._version_rank = np.empty(n, dtype=np.int64)
        self._version_rank[np.argsort(self._versions, kind="stable")] = np.arange(n)
        self._by_row = np.argsort(self.rows, kind="stable")
        self._sorted_rows = self.rows[self._by_row]
        self._ready()

    def _ready(self) -> None:
        """What each process keeps of its own beside the arrays (which may be read-only
        maps of files that processes share): collection codes, and empty memos of answers,
        collection masks and text terms."""
        self._coll_code = {c: i for i, c in enumerate(self.collections)}
        self._memo: OrderedDict[Hashable, tuple[Answer, int]] = OrderedDict()
        self._memo_bytes = 0
        self._memo_lock = threading.Lock()
        self._coll_masks: dict[frozenset[int], npt.NDArray[np.bool_]] = {}
        self._text_memo: OrderedDict[Hashable, npt.NDArray[np.int32]] = OrderedDict()
        self._text_memo_bytes = 0

    def parts(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """The index as JSON values and named arrays, from which :meth:`from_parts` makes
        it again (in another process, from files: :mod:`insitu.catalog._indexfile`).

        Every array the index holds is among them, those it derives too: a process that
        loads them computes nothing over the datasets.
        """
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        postings = []
        for i, (facet, p) in enumerate(self.postings.items()):
            arrays[f"postings.{i}.ds"] = p.ds
            arrays[f"postings.{i}.codes"] = p.codes
            postings.append({"facet": facet, "values": p.values})
        state = {
            "generation": self.generation,
            "n": self.n,
            "collections": self.collections,
            "templates": {c: t.name for c, t in self.templates.items()},
            "postings": postings,
        }
        return state, arrays

    @classmethod
    def from_parts(
        cls,
        state: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        templates: Mapping[str, Template],
        text_matches: TextMatches | None = None,
    ) -> SearchIndex:
        """The index of :meth:`parts` (the arrays used as they are: read-only ones stay
        so), with ``templates`` for its collections.

        Raises ``ValueError`` naming what does not fit: an array missing or of another
        type or length than the index has, a code out of range (a damaged file).
        """
        n = int(state["n"])
        expected = SearchIndex([], {}).parts()[1]
        names = {k for k in arrays if not k.startswith("postings.")}
        if names != {k for k in expected if not k.startswith("postings.")}:
            raise ValueError(f"arrays {sorted(names)} are not those of a search index")
        for name in names:
            a, like = arrays[name], expected[name]
            if a.dtype.kind != like.dtype.kind or a.shape[1:] != like.shape[1:] or len(a) != n:
                raise ValueError(f"array {name!r} is {a.dtype}{a.shape}, not {n} of {like.dtype}")
        out = object.__new__(cls)
        out.generation = int(state["generation"])
        out.templates = dict(templates)
        out._text_matches = text_matches
        out.n = n
        out.collections = list(state["collections"])
        for name in names:
            setattr(out, name, arrays[name])
        if n and not 0 <= int(out.collection.min()) <= int(out.collection.max()) < len(
            out.collections
        ):
            raise ValueError("collection codes out of range")
        out.postings = {}
        for i, p in enumerate(state["postings"]):
            ds, codes = arrays[f"postings.{i}.ds"], arrays[f"postings.{i}.codes"]
            values = list(p["values"])
            if ds.shape != codes.shape or ds.dtype != np.int32 or codes.dtype != np.int32:
                raise ValueError(f"postings of {p['facet']!r} are not two int32 arrays alike")
            if len(ds) and not (
                0 <= int(ds.min()) <= int(ds.max()) < n
                and 0 <= int(codes.min()) <= int(codes.max()) < len(values)
            ):
                raise ValueError(f"postings of {p['facet']!r} out of range")
            out.postings[p["facet"]] = _Postings(values, ds, codes, n)
        out._ready()
        return out

    def updated(
        self,
        row_ids: Sequence[int],
        changed: Sequence[IndexRow],
        templates: Mapping[str, Template],
        generation: int,
    ) -> SearchIndex:
        """The index of the store at ``generation``: this one without the datasets whose
        rows are not in ``row_ids`` (every row of the store now) or are ``changed``, plus
        the ``changed`` rows (every row written since this index's generation)."""
        fresh = SearchIndex(changed, templates, generation, self._text_matches)
        changed_rows = fresh.rows
        keep = np.isin(self.rows, np.asarray(row_ids, dtype=np.int64))
        keep &= ~np.isin(self.rows, changed_rows)
        k = int(keep.sum())
        newpos = np.where(keep, np.cumsum(keep) - 1, -1)
        out = object.__new__(SearchIndex)
        out.generation = generation
        out.templates = dict(templates)
        out._text_matches = self._text_matches
        out.n = n = k + fresh.n
        out.collections = sorted(set(self.collections) | set(fresh.collections))
        where = {c: i for i, c in enumerate(out.collections)}
        mine = np.array([where[c] for c in self.collections] or [0], dtype=np.int16)
        theirs = np.array([where[c] for c in fresh.collections] or [0], dtype=np.int16)
        out.collection = np.concatenate([mine[self.collection[keep]], theirs[fresh.collection]])
        for name in _PER_DATASET[1:]:
            setattr(out, name, np.concatenate([getattr(self, name)[keep], getattr(fresh, name)]))
        empty = _Postings([], np.zeros(0, np.int32), np.zeros(0, np.int32), 0)
        out.postings = {
            f: self.postings.get(f, empty).merged(newpos, fresh.postings.get(f), k, n)
            for f in {*self.postings, *fresh.postings}
        }
        out._finish()
        return out

    def dataset_id(self, i: int) -> str:
        """The id of the dataset at index position ``i``."""
        return bytes(self._ids[i]).decode()

    def dataset_ids(self, positions: Sequence[int] | npt.NDArray[np.intp]) -> list[str]:
        """The ids of the datasets at index ``positions``, in their order."""
        return [bytes(b).decode() for b in self._ids[np.asarray(positions, dtype=np.intp)]]

    def collection_of(self, i: int) -> str:
        """The collection of the dataset at index position ``i``."""
        return self.collections[int(self.collection[i])]

    def nbytes(self) -> int:
        """Bytes of the index's arrays (its memo of answers aside)."""
        arrays = [
            self.collection, self.latest, self.tstart, self.tend, self.box, self.size,
            self.n_files, self.rows, self._ids, self._versions, self._id_rank,
            self._version_rank, self._by_row, self._sorted_rows,
        ]  # fmt: skip
        total = sum(a.nbytes for a in arrays)
        return total + sum(p.ds.nbytes + p.codes.nbytes for p in self.postings.values())

    # -- facet names -------------------------------------------------------------------

    def resolve(self, name: str) -> list[str]:
        """The facets a user's name stands for: itself and what it aliases in any template."""
        names = [name] if name in self.postings else []
        for tpl in self.templates.values():
            target = tpl.resolve(name)
            if target and target not in names and target in self.postings:
                names.append(target)
        if not names and not any(tpl.resolve(name) for tpl in self.templates.values()):
            known = sorted(self.postings)
            raise InvalidQuery(
                f"Unknown facet {name!r}. Facets of this catalog: {', '.join(known)}; "
                "aliases such as model, experiment and variable are accepted too."
            )
        return names

    def facet_names(self, collections: Sequence[str] | None = None) -> list[str]:
        """Facets of the templates of ``collections`` (all if None) that have datasets
        here, in template order."""
        wanted = None if collections is None else set(collections)
        names: dict[str, None] = {}
        for coll in self._coll_code:
            tpl = self.templates.get(coll) if wanted is None or coll in wanted else None
            for f in tpl.facets if tpl else ():
                if f in self.postings:
                    names[f] = None
        return list(names)

    # -- answering ---------------------------------------------------------------------

    def select(self, q: IndexQuery) -> Answer:
        """Indices of matching records, sorted (read-only), and the facet counts over them."""
        key = q.key()
        with self._memo_lock:
            kept = self._memo.get(key)
            if kept is not None:
                self._memo.move_to_end(key)
        if kept is None:
            answer = self._select(q)
            answer[0].flags.writeable = False
            self._remember(key, answer)
        else:
            answer = kept[0]
        idx, counts = answer
        return idx, {facet: dict(values) for facet, values in counts.items()}

    def _remember(self, key: Hashable, answer: Answer) -> None:
        size = answer[0].nbytes + _COUNT_BYTES * sum(len(c) for c in answer[1].values())
        if size > MEMO_BYTES // 8:
            return
        with self._memo_lock:
            if key in self._memo:
                return
            self._memo[key] = (answer, size)
            self._memo_bytes += size
            while self._memo_bytes > MEMO_BYTES:
                _, (_, old) = self._memo.popitem(last=False)
                self._memo_bytes -= old

    def _select(self, q: IndexQuery) -> Answer:
        mask = self.latest.copy() if q.latest else np.ones(self.n, dtype=bool)
        colls = self._coll_mask(q.collections)
        if colls is not None:
            mask &= colls
        for name, patterns in q.facets.items():
            hit = np.zeros(self.n, dtype=bool)
            for facet in self.resolve(name):
                hit |= self.postings[facet].match(patterns, self.n)
            mask &= hit
        if q.time is not None:
            lo, hi = q.time
            mask &= (self.tstart <= hi) & (self.tend >= lo)
        if q.bbox is not None:
            mask &= self._bbox_mask(q.bbox)
        if q.text:
            mask &= self._text_mask(q.text)
        found = np.flatnonzero(mask)
        key = q.sort.lstrip("-")
        # Positions are in dataset id order already: only other orders need a sort.
        idx = (
            found
            if key == "dataset_id"
            else found[np.argsort(self._sort_key(key)[found], kind="stable")]
        )
        if q.sort.startswith("-"):
            idx = idx[::-1]
        names = (
            list(q.count_facets) if q.count_facets is not None else self.facet_names(q.collections)
        )
        counts = {}
        for name in names:
            for facet in self.resolve(name):
                counts[facet] = self.postings[facet].counts(mask, found)
        return idx, counts

    def _coll_mask(self, collections: Sequence[str] | None) -> npt.NDArray[np.bool_] | None:
        """Which datasets are in ``collections``; None when that is every dataset."""
        if collections is None:
            return None
        codes = frozenset(self._coll_code[c] for c in collections if c in self._coll_code)
        if len(codes) == len(self._coll_code):
            return None
        with self._memo_lock:
            kept = self._coll_masks.get(codes)
        if kept is None:
            kept = np.isin(self.collection, np.fromiter(codes, np.int16, len(codes)))
            kept.flags.writeable = False
            with self._memo_lock:
                if len(self._coll_masks) >= _COLL_MASKS:
                    self._coll_masks.pop(next(iter(self._coll_masks)))
                self._coll_masks[codes] = kept
        return kept

    def _sort_key(self, key: str) -> npt.NDArray[np.int64]:
        if key == "dataset_id":
            return self._id_rank
        if key == "version":
            return self._version_rank
        if key == "size":
            return self.size
        if key == "n_files":
            return self.n_files
        if key == "time_start":
            return self.tstart
        if key == "time_end":
            return self.tend
        raise InvalidQuery(
            f"Cannot sort by {key!r}. Sort by one of {', '.join(_SORTS)}, "
            "with '-' in front for descending order."
        )

    def _text_mask(self, text: str) -> npt.NDArray[np.bool_]:
        phrases = parse_text(text)
        if not phrases:  # blanks only: no constraint
            return np.ones(self.n, dtype=bool)
        if self._text_matches is None:
            raise InvalidQuery("This search index was built without a text index.")
        key = tuple(tuple(p) for p in phrases)
        with self._memo_lock:
            positions = self._text_memo.get(key)
            if positions is not None:
                self._text_memo.move_to_end(key)
        if positions is None:
            positions = self._text_positions(phrases)
            self._remember_text(key, positions)
        mask = np.zeros(self.n, dtype=bool)
        mask[positions] = True
        return mask

    def _text_positions(self, phrases: Sequence[Sequence[str]]) -> npt.NDArray[np.int32]:
        """Index positions of the datasets the store's text index finds for ``phrases``."""
        assert self._text_matches is not None
        found = np.asarray(self._text_matches(phrases), dtype=np.int64)
        sorted_rows = self._sorted_rows
        at = np.searchsorted(sorted_rows, found).clip(0, max(self.n - 1, 0))
        known = sorted_rows[at] == found if self.n else np.zeros(0, dtype=bool)
        # Rows written since the index was built are left out (the next index has them).
        return np.sort(self._by_row[at[known]]).astype(np.int32)

    def _remember_text(self, key: Hashable, positions: npt.NDArray[np.int32]) -> None:
        """Keep the datasets of a text term: the index does not change, and the same
        words come back in searches that differ otherwise (a word with other facets)."""
        if positions.nbytes > TEXT_MEMO_BYTES // 8:
            return
        positions.flags.writeable = False
        with self._memo_lock:
            if key in self._text_memo:
                return
            self._text_memo[key] = positions
            self._text_memo_bytes += positions.nbytes
            while self._text_memo_bytes > TEXT_MEMO_BYTES:
                _, old = self._text_memo.popitem(last=False)
                self._text_memo_bytes -= old.nbytes

    def _bbox_mask(self, bbox: tuple[float, float, float, float]) -> npt.NDArray[np.bool_]:
        west, south, east, north = bbox
        w, s, e, nn = self.box.T
        with np.errstate(invalid="ignore"):
            lat_ok = (s <= north) & (nn >= south)
            span = e - w
            qspan = (east - west) % 360 or (360.0 if east != west else 0.0)
            w0 = np.mod(w, 360)
            qw = west % 360
            lon_ok = span >= 359.0
            for shift in (-360.0, 0.0, 360.0):
                lon_ok = lon_ok | ((w0 + shift <= qw + qspan) & (w0 + shift + span >= qw))
        return np.asarray(lat_ok & lon_ok & np.isfinite(w), dtype=bool)

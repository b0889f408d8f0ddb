"""The search index saved as .npy files and mapped read-only: it answers as the index it
was saved from, a damaged one is refused, and a store's saved indexes are loaded instead of
built, built again when damaged, dropped when the store went back, and pruned."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from insitu.catalog._indexfile import DamagedIndex, SavedIndexes, load, save
from insitu.catalog.index import IndexQuery, SearchIndex
from insitu.catalog.models import IndexRow
from insitu.catalog.templates import BUILTIN_TEMPLATES

TEMPLATES = {"a": BUILTIN_TEMPLATES["cmip6"], "b": BUILTIN_TEMPLATES["cmip5"]}
MODELS = ["MIROC6", "CanESM5", "MPI-ESM1-2-LR", "UKESM1-0-LL"]
QUERIES = [
    IndexQuery(facets={}),
    IndexQuery(facets={}, latest=False, sort="-size"),
    IndexQuery(facets={"source_id": ["MIROC6", "CanESM5"]}, sort="version"),
    IndexQuery(facets={"source_id": ["*ESM*"], "variable_id": ["tas"]}, sort="-n_files"),
    IndexQuery(facets={"realm": ["ocean"]}, collections=["b"], latest=False),
    IndexQuery(facets={}, time=(1950_01_01_000000, 1970_01_01_000000), sort="time_start"),
    IndexQuery(facets={}, bbox=(-20.0, -10.0, 30.0, 40.0), sort="-time_end"),
    IndexQuery(facets={"experiment_id": ["hist*"]}, text="even", count_facets=["source_id"]),
]


def _rows(n: int, seed: int = 1, first_row: int = 1) -> list[IndexRow]:
    """Datasets of two collections in no order, the second with a facet the first lacks
    (sparse postings), some with two variables, some without a time or a box."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        coll = rng.choice("ab")
        facets = {
            "source_id": [rng.choice(MODELS)],
            "experiment_id": [rng.choice(["historical", "hist-nat", "ssp585"])],
            "variable_id": rng.sample(["tas", "pr", "ta"], rng.choice((1, 1, 2))),
        }
        if coll == "b":
            facets["realm"] = [rng.choice(["ocean", "atmos"])]
        start = rng.choice([None, 1850, 1950, 2015]) if i % 7 else None
        rows.append(
            IndexRow(
                row=first_row + i,
                dataset_id=f"CMIP6.X.{facets['source_id'][0]}.{i:05d}.v2020{rng.randint(1, 9)}",
                collection=coll,
                version=f"v2020010{rng.randint(1, 9)}",
                latest=rng.random() < 0.7,
                facets=facets,
                n_files=rng.randint(1, 40),
                size=rng.randint(1, 10**9),
                tkey_start=None if start is None else start * 10**10 + 1_16_000000,
                tkey_end=None if start is None else (start + 50) * 10**10 + 12_16_000000,
                bbox=None if i % 5 == 0 else (rng.uniform(-180, 170), -30.0, 10.0, 60.0),
            )
        )
    rng.shuffle(rows)
    return rows


def _even_rows(phrases: object) -> npt.NDArray[np.int64]:
    """The store's text index, as a function of the index: here, the even rows."""
    return np.arange(0, 10_000, 2, dtype=np.int64)


def _answers(index: SearchIndex) -> list[tuple[list[int], dict[str, dict[str, int]]]]:
    out = []
    for q in QUERIES:
        idx, counts = index.select(q)
        out.append((index.dataset_ids(idx), counts))
    return out


def _built(n: int = 300, generation: int = 5) -> SearchIndex:
    return SearchIndex(_rows(n), TEMPLATES, generation, _even_rows)


def test_a_saved_index_answers_as_the_index_it_was_saved_from(tmp_path: Path) -> None:
    built = _built()
    save(built, tmp_path / "gen-5", 55)
    loaded = load(tmp_path / "gen-5", TEMPLATES, _even_rows)
    assert (loaded.n, loaded.generation, loaded.collections) == (300, 5, ["a", "b"])
    assert _answers(loaded) == _answers(built)
    assert loaded.nbytes() == built.nbytes()
    # read-only maps of the files, which every process shares
    assert not loaded.rows.flags.writeable and isinstance(loaded.rows.base, np.memmap)
    assert not any(p.codes.flags.writeable for p in loaded.postings.values())
    # and updated from (it writes nothing into them): as the built one updated
    row_ids = [r.row for r in _rows(300)][:250]
    changed = _rows(20, seed=2, first_row=1000)
    after = [i.updated(row_ids, changed, TEMPLATES, 6) for i in (built, loaded)]
    assert _answers(after[1]) == _answers(after[0])


def test_an_empty_index_is_saved_and_loaded(tmp_path: Path) -> None:
    save(SearchIndex([], {}, 0), tmp_path / "gen-0", 1)
    loaded = load(tmp_path / "gen-0", {})
    assert loaded.n == 0 and loaded.select(IndexQuery(facets={}))[0].tolist() == []


def _cut_short(d: Path) -> None:
    f = d / "rows.npy"
    f.write_bytes(f.read_bytes()[:-8])


def _count_changed(d: Path) -> None:
    meta = json.loads((d / "index.json").read_text())
    meta["n"] += 1
    (d / "index.json").write_text(json.dumps(meta))


def _code_out_of_range(d: Path) -> None:
    codes = np.load(d / "postings.0.codes.npy")
    codes[3] = 99
    np.save(d / "postings.0.codes.npy", codes)


def _file_missing(d: Path) -> None:
    (d / "_by_row.npy").unlink()


def _shape_differs(d: Path) -> None:
    np.save(d / "size.npy", np.zeros(299, dtype=np.int64))


def _not_json(d: Path) -> None:
    (d / "index.json").write_text('{"format": 1, "n": ')


def _other_format(d: Path) -> None:
    meta = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**meta, "format": 0}))


DAMAGES = [
    _cut_short,
    _count_changed,
    _code_out_of_range,
    _file_missing,
    _shape_differs,
    _not_json,
    _other_format,
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_index_is_refused(tmp_path: Path, damage: object) -> None:
    save(_built(), tmp_path / "gen-5", 55)
    damage(tmp_path / "gen-5")  # type: ignore[operator]
    with pytest.raises(DamagedIndex):
        load(tmp_path / "gen-5", TEMPLATES, _even_rows)


class _Builds:
    """What SavedIndexes.get is given to build with: counts its calls."""

    def __init__(self, rows: list[IndexRow], generation: int) -> None:
        self.rows, self.generation, self.calls = rows, generation, 0

    def __call__(self) -> SearchIndex:
        self.calls += 1
        return SearchIndex(self.rows, TEMPLATES, self.generation, _even_rows)


def test_the_saved_index_of_a_generation_is_loaded_not_built(tmp_path: Path) -> None:
    saved = SavedIndexes(tmp_path, "store1")
    rows = _rows(200)
    first = _Builds(rows, 3)
    built = saved.get(3, 33, TEMPLATES, _even_rows, lambda: 3, first)
    assert first.calls == 1
    assert not built.rows.flags.writeable  # the builder maps what it saved, too
    again = _Builds(rows, 3)
    loaded = saved.get(3, 33, TEMPLATES, _even_rows, lambda: 3, again)
    assert again.calls == 0 and _answers(loaded) == _answers(built)
    # another store's saved index is not this one's
    other = _Builds(rows, 3)
    SavedIndexes(tmp_path, "store2").get(3, 33, TEMPLATES, _even_rows, lambda: 3, other)
    assert other.calls == 1


def test_a_saved_index_of_another_history_is_built_again_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store went back (restored from a copy) and was written again up to the same
    generation: that generation has another stamp, and what was saved for it is not it."""
    saved = SavedIndexes(tmp_path, "store1")
    saved.get(3, 33, TEMPLATES, _even_rows, lambda: 3, _Builds(_rows(200), 3))
    rewritten = _rows(150, seed=4)
    again = _Builds(rewritten, 3)
    with caplog.at_level(logging.WARNING, "insitu.catalog._indexfile"):
        index = saved.get(3, 34, TEMPLATES, _even_rows, lambda: 3, again)
    assert again.calls == 1 and index.n == 150
    assert "another history" in caplog.text
    assert load(tmp_path / "store1" / "gen-3", TEMPLATES, stamp=34).n == 150  # saved, its own


def test_a_damaged_saved_index_is_built_again_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = SavedIndexes(tmp_path, "store1")
    rows = _rows(200)
    saved.get(3, 33, TEMPLATES, _even_rows, lambda: 3, _Builds(rows, 3))
    _cut_short(tmp_path / "store1" / "gen-3")
    again = _Builds(rows, 3)
    with caplog.at_level(logging.WARNING, "insitu.catalog._indexfile"):
        index = saved.get(3, 33, TEMPLATES, _even_rows, lambda: 3, again)
    assert again.calls == 1
    assert "is damaged" in caplog.text and "rows" in caplog.text
    assert _answers(index) == _answers(SearchIndex(rows, TEMPLATES, 3, _even_rows))
    assert load(tmp_path / "store1" / "gen-3", TEMPLATES).n == 200  # saved again, whole


def test_saved_indexes_newer_than_the_store_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store restored from a copy is back at an older generation: what was saved for
    generations it had reached is not its history any more."""
    saved = SavedIndexes(tmp_path, "store1")
    rows = _rows(100)
    for g in (7, 8):
        saved.get(g, g, TEMPLATES, _even_rows, lambda: 8, _Builds(rows, g))
    restored = _Builds(rows, 5)
    with caplog.at_level(logging.WARNING, "insitu.catalog._indexfile"):
        saved.get(5, 5, TEMPLATES, _even_rows, lambda: 5, restored)
    assert restored.calls == 1
    assert "restored from a copy" in caplog.text
    assert saved.generations() == [5]


def test_the_newest_two_generations_and_the_newest_stores_are_kept(tmp_path: Path) -> None:
    rows = _rows(50)
    saved = SavedIndexes(tmp_path, "store0")
    for g in range(1, 5):
        saved.get(g, g, TEMPLATES, _even_rows, lambda: 4, _Builds(rows, g))
    assert saved.generations() == [3, 4]
    for s in range(1, 6):
        SavedIndexes(tmp_path, f"store{s}").get(
            1, 1, TEMPLATES, _even_rows, lambda: 1, _Builds(rows, 1)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store2", "store3", "store4", "store5"]


def test_of_two_processes_saving_a_generation_the_first_is_kept(tmp_path: Path) -> None:
    """Two saves of one generation (two processes that could not take the lock): the
    second is renamed onto the first's directory, fails, and takes the first's."""
    saved = SavedIndexes(tmp_path, "store1")
    first = SearchIndex(_rows(100), TEMPLATES, 3, _even_rows)
    other = SearchIndex(_rows(100, seed=9), TEMPLATES, 3, _even_rows)
    assert _answers(other) != _answers(first)
    kept = saved._save(first, 33, TEMPLATES, _even_rows)
    second = saved._save(other, 33, TEMPLATES, _even_rows)
    assert kept is not None and second is not None
    assert _answers(second) == _answers(first)
    assert sorted(p.name for p in (tmp_path / "store1").iterdir()) == ["gen-3"]

from __future__ import annotations

from insitu.catalog.grouping import aggregate, mark_latest
from insitu.testing.catalog_store import sample_dataset, sample_file


def test_latest_is_the_highest_version_compared_as_versions() -> None:
    ds = [
        sample_dataset("m.v9", latest=True),
        sample_dataset("m.v10", latest=False),
        sample_dataset("n.v1", latest=False),
    ]
    got = {d.dataset_id: d.latest for d in mark_latest(ds)}
    assert got == {"m.v9": False, "m.v10": True, "n.v1": True}


def test_aggregate_spans_files() -> None:
    a = sample_file(
        "1.nc",
        tkey_start=19500101000000,
        tkey_end=19591231000000,
        time_start="1950-01-01T00:00:00",
        time_end="1959-12-31T00:00:00",
        bbox=(0.0, -10.0, 10.0, 10.0),
        facets={"model": "M", "time_range": "1950"},
    )
    b = sample_file(
        "2.nc",
        tkey_start=19600101000000,
        tkey_end=19691231000000,
        time_start="1960-01-01T00:00:00",
        time_end="1969-12-31T00:00:00",
        bbox=(5.0, -20.0, 20.0, 5.0),
        facets={"model": "M", "time_range": "1960"},
    )
    d = aggregate([b, a])
    assert (d.time_start, d.time_end) == ("1950-01-01T00:00:00", "1969-12-31T00:00:00")
    assert d.bbox == (0.0, -20.0, 20.0, 10.0)
    assert d.facets == {"model": ["M"]}
    assert (d.n_files, d.size) == (2, a.size + b.size)

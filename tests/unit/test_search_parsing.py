from __future__ import annotations

import pytest

from insitu.catalog.search import parse_bbox, parse_text, parse_time_range
from insitu.errors import InvalidQuery


def test_partial_dates_cover_their_period() -> None:
    assert parse_time_range("1990", "1999") == (19900101000000, 19991231235959)
    assert parse_time_range("1990-02", "1990-02-15") == (19900201000000, 19900215235959)
    assert parse_time_range("2000-01-01T06:30", None)[0] == 20000101063000
    lo, hi = parse_time_range(None, None)
    assert lo < 0 < hi


@pytest.mark.parametrize(
    ("start", "end", "msg"),
    [
        ("yesterday", None, "is not a date"),
        ("2000-13", None, "out of range"),
        ("2001", "2000", "ends before it starts"),
    ],
)
def test_bad_times(start: str, end: str | None, msg: str) -> None:
    with pytest.raises(InvalidQuery, match=msg):
        parse_time_range(start, end)


def test_bbox() -> None:
    assert parse_bbox("-10,35,30,70") == (-10.0, 35.0, 30.0, 70.0)
    assert parse_bbox([0, -90, 360, 90]) == (0.0, -90.0, 360.0, 90.0)
    with pytest.raises(InvalidQuery, match="not four numbers"):
        parse_bbox("1,2,3")
    with pytest.raises(InvalidQuery, match="south <= north"):
        parse_bbox("0,50,10,40")


def test_text_is_phrases_of_words() -> None:
    assert parse_text("air_temp  MPI-ESM1-2-LR tas") == [
        ["air", "temp"],
        ["mpi", "esm1", "2", "lr"],
        ["tas"],
    ]
    assert parse_text("  ") == []


def test_a_term_without_letters_or_digits_is_refused() -> None:
    with pytest.raises(InvalidQuery, match=r"Search term '\+\+' \(in 'tas \+\+'\)"):
        parse_text("tas ++")

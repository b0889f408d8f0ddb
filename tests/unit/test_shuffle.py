"""The unshuffle: HDF5's byte layout undone, alone, with the sum over records and with the
sum of every row, in C and in NumPy (the fallback where the C module was not built): both
give the same bytes and sums."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from insitu.formats.netcdf import unshuffle as chosen
from insitu.formats.netcdf._shuffle import unshuffle, unshuffle_rows, unshuffle_sum
from insitu.formats.netcdf.unshuffle import (
    numpy_unshuffle,
    numpy_unshuffle_rows,
    numpy_unshuffle_sum,
)

IMPLEMENTATIONS = {"C": (unshuffle, unshuffle_sum), "NumPy": (numpy_unshuffle, numpy_unshuffle_sum)}
ROW_SUMS = {"C": unshuffle_rows, "NumPy": numpy_unshuffle_rows}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """One implementation's (unshuffle, unshuffle_sum)."""
    return IMPLEMENTATIONS[request.param]


def test_the_compiled_module_is_used_where_it_was_built() -> None:
    assert chosen.COMPILED
    assert chosen.unshuffle is unshuffle


def _shuffled(values: np.ndarray[Any, Any]) -> bytes:
    """HDF5's shuffle of ``values``: byte k of every value in the k-th block."""
    raw = values.reshape(-1).view(np.uint8).reshape(-1, values.dtype.itemsize)
    return raw.T.tobytes()


@pytest.mark.parametrize("dtype", ["u1", "i2", "V3", "f4", "i4", "f8", "i8", "V16"])
def test_it_undoes_the_shuffle_of_every_item_size(dtype: str, impl: tuple[Any, Any]) -> None:
    unshuffle, _ = impl
    rng = np.random.default_rng(1)
    size = np.dtype(dtype).itemsize
    values = rng.integers(0, 256, 1001 * size, dtype=np.uint8).view(dtype)
    dest = np.empty_like(values)
    unshuffle(_shuffled(values), dest, size)
    assert dest.tobytes() == values.tobytes()


def test_trailing_bytes_that_make_no_whole_value_are_copied_as_they_are(
    impl: tuple[Any, Any],
) -> None:
    unshuffle, _ = impl
    values = np.arange(10, dtype="f4")
    src = _shuffled(values) + b"xyz"
    dest = bytearray(len(src))
    unshuffle(src, dest, 4)
    assert bytes(dest) == values.tobytes() + b"xyz"


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("per_chunk", [1, 3])
def test_the_sum_over_records_is_made_while_unshuffling(
    dtype: str, per_chunk: int, impl: tuple[Any, Any]
) -> None:
    """Records in chunks of ``per_chunk``; a record of 2,500 values spans several blocks."""
    _, unshuffle_sum = impl
    rng = np.random.default_rng(2)
    values = rng.normal(280, 30, (6, 50, 50)).astype(dtype)
    values[2, 3, 4] = np.nan
    values[4, 0, 0] = 1e20
    expected = values[0].astype(np.float64)
    for record in values[1:]:
        expected += record
    chunks = [_shuffled(values[i : i + per_chunk]) for i in range(0, 6, per_chunk)]
    dest = np.empty_like(values)
    total = np.full((50, 50), 0.5)  # overwritten
    unshuffle_sum(chunks, dest, values.dtype.itemsize, total)
    assert dest.tobytes() == values.tobytes()
    assert np.array_equal(total, expected, equal_nan=True)


@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_a_sum_of_negative_zeros_stays_negative_as_in_a_loop(
    dtype: str, impl: tuple[Any, Any]
) -> None:
    _, unshuffle_sum = impl
    values = np.full((3, 5), -0.0, dtype)
    total = np.empty(5)
    unshuffle_sum([_shuffled(r) for r in values], np.empty_like(values), values.itemsize, total)
    assert np.signbit(total).all()


def test_buffers_that_overlap_are_refused() -> None:
    """The loops read and write at once: an overlap would give wrong values."""
    shared = bytearray(32)
    with pytest.raises(ValueError, match="dest overlaps src"):
        unshuffle(shared, shared, 4)
    with pytest.raises(ValueError, match="chunk 0 overlaps dest or total"):
        unshuffle_sum([memoryview(shared)[:16]], memoryview(shared)[:16], 4, np.zeros(2))
    with pytest.raises(ValueError, match="total overlaps dest"):
        unshuffle_sum([bytes(16)], memoryview(shared)[:16], 4, memoryview(shared)[8:24])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((bytes(8), bytearray(7), 4), "dest holds 7 bytes, src 8"),
        ((bytes(8), bytearray(8), 0), "itemsize must be 1 to 255, not 0"),
    ],
)
def test_unshuffle_refuses_bad_arguments_saying_what_they_should_be(
    args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        unshuffle(*args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([bytes(16)], bytearray(16), 2, np.zeros(2)), r"itemsize 4 or 8\), not itemsize 2"),
        (([], bytearray(0), 4, np.zeros(2)), "no chunks"),
        (([bytes(16), bytes(8)], bytearray(24), 4, np.zeros(2)), "chunk 1 holds 8 bytes"),
        (([bytes(16)], bytearray(16), 4, np.zeros(3)), "total holds 24 bytes"),
        (([bytes(16)] * 2, bytearray(16), 4, np.zeros(2)), "dest holds 16 bytes; the 2 chunks"),
        ((bytes(16), bytearray(16), 4, np.zeros(2)), "bytes-like object is required, not 'int'"),
    ],
)
def test_unshuffle_sum_refuses_bad_arguments_saying_what_they_should_be(
    args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        unshuffle_sum(*args)


def test_read_only_destinations_are_refused() -> None:
    with pytest.raises(TypeError):
        unshuffle(bytes(8), bytes(8), 4)
    with pytest.raises(TypeError):
        unshuffle_sum([bytes(8)], bytearray(8), 4, np.zeros(2).tobytes())


def test_the_numpy_fallback_gives_the_c_module_s_bytes_and_sums_on_random_chunks() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1e3, (8, 33, 17)).astype("f4")
    chunks = [_shuffled(values[i : i + 2]) for i in range(0, 8, 2)]
    outs, totals = [], []
    for _, summed in IMPLEMENTATIONS.values():
        out, total = np.empty_like(values), np.empty((33, 17))
        summed(chunks, out, 4, total)
        outs.append(out.tobytes())
        totals.append(total.tobytes())
    assert outs[0] == outs[1] == values.tobytes()
    assert totals[0] == totals[1]


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("width", [1, 5, 8, 9, 17, 128, 129, 200, 720, 9000])
@pytest.mark.parametrize("name", list(ROW_SUMS))
def test_row_sums_are_numpy_s_float64_sums_to_the_bit(dtype: str, width: int, name: str) -> None:
    """NumPy's pairwise summation of a float64 copy, whatever the row's length: short rows,
    its 8 accumulators, its halving past 128 values; NaN, infinities, -0.0 and fills too.
    Rows of several chunks, and blocks of several rows within a chunk."""
    rng = np.random.default_rng(width)
    rows_per_chunk = max(1, 3000 // width)
    values = rng.normal(0, 1, (3, rows_per_chunk, width)) * 10 ** rng.uniform(-3, 6, width)
    values = values.astype(dtype)
    values[0, 0, width // 2] = np.nan
    values[1, -1, :] = -0.0
    values[2, 0, -1] = np.inf
    values[2, -1, 0] = 1e20
    dest = np.empty_like(values)
    rows = np.full((3, rows_per_chunk), 0.5)  # overwritten
    ROW_SUMS[name]([_shuffled(c) for c in values], dest, values.itemsize, rows)
    want = np.add.reduce(values.astype(np.float64), axis=-1)
    assert dest.tobytes() == values.tobytes()
    assert rows.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([bytes(16)], bytearray(16), 2, np.zeros(2)), r"itemsize 4 or 8\), not itemsize 2"),
        (([], bytearray(0), 4, np.zeros(2)), "no chunks"),
        (([bytes(16), bytes(8)], bytearray(24), 4, np.zeros(2)), "chunk 1 holds 8 bytes"),
        (([bytes(16)], bytearray(16), 4, np.zeros(3)), "rows holds 24 bytes"),
        (([bytes(16)] * 2, bytearray(16), 4, np.zeros(2)), "dest holds 16 bytes; the 2 chunks"),
    ],
)
def test_unshuffle_rows_refuses_bad_arguments_saying_what_they_should_be(
    args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        unshuffle_rows(*args)


def test_row_sums_refuse_buffers_that_overlap() -> None:
    shared = bytearray(64)
    with pytest.raises(ValueError, match="chunk 0 overlaps dest or rows"):
        unshuffle_rows([memoryview(shared)[:16]], memoryview(shared)[:16], 4, np.zeros(2))
    with pytest.raises(ValueError, match="rows overlaps dest"):
        unshuffle_rows([bytes(16)], memoryview(shared)[:16], 4, memoryview(shared)[8:24])

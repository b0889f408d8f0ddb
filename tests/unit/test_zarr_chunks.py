"""How the Zarr view cuts arrays into chunks: aligned to files along time, under a size."""

from __future__ import annotations

import pytest

from insitu.access.zarrview import chunk_shape, time_chunk


@pytest.mark.parametrize(
    ("lengths", "fit", "expected"),
    [
        ([120] * 6 + [60], 10**6, 120),  # one chunk per 10-year file, the last one short
        ([480, 480, 60], 10**6, 480),
        ([600, 180], 10**6, 600),  # the last file may be shorter and not a divisor
        ([12] * 65, 10**6, 12),
        ([120] * 6 + [60], 50, 40),  # too big: the largest divisor of 120 that fits
        ([120] * 6 + [60], 7, 6),
        ([1980], 10**6, 1980),  # one file: no boundary to align to
        ([1980], 500, 500),
        ([366, 365, 365], 10**6, 366),  # gcd 1: chunks as long as the longest file
        ([366, 365, 365], 128, 128),
        ([365, 365, 365], 10**6, 365),
        ([60, 62], 10**6, 60),  # gcd 60, aligned
        ([62, 60], 10**6, 62),  # gcd 62 of all files but the last
        ([31, 28, 31], 10**6, 31),  # gcd 1 but a file per chunk fits: longest file
        ([0], 10, 1),
    ],
)
def test_time_chunk(lengths: list[int], fit: int, expected: int) -> None:
    assert time_chunk(lengths, fit) == expected


def test_small_records_keep_whole_files() -> None:
    # 780 monthly records of 19 x 96 x 192 float32 (1.4 MB) in 10-year files, 8 MiB chunks
    shape = (780, 19, 96, 192)
    assert chunk_shape(shape, 4, 8 * 2**20, 0, [120] * 6 + [60]) == (5, 19, 96, 192)


def test_a_record_bigger_than_a_chunk_is_split_along_the_next_axes() -> None:
    shape = (365, 19, 180, 360)  # 4.9 MB records, 1 MiB chunks
    assert chunk_shape(shape, 4, 2**20, 0, [365]) == (1, 4, 180, 360)
    assert chunk_shape((10, 8, 16, 32), 2, 4096, 0, [5, 5]) == (1, 4, 16, 32)
    assert chunk_shape((10, 1000, 1000), 8, 4096, 0, [10]) == (1, 1, 512)


def test_static_arrays_are_one_chunk_unless_too_big() -> None:
    assert chunk_shape((96, 2), 8, 8 * 2**20) == (96, 2)
    assert chunk_shape((), 8, 4096) == ()
    assert chunk_shape((0, 3), 8, 4096) == (1, 3)
    assert chunk_shape((4000, 4000), 4, 8 * 2**20) == (524, 4000)

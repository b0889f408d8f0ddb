"""HDF5's shuffle filter undone: compiled (:mod:`._shuffle`, built from ``_shuffle.c``) where
it was built, else in NumPy.

The shuffle stores byte k of every value in the k-th of ``itemsize`` blocks; undoing it is
a byte transpose. The C loops do it at about 7 GB/s with the sum over records (a time
mean) or the sum of every row (a field mean) fused in; the NumPy transpose gives the same
bytes and the same sums, several times slower (a mean over compressed files then takes
longer, nothing else changes). Installing without a C compiler
gives the NumPy path; so does ``INSITU_NO_C_UNSHUFFLE=1`` (the tests compare the two).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing import TypeAlias

    from typing_extensions import Buffer

    _Bytes: TypeAlias = Buffer | np.ndarray[Any, Any]

__all__ = [
    "COMPILED",
    "numpy_unshuffle",
    "numpy_unshuffle_rows",
    "numpy_unshuffle_sum",
    "unshuffle",
    "unshuffle_rows",
    "unshuffle_sum",
]

log = logging.getLogger(__name__)


def _bytes(buffer: _Bytes, writable: bool = False) -> np.ndarray[Any, Any]:
    """A buffer's bytes as a flat uint8 array (a view, no copy)."""
    if isinstance(buffer, np.ndarray):
        return buffer.reshape(-1).view(np.uint8)
    view: np.ndarray[Any, Any] = np.frombuffer(memoryview(buffer), np.uint8)
    if writable and not view.flags.writeable:
        raise ValueError("dest must be a writable buffer")
    return view


def numpy_unshuffle(src: _Bytes, dest: _Bytes, itemsize: int, /) -> None:
    """Undo HDF5's shuffle of ``src`` into ``dest`` (of the same length); trailing bytes that
    make no whole value are copied as they are, as HDF5 does."""
    s, d = _bytes(src), _bytes(dest, writable=True)
    if d.size != s.size:
        raise ValueError(f"dest holds {d.size} bytes, src {s.size}: they must be equal")
    n = s.size // itemsize
    body = n * itemsize
    d[:body].reshape(n, itemsize)[...] = s[:body].reshape(itemsize, n).T
    d[body:] = s[body:]


def _unshuffled(
    chunks: Sequence[_Bytes], dest: _Bytes, itemsize: int, sums: _Bytes
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The values of consecutive ``chunks`` unshuffled into ``dest``, and ``sums`` as
    float64: what the fused sums start from."""
    d = _bytes(dest, writable=True)
    out = _bytes(sums, writable=True).view(np.float64)
    if itemsize not in (4, 8):
        raise ValueError(f"values of {itemsize} bytes cannot be summed: float32 or float64")
    at = 0
    for chunk in chunks:
        size = _bytes(chunk).size
        numpy_unshuffle(chunk, d[at : at + size], itemsize)
        at += size
    if at != d.size or not out.size or (at // itemsize) % out.size:
        raise ValueError(f"dest holds {d.size} bytes; the chunks decode to {at}")
    return d.view(np.float32 if itemsize == 4 else np.float64), out


def numpy_unshuffle_sum(
    chunks: Sequence[_Bytes], dest: _Bytes, itemsize: int, total: _Bytes, /
) -> None:
    """Undo the shuffle of consecutive ``chunks`` (of whole records, float32 or float64)
    into ``dest``, and set ``total`` (float64, one record) to the sum over the records in
    record order from the first, as a loop of ``total += record`` gives."""
    values, sums = _unshuffled(chunks, dest, itemsize, total)
    records = values.reshape(-1, sums.size)
    np.copyto(sums, records[0])
    for record in records[1:]:
        np.add(sums, record, out=sums)


def numpy_unshuffle_rows(
    chunks: Sequence[_Bytes], dest: _Bytes, itemsize: int, rows: _Bytes, /
) -> None:
    """Undo the shuffle of consecutive ``chunks`` (of whole rows, float32 or float64) into
    ``dest``, and set ``rows`` (float64, one value per row of all the chunks) to the sum of
    each row: ``np.add.reduce`` along the rows of a float64 copy."""
    values, sums = _unshuffled(chunks, dest, itemsize, rows)
    np.add.reduce(values.reshape(sums.size, -1).astype(np.float64), axis=-1, out=sums)


_Functions = tuple[Callable[..., None], Callable[..., None], Callable[..., None], bool]


def _choose() -> _Functions:
    numpy_ones = numpy_unshuffle, numpy_unshuffle_sum, numpy_unshuffle_rows, False
    if os.environ.get("INSITU_NO_C_UNSHUFFLE", "") not in ("", "0"):
        log.info("HDF5 unshuffle in NumPy (INSITU_NO_C_UNSHUFFLE is set): slower decoding")
        return numpy_ones
    try:
        from insitu.formats.netcdf import _shuffle
    except ImportError:
        log.warning(
            "HDF5 unshuffle in NumPy: insitu's C module was not built (no C compiler at "
            "install; see scripts/compiler.sh); compressed reads are slower"
        )
        return numpy_ones
    rows = getattr(_shuffle, "unshuffle_rows", None)
    if rows is None:
        log.warning(
            "insitu's C module was built from an older _shuffle.c (no unshuffle_rows): field "
            "means sum rows in NumPy, slower; install again to rebuild it ('make install')"
        )
        rows = numpy_unshuffle_rows
    return _shuffle.unshuffle, _shuffle.unshuffle_sum, rows, True


unshuffle, unshuffle_sum, unshuffle_rows, COMPILED = _choose()

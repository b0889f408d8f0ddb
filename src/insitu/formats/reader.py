"""What a format reader is: a file's header, and a variable's raw values by index.

A reader turns the bytes of one file format into arrays. Values are *raw*: as stored, with
no mask and no scale (CF decoding is the caller's, with :mod:`insitu.formats.cf` or
xarray), so every path reads the very same numbers. Readers are stateless and shared by
threads; each takes :data:`insitu.formats.HDF5_LOCK` around calls into a library that is
not thread-safe.

Optional abilities are separate protocols, checked with ``isinstance``:

* :class:`SupportsDirectChunks`: the reader finds where a variable's chunks lie and
  decodes them itself (``pread`` and a fast inflate, no library lock), much faster than
  the format library on compressed data;
* :class:`SupportsFusedSums`: while decoding, it also adds up the records (a time mean
  then reads no value twice);
* :class:`SupportsFusedRowSums`: while decoding, it also adds up each row of values (a
  field mean then reads no value twice);
* :class:`SupportsKeepOpen`: its files can be kept open between reads
  (:class:`insitu.formats.OpenFiles`), where opening costs more than a small read.

Readers of other formats (GRIB, TDMS, ...) implement :class:`FormatReader` and pass the
contract suite :class:`insitu.testing.FormatReaderTests`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from insitu.formats.header import Header

__all__ = [
    "Array",
    "DirectVariable",
    "Encoded",
    "EncodedVariable",
    "FormatReader",
    "Index",
    "NotDirect",
    "Slab",
    "StoredChunk",
    "SupportsDirectChunks",
    "SupportsFusedRowSums",
    "SupportsFusedSums",
    "SupportsKeepOpen",
    "SupportsStoredChunks",
]

Array = np.ndarray[Any, Any]
Index = tuple[slice, ...]  # one slice per axis, steps of 1; () reads a variable whole


class NotDirect(Exception):
    """A variable's storage is not one the direct reader decodes (the reason is the
    message); the caller reads it through :meth:`FormatReader.read` instead."""


class Slab(NamedTuple):
    """Consecutive records of one variable in one file: raw values, the values that mean
    missing, and (from :class:`SupportsFusedSums` readers) their float64 sum over the
    records or (from :class:`SupportsFusedRowSums` readers) the float64 sums of their rows,
    fills included, in a buffer reused for the next slab."""

    raw: Array
    fills: list[Any]
    total: Array | None = None
    rows: Array | None = None


@dataclass(frozen=True, slots=True)
class EncodedVariable:
    """A variable as CF decoding needs it: its type, its attributes typed as the format
    library gives them (numpy scalars and arrays: their types steer the decoding), and
    its raw values if they were asked for."""

    dtype: np.dtype[Any]
    attrs: dict[str, Any]
    values: Array | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """A file's global attributes and variables, typed, before CF decoding."""

    attrs: dict[str, Any]
    variables: dict[str, EncodedVariable]


class FormatReader(Protocol):
    """Reads files of one format. One instance per process, shared by threads.

    Every method raises ``OSError`` (or the format library's own error) for a file that
    cannot be opened or read, and ``KeyError`` for a variable the file does not have.
    """

    name: ClassVar[str]  # "netcdf4", "netcdf3", ...

    def header(self, path: str) -> AbstractContextManager[Header]:
        """The header of the file at ``path``: dimensions, variables, attributes.

        The file stays open while the context lasts: the variables' ``read`` works only
        inside it.
        """
        ...

    def encoded(self, path: str, load: Collection[str] = ()) -> Encoded:
        """Attributes and types of the file and its variables, with the raw values of the
        variables named in ``load`` (small ones: read while the file is open anyway)."""
        ...

    def read(self, path: str, name: str, index: Index = ()) -> Array:
        """The raw values of variable ``name``, or of its slab ``index`` (``()``: all)."""
        ...

    def slabs(
        self, path: str, name: str, start: int, stop: int, chunk_bytes: int
    ) -> Iterator[Slab]:
        """Records ``start:stop`` (first axis) of ``name`` in slabs of at most
        ``chunk_bytes`` (at least one record; whole stored chunks along time when they
        hold several records), in order, with the file opened once."""
        ...


class DirectVariable(Protocol):
    """A variable whose stored chunks a reader decodes itself: its layout and the identity
    of the file it describes. Thread-safe; keep it for as long as the file is unchanged (a
    read of a file changed since raises :class:`NotDirect`)."""

    @property
    def name(self) -> str:
        """The variable's name."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """Its stored type."""
        ...

    @property
    def shape(self) -> tuple[int, ...]:
        """Its stored shape (records along the first axis)."""
        ...

    @property
    def attrs(self) -> dict[str, Any]:
        """``_FillValue`` and ``missing_value``, as values of their own type."""
        ...

    @property
    def time_chunk(self) -> int:
        """Records per stored chunk along the first axis."""
        ...

    def read(self, index: Index = ()) -> Array:
        """The raw values of slab ``index``; :class:`NotDirect` when a chunk does not decode
        or records are asked for that are not stored (the format library then reads them
        and says what is wrong)."""
        ...


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """One chunk as it lies in the file, not decoded: its bytes, the filters they went
    through in writing order (``"shuffle"``, ``"deflate"``), and the format's own mask of
    the filters it skipped (0 when it went through all of the variable's)."""

    data: bytes
    filters: tuple[str, ...]
    skipped: int = 0


@runtime_checkable
class SupportsStoredChunks(DirectVariable, Protocol):
    """A :class:`DirectVariable` that hands out its stored chunks as they are, for a client
    that decodes them itself (the chunk's bytes are then served with no decoding)."""

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """The shape of its stored chunks (edge chunks are stored at this shape too)."""
        ...

    @property
    def filters(self) -> tuple[str, ...]:
        """Its filters in writing order, by name: ``()``, ``("deflate",)`` or
        ``("shuffle", "deflate")``."""
        ...

    def stored_chunk(self, origin: tuple[int, ...]) -> StoredChunk:
        """The chunk whose first index on each axis is ``origin``, as stored;
        :class:`NotDirect` when there is none or the file changed."""
        ...


@runtime_checkable
class SupportsDirectChunks(Protocol):
    """A reader that decodes a variable's chunks itself."""

    def open_direct(self, path: str, name: str) -> DirectVariable:
        """Variable ``name`` of the file at ``path``, ready for direct reads.

        Raises :class:`NotDirect` (with the reason) when its layout is not one this reader
        decodes, and ``OSError`` when the file cannot be opened.
        """
        ...


@runtime_checkable
class SupportsFusedSums(Protocol):
    """A reader that can sum the records of a slab while it decodes them."""

    def sums_while_reading(self, var: DirectVariable) -> bool:
        """Whether :meth:`read_summed` makes the sum on the way for ``var`` (for slabs of
        whole time chunks); if not it still works, adding up afterwards."""
        ...

    def read_summed(self, var: DirectVariable, lo: int, hi: int, total: Array) -> Array:
        """Records ``lo:hi`` of ``var``, with ``total`` (float64, one record's shape) set to
        their sum in record order; :class:`NotDirect` as :meth:`DirectVariable.read`."""
        ...


@runtime_checkable
class SupportsFusedRowSums(Protocol):
    """A reader that can sum each row of values (along the last axis) while it decodes a
    slab: what a field mean adds up before it weighs the rows."""

    def row_sums_while_reading(self, var: DirectVariable) -> bool:
        """Whether :meth:`read_row_summed` makes the sums on the way for ``var`` (for slabs
        of whole time chunks); if not it still works, adding up afterwards."""
        ...

    def read_row_summed(self, var: DirectVariable, lo: int, hi: int, rows: Array) -> Array:
        """Records ``lo:hi`` of ``var``, with ``rows`` (float64, of the records' shape
        without their last axis) set to the sums along that axis, as NumPy sums a float64
        copy (:func:`insitu.formats.row_sums`); :class:`NotDirect` as
        :meth:`DirectVariable.read`."""
        ...


@runtime_checkable
class SupportsKeepOpen(Protocol):
    """A reader whose open files can be kept between reads. Every call is made with
    :data:`insitu.formats.HDF5_LOCK` held by the caller (:class:`insitu.formats.OpenFiles`)."""

    def open(self, path: str) -> Any:
        """An open handle of the file at ``path`` (``OSError`` if it cannot be opened)."""
        ...

    def read_open(self, handle: Any, name: str, index: Index = ()) -> Array:
        """Raw values of ``name`` (or its slab ``index``) from an open handle."""
        ...

    def close(self, handle: Any) -> None:
        """Close a handle."""
        ...

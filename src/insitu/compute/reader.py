"""One file's records of one variable, in slabs of bounded size, as the engine reads them.

Records are read through the file's format reader (:func:`insitu.formats.read_slabs`): from
the chunks directly wherever the reader and the layout allow (``pread`` and ISA-L's
inflate, about twice as fast as netCDF-C on compressed files), through the format library
otherwise. Values are raw (no mask, no scale): the engine skips the fill values itself and
scales once at the end. Asked for sums, readers that can add up each slab's records while
they decode them do (a time mean then reads no value twice), and so do readers asked for
the sums of each row (a field mean).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from insitu.errors import DataError
from insitu.formats import Slab, fill_values, read_slabs

__all__ = ["FilePart", "Slab", "fill_values", "slabs"]


@dataclass(frozen=True, slots=True)
class FilePart:
    """Records ``start:stop`` of variable ``name`` in one file.

    ``direct``: read its chunks directly where the layout allows (else the library only).
    """

    path: str
    name: str
    start: int
    stop: int
    direct: bool = True


def slabs(
    part: FilePart, chunk_bytes: int, sums: bool = False, rows: bool = False
) -> Iterator[Slab]:
    """Yield the :class:`insitu.formats.Slab` s of ``part``'s records, in order.

    A slab holds at most ``chunk_bytes`` (at least one record), in whole time chunks. With
    ``sums`` (or ``rows``), slabs whose decoding makes their sum over the records (or the
    sums of their rows) on the way carry it as ``total`` (or ``rows``), in one buffer reused
    for the next slab (use it before asking for that); others leave the sums to the caller,
    who may not need them.
    """
    try:
        yield from read_slabs(
            part.path,
            part.name,
            part.start,
            part.stop,
            chunk_bytes,
            sums=sums,
            rows=rows,
            direct=part.direct,
        )
    except (OSError, RuntimeError, KeyError, IndexError) as exc:
        raise DataError(
            f"Cannot read {part.name!r} records {part.start}:{part.stop} of {part.path}: {exc}. "
            "The file changed or became unreadable since the scan; rescan its collection."
        ) from exc

"""Delimited text files (instrument logs) with a declared dialect.

A file is: optional preamble rows to skip, ``#`` comment lines, a row of column names, an
optional row of units, then one row per sample. Comment lines of the form
``# column:attribute = <JSON>`` (``# :attribute = <JSON>`` for the file) give attributes
and layout (:mod:`insitu.formats.channels`; ``insitu_dtype`` the stored type, else the
dialect's). A column may end before the others (empty cells to the end): one file can hold
variables of different lengths. Anything that does not fit the dialect (a row with more
cells than names, a cell that is not a number) is a :class:`~insitu.errors.DataError` naming
the line. Files are read whole: they are logs, not waveforms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from insitu.errors import DataError
from insitu.formats.channels import Channel, ChannelFile, ChannelReader, layout

__all__ = ["CsvDialect", "CsvReader"]


@dataclass(frozen=True, slots=True)
class CsvDialect:
    """How a source writes its delimited files."""

    delimiter: str = ","
    decimal: str = "."
    skip_rows: int = 0  # preamble rows before the comments and the names row
    units_row: bool = False  # the row after the names holds each column's units
    comment: str = "#"
    dtype: str = "float64"  # stored type of columns that declare none


class CsvReader(ChannelReader):
    """Reads delimited text files of one dialect."""

    name: ClassVar[str] = "csv"

    def __init__(self, dialect: CsvDialect | None = None) -> None:
        self.dialect = dialect or CsvDialect()

    @contextmanager
    def open_channels(self, path: str) -> Iterator[ChannelFile]:
        """The file's columns (read whole)."""
        with open(path, encoding="utf-8", newline="") as fh:
            lines = fh.read().splitlines()
        yield _parse(path, lines, self.dialect)


def _fail(path: str, line: int, what: str) -> DataError:
    return DataError(
        f"{path} line {line}: {what}; the file does not match the pipeline's CSV dialect "
        "(delimiter, decimal separator, header rows): fix the dialect or the file."
    )


def _parse(path: str, lines: list[str], d: CsvDialect) -> ChannelFile:
    attrs: dict[str, Any] = {}
    props: dict[str, dict[str, Any]] = {}
    names: list[str] | None = None
    units: list[str] | None = None
    cells: list[list[str]] = []
    rows: list[int] = []  # their line numbers
    for no, line in enumerate(lines[d.skip_rows :], start=d.skip_rows + 1):
        if not line.strip():
            continue
        if names is None and line.startswith(d.comment):
            _annotation(path, no, line[len(d.comment) :], attrs, props)
            continue
        row = [c.strip() for c in line.split(d.delimiter)]
        if names is None:
            names = row
            if len(set(names)) != len(names) or not all(names):
                raise _fail(path, no, f"column names {names} are empty or repeated")
        elif d.units_row and units is None:
            units = row
        else:
            if len(row) > len(names):
                raise _fail(path, no, f"{len(row)} cells for {len(names)} columns")
            cells.append(row + [""] * (len(names) - len(row)))
            rows.append(no)
    if names is None:
        raise DataError(f"{path} has no row of column names: it is empty or only comments.")
    channels: dict[str, Channel] = {}
    for j, name in enumerate(names):
        p = props.get(name, {})
        if units is not None and j < len(units) and units[j]:
            p.setdefault("units", units[j])
        values = _column(path, d, name, [row[j] for row in cells], p, rows)
        dims, shape = layout(name, values.size, p, "row")
        channels[name] = Channel(name, dims, shape, values.dtype, p, _flat(values), name)
    return ChannelFile(attrs, channels)


def _annotation(
    path: str, no: int, text: str, attrs: dict[str, Any], props: dict[str, dict[str, Any]]
) -> None:
    key, sep, value = text.partition("=")
    target, colon, attr = key.strip().rpartition(":")
    if not sep or not colon:
        return  # a plain comment
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _fail(path, no, f"annotation value {value.strip()!r} is not JSON") from exc
    (props.setdefault(target, {}) if target else attrs)[attr.strip()] = parsed


def _column(
    path: str, d: CsvDialect, name: str, raw: list[str], props: dict[str, Any], rows: list[int]
) -> np.ndarray[Any, Any]:
    n = len(raw)
    while n and not raw[n - 1]:
        n -= 1
    dtype = np.dtype(props.get("insitu_dtype", d.dtype))
    text = raw[:n]
    if "" in text:
        gap = text.index("")
        raise _fail(path, rows[gap], f"column {name!r} has an empty cell before its last value")
    if d.decimal != ".":
        text = [c.replace(d.decimal, ".") for c in text]
    try:
        if dtype.kind in "iu":
            return np.array([int(c) for c in text], dtype=dtype)
        return np.array([float(c) for c in text], dtype=dtype)
    except ValueError:
        bad = next(i for i, c in enumerate(text) if not _number(c, dtype.kind))
        raise _fail(path, rows[bad], f"column {name!r} has {raw[bad]!r}") from None


def _number(cell: str, kind: str) -> bool:
    try:
        int(cell) if kind in "iu" else float(cell)
    except ValueError:
        return False
    return True


def _flat(values: np.ndarray[Any, Any]) -> Any:
    return lambda start, stop: values[start:stop]

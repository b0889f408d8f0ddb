"""Files of one-dimensional channels (TDMS, CSV) as :class:`~insitu.formats.FormatReader` s.

Instrument files hold flat channels with properties, not netCDF variables. A channel is a
one-dimensional variable along its group's samples, unless its properties declare another
layout, as files insitu writes (and the reader contract's sample) do:

* ``insitu_dims``: the dimension names, space-separated (``"time lat lon"``; ``""`` for a
  scalar), with ``insitu_shape``, the sizes (``"7 4 5"``); the flat values are in C order;
* ``insitu_types``: a JSON object giving the numpy type of attributes whose type the file
  format does not keep (``{"scale_factor": "float32"}``).

Fill attributes (``_FillValue``, ``missing_value``, ``valid_*``) take the channel's type,
as CF requires. These properties are never reported as attributes. Values are read as
stored (TDMS: no NI scaling), a record range at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from insitu.errors import DataError
from insitu.formats.cf import fill_values
from insitu.formats.header import Header, HeaderVariable, jsonable
from insitu.formats.reader import Array, Encoded, EncodedVariable, Index, Slab

__all__ = ["Channel", "ChannelFile", "ChannelReader", "layout", "plain"]

_LAYOUT = ("insitu_dims", "insitu_shape", "insitu_types", "insitu_dtype")
_TYPED_LIKE_DATA = ("_FillValue", "missing_value", "valid_min", "valid_max", "valid_range")


@dataclass(frozen=True, slots=True)
class Channel:
    """One variable of a channel file: its layout, stored type, properties (as the file
    gives them, layout properties included), a reader of flat values ``[start, stop)``
    and where it comes from in the file (TDMS ``"group/channel"``, a CSV column's name)."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    properties: dict[str, Any]
    read_flat: Callable[[int, int], Array]
    source: str

    @property
    def attrs(self) -> dict[str, Any]:
        """The properties that are attributes, JSON-ready."""
        return {k: plain(v) for k, v in self.properties.items() if k not in _LAYOUT}

    def typed_attrs(self) -> dict[str, Any]:
        """The attributes typed for CF decoding (see the module's docstring)."""
        declared = json.loads(self.properties.get("insitu_types") or "{}")
        out: dict[str, Any] = {}
        for key, value in self.properties.items():
            if key in _LAYOUT:
                continue
            if key in declared:
                value = np.asarray(value, dtype=declared[key])[()]
            elif key in _TYPED_LIKE_DATA and not isinstance(value, str):
                value = np.asarray(value, dtype=self.dtype)[()]
            else:
                value = plain(value)
            out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class ChannelFile:
    """An open channel file: global attributes and variables in file order."""

    attrs: dict[str, Any]
    channels: dict[str, Channel]

    def dims(self) -> dict[str, int]:
        """Dimension sizes, in order of first use."""
        dims: dict[str, int] = {}
        for ch in self.channels.values():
            for d, n in zip(ch.dims, ch.shape, strict=True):
                dims.setdefault(d, n)
        return dims

    def channel(self, name: str) -> Channel:
        """The variable ``name`` (``KeyError`` naming the ones there are)."""
        try:
            return self.channels[name]
        except KeyError:
            raise KeyError(f"no variable {name!r}; variables: {', '.join(self.channels)}") from None


def plain(value: Any) -> Any:
    """A property value as JSON-ready Python (timestamps as ISO 8601 UTC strings)."""
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="us")) + "Z"
    return jsonable(value)


def layout(
    name: str, size: int, properties: dict[str, Any], default_dim: str
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Dimensions and shape of a channel of ``size`` values (see the module's docstring)."""
    if "insitu_dims" not in properties:
        return (default_dim,), (size,)
    dims = tuple(str(properties["insitu_dims"]).split())
    shape = tuple(int(n) for n in str(properties.get("insitu_shape", "")).split())
    if len(dims) != len(shape) or int(np.prod(shape, dtype=np.int64)) != size:
        raise DataError(
            f"channel {name!r} declares dims {dims} and shape {shape} but holds {size} values; "
            "fix its insitu_dims/insitu_shape properties."
        )
    return dims, shape


def _read(ch: Channel, index: Index) -> Array:
    if not ch.shape:
        if any(s != slice(None) for s in index):
            raise IndexError(f"{ch.name!r} is a scalar; read it with index ()")
        return ch.read_flat(0, 1).reshape(())
    first = index[0] if index else slice(None)
    lo, hi, _ = first.indices(ch.shape[0])
    hi = max(hi, lo)
    per = int(np.prod(ch.shape[1:], dtype=np.int64))
    records = ch.read_flat(lo * per, hi * per).reshape((hi - lo, *ch.shape[1:]))
    return np.ascontiguousarray(records[(slice(None), *index[1:])])


class ChannelReader:
    """A :class:`~insitu.formats.FormatReader` over :meth:`open_channels`, which subclasses give."""

    name: ClassVar[str] = "channels"

    def open_channels(self, path: str) -> AbstractContextManager[ChannelFile]:
        """The file's channels, open while the context lasts (``OSError`` when it cannot
        be opened, :class:`insitu.errors.DataError` when it is not of this format)."""
        raise NotImplementedError

    @contextmanager
    def header(self, path: str) -> Iterator[Header]:
        """The file's header; its variables' ``read`` works while the context lasts."""
        with self.open_channels(path) as cf:
            variables = [
                HeaderVariable(ch.name, ch.dims, ch.shape, ch.dtype.str, ch.attrs, _whole(ch))
                for ch in cf.channels.values()
            ]
            yield Header(self.name, cf.dims(), variables, dict(cf.attrs))

    def encoded(self, path: str, load: Collection[str] = ()) -> Encoded:
        """Typed attributes of the file and its variables, values of those in ``load``."""
        with self.open_channels(path) as cf:
            variables = {
                ch.name: EncodedVariable(
                    ch.dtype, ch.typed_attrs(), _read(ch, ()) if ch.name in load else None
                )
                for ch in cf.channels.values()
            }
            return Encoded(dict(cf.attrs), variables)

    def read(self, path: str, name: str, index: Index = ()) -> Array:
        """Raw values of ``name`` (or slab ``index``)."""
        with self.open_channels(path) as cf:
            return _read(cf.channel(name), index)

    def slabs(
        self, path: str, name: str, start: int, stop: int, chunk_bytes: int
    ) -> Iterator[Slab]:
        """Records ``start:stop`` of ``name`` in slabs of at most ``chunk_bytes``."""
        with self.open_channels(path) as cf:
            ch = cf.channel(name)
            per_record = max(1, int(np.prod(ch.shape[1:], dtype=np.int64)) * ch.dtype.itemsize)
            step = max(1, chunk_bytes // per_record)
            fills = fill_values(ch.dtype, ch.typed_attrs())
            for lo in range(start, stop, step):
                yield Slab(_read(ch, (slice(lo, min(lo + step, stop)),)), fills)


def _whole(ch: Channel) -> Callable[[], Array]:
    return lambda: _read(ch, ())

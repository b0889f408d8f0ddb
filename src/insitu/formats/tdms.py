"""NI TDMS files (LabVIEW) through npTDMS, raw values only.

Values are read with ``scaled=False``: NI scaling properties (``NI_Scale[n]_...``) stay
attributes and are never applied, so a calibration is applied once, by ingest. npTDMS reads a
truncated file "successfully", with fewer values and only a logged warning; here any warning
it logs while reading is an :class:`~insitu.errors.IncompleteFile`.

Variables are the channels: named ``channel`` when the file has one group, else
``group/channel``; root properties are the global attributes, a channel's properties its
attributes (layout conventions in :mod:`insitu.formats.channels`).

Reads of a numeric channel whose segments all store it contiguously (not interleaved, not
DAQmx, little-endian: what LabVIEW's TDMS Write gives) skip npTDMS's read loop: the
channel's runs of values in the file (one per segment chunk) are worked out once from the
segment index npTDMS parsed, and a range of values is read with ``preadv`` straight into
the result (one copy, no lock, the GIL released). Every other layout is read by npTDMS. On
512 MB of such shots this reads 5-8x faster than npTDMS in 4 Mi-value calls, and keeps an
ingest's reading thread from being its bottleneck (BENCHMARKS.md "Ingest").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from insitu.errors import DataError, IncompleteFile
from insitu.formats.channels import Channel, ChannelFile, ChannelReader, layout, plain

__all__ = ["TDMS_SIGNATURE", "TdmsReader", "tdms_warnings_are_errors"]

TDMS_SIGNATURE = b"TDSm"
_LEAD_IN = 28  # bytes of a segment's lead-in
_INSTALL = "npTDMS is not installed; install insitu's 'ingest' extra: pip install 'insitu[ingest]'"


class _Capture(logging.Handler):
    """Collects npTDMS's warnings of the threads that asked for them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        seen = getattr(self.local, "seen", None)
        if seen is not None:
            seen.append(record.getMessage())


_CAPTURE = _Capture()
logging.getLogger("nptdms").addHandler(_CAPTURE)


@contextmanager
def tdms_warnings_are_errors(path: str) -> Iterator[None]:
    """Raise :class:`~insitu.errors.IncompleteFile` if npTDMS warns in this thread inside
    the context (its way of saying a file is cut short)."""
    outer = getattr(_CAPTURE.local, "seen", None)
    seen: list[str] = []
    _CAPTURE.local.seen = seen
    try:
        yield
    finally:
        _CAPTURE.local.seen = outer
    if seen:
        raise IncompleteFile(
            f"{path} is incomplete: npTDMS says {seen[0]!r}. The file was cut short or is "
            "still being written; wait for the writer to finish or fetch it again."
        )


class TdmsReader(ChannelReader):
    """Reads NI TDMS files (raw channel values, no NI scaling)."""

    name: ClassVar[str] = "tdms"

    @contextmanager
    def open_channels(self, path: str) -> Iterator[ChannelFile]:
        """The file's channels, open while the context lasts."""
        try:
            from nptdms import TdmsFile
        except ImportError as exc:
            raise DataError(_INSTALL) from exc
        with open(path, "rb") as fh:
            lead_in = fh.read(_LEAD_IN)
        if not TDMS_SIGNATURE.startswith(lead_in[:4]):
            raise DataError(
                f"{path} is not a TDMS file (it starts with {lead_in[:4]!r}, not "
                f"{TDMS_SIGNATURE!r}); check the pipeline's parser."
            )
        if len(lead_in) < _LEAD_IN:
            raise IncompleteFile(
                f"{path} is incomplete: {len(lead_in)} bytes, less than a TDMS lead-in; "
                "nothing was written yet or the file was cut short."
            )
        try:
            with tdms_warnings_are_errors(path):
                tdms = TdmsFile.open(path)
        except ValueError as exc:
            raise DataError(
                f"{path} is not a TDMS file ({exc}); check the pipeline's parser."
            ) from exc
        try:
            yield _channel_file(path, tdms)
        finally:
            tdms.close()


def _channel_file(path: str, tdms: Any) -> ChannelFile:
    groups = tdms.groups()
    channels: dict[str, Channel] = {}
    for group in groups:
        chans = group.channels()
        same = len({len(c) for c in chans}) <= 1
        for ch in chans:
            name = ch.name if len(groups) == 1 else f"{group.name}/{ch.name}"
            props = dict(ch.properties)
            dims, shape = layout(name, len(ch), props, group.name if same else name)
            channels[name] = Channel(
                name=name,
                dims=dims,
                shape=shape,
                dtype=np.dtype(ch.dtype),
                properties=props,
                read_flat=_direct_reader(path, tdms, ch) or _flat_reader(path, ch),
                source=f"{group.name}/{ch.name}",
            )
    attrs = {k: plain(v) for k, v in tdms.properties.items()}
    return ChannelFile(attrs, channels)


def _flat_reader(path: str, ch: Any) -> Any:
    def read_flat(start: int, stop: int) -> np.ndarray[Any, Any]:
        if stop <= start:
            return np.empty(0, np.dtype(ch.dtype))
        with tdms_warnings_are_errors(path):
            return np.asarray(ch.read_data(start, stop - start, scaled=False))

    return read_flat


_INTERLEAVED, _BIG_ENDIAN = 1 << 5, 1 << 6  # TDMS lead-in ToC flags


def _runs(tdms: Any, ch: Any) -> tuple[np.ndarray[Any, Any], ...] | None:
    """Where the values of ``ch`` lie in the file: for each run of consecutive values, the
    index of its first value, its byte offset and its length; None when a segment stores
    the channel otherwise than contiguously (npTDMS then reads it). Uses npTDMS's parsed
    segment index (private: any surprise falls back to npTDMS)."""
    dtype = np.dtype(ch.dtype)
    if dtype.kind not in "iuf" or dtype.byteorder == ">":
        return None
    try:
        segments = tdms._reader._segments
        target = ch.path
        firsts: list[int] = []
        offsets: list[int] = []
        counts: list[int] = []
        done = 0
        for seg in segments:
            index = seg.object_index.get(target) if seg.object_index else None
            if index is None or not seg.num_chunks:
                continue
            objects = [o for o in seg.ordered_objects if o.has_data]
            if not any(o.path == target for o in objects):
                continue
            if seg.toc_mask & (_INTERLEAVED | _BIG_ENDIAN) or any(
                type(o).__name__ != "TdmsSegmentObject"
                for o in objects  # DAQmx raw data
            ):
                return None
            chunk_size = sum(int(o.data_size) for o in objects)
            last = seg.final_chunk_lengths_override
            for k in range(seg.num_chunks):
                final = last is not None and k == seg.num_chunks - 1
                pos = seg.data_position + k * chunk_size
                for o in objects:
                    n = last.get(o.path, 0) if final else o.number_values
                    if o.path == target:
                        if o.data_type.size != dtype.itemsize:
                            return None
                        if n:
                            firsts.append(done)
                            offsets.append(pos)
                            counts.append(n)
                            done += n
                        break
                    if not final:
                        pos += int(o.data_size)  # strings too: their bytes are known
                    elif o.data_type.size is not None:
                        pos += n * o.data_type.size
                    else:
                        return None
        if done != len(ch):
            return None
    except (AttributeError, TypeError, KeyError):
        return None
    return (
        np.asarray(firsts, dtype=np.int64),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(counts, dtype=np.int64),
    )


def _direct_reader(path: str, tdms: Any, ch: Any) -> Any:
    """A ``read_flat`` of ``ch`` by ``preadv`` (see the module docstring), or None."""
    found = _runs(tdms, ch)
    if found is None:
        return None
    firsts, offsets, counts = found
    dtype = np.dtype(ch.dtype)
    total = len(ch)

    def read_flat(start: int, stop: int) -> np.ndarray[Any, Any]:
        start, stop = max(0, start), min(stop, total)
        out = np.empty(max(0, stop - start), dtype)
        if stop <= start:
            return out
        raw = out.view(np.uint8)
        fd = os.open(path, os.O_RDONLY)
        try:
            i = int(np.searchsorted(firsts, start, side="right")) - 1
            pos = start
            while pos < stop:
                skip = pos - int(firsts[i])
                take = min(int(counts[i]) - skip, stop - pos)
                lo = (pos - start) * dtype.itemsize
                hi = lo + take * dtype.itemsize
                at = int(offsets[i]) + skip * dtype.itemsize
                while lo < hi:
                    got = os.preadv(fd, [raw.data[lo:hi]], at)
                    if got <= 0:
                        raise IncompleteFile(
                            f"{path} is incomplete: it ends before the values of "
                            f"{ch.path} its index announces; the file was cut short."
                        )
                    lo += got
                    at += got
                pos += take
                i += 1
        finally:
            os.close(fd)
        return out

    return read_flat

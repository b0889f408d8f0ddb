"""NI TDMS files (LabVIEW) through npTDMS, raw values only.

Values are read with ``scaled=False``: NI scaling properties (``NI_Scale[n]_...``) stay
attributes and are never applied, so a calibration is applied once, by ingest. npTDMS reads a
truncated file "successfully", with fewer values and only a logged warning; here any warning
it logs while reading is an :class:`~insitu.errors.IncompleteFile`.

Variables are the channels: named ``channel`` when the file has one group, else
``group/channel``; root properties are the global attributes, a channel's properties its
attributes (layout conventions in :mod:`insitu.formats.channels`).
"""

from __future__ import annotations

import logging
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
                read_flat=_flat_reader(path, ch),
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

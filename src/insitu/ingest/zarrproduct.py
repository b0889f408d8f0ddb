"""A shot's product as a Zarr store (format 3): what :func:`insitu.ingest.product.write_product`
writes by default.

One array per signal (and ``time`` for irregularly sampled CSV logs), along the
dimensions the NetCDF-4 product has, with the same attributes. Chunks hold about 1 MB
compressed (the first values of each signal are compressed once to judge their ratio) and
are shuffled and zstd-compressed in Blosc (:class:`insitu.formats.ZarrWriter`).

Work is split so that both cores are busy: this thread reads the raw channel (npTDMS,
blocks of about a million values, whole chunks), and the writer's worker threads calibrate,
encode and write each chunk (numpy, Blosc and file writes release the GIL). At most a few
chunks wait at a time, so memory does not grow with the shot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from insitu.formats import ZarrWriter
from insitu.ingest.layout import (
    TIME_ATTRS,
    Summary,
    calibrated,
    signal_attrs,
    signal_dims,
    signal_dtype,
)
from insitu.ingest.shot import Shot, Signal

__all__ = ["write_zarr"]

_READ = 1 << 22  # values read from the raw file at a time (rounded to whole chunks)


def write_zarr(
    part: Path,
    shot: Shot,
    attrs: dict[str, Any],
    finish: Callable[[], dict[str, Any]],
    summary: Summary,
) -> None:
    """Write ``shot`` as a new Zarr store at ``part`` with global attributes ``attrs``,
    then those ``finish()`` gives (once every chunk is written); every stored value is
    counted in ``summary``."""
    with ZarrWriter(str(part), attrs) as writer:
        sizes, dims = signal_dims(shot)
        if shot.time_values is not None:
            dim = shot.signals[0].dim if shot.signals else "row"
            n = len(shot.time_values)
            t = writer.create("time", (dim,), (n,), "f8", TIME_ATTRS, max(1, n))
            t.set(shot.time_values)
        for s in shot.signals:
            _write_signal(writer, s, dims[s.name], sizes[dims[s.name]], summary)
        writer.update_attrs(finish())
        writer.close()


def _write_signal(writer: ZarrWriter, s: Signal, dim: str, n: int, summary: Summary) -> None:
    dtype = signal_dtype(s)
    first = s.channel.read_flat(0, min(n, _READ))
    sample = np.asarray(calibrated(s, first[: max(1, (1 << 20) // dtype.itemsize)]), dtype)
    chunk = writer.chunk_length(sample, n)
    arr = writer.create(s.name, (dim,), (n,), dtype, signal_attrs(s), chunk)
    step = max(chunk, _READ // chunk * chunk)
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        raw = first if lo == 0 and len(first) >= hi else s.channel.read_flat(lo, hi)
        for c in range(0, hi - lo, chunk):
            arr.submit(lo + c, _job(s, raw[c : c + chunk], summary))


def _job(
    s: Signal, raw: np.ndarray[Any, Any], summary: Summary
) -> Callable[[], np.ndarray[Any, Any]]:
    def job() -> np.ndarray[Any, Any]:
        values = calibrated(s, raw)
        summary.add(s.name, values)
        return values

    return job

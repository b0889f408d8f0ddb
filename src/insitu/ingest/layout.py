"""What a shot's product holds, whatever its format: dimensions, each signal's type and
attributes, and its values as stored (the NetCDF-4 and Zarr writers share these)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from insitu.ingest.shot import Shot, Signal

__all__ = [
    "TIME_ATTRS",
    "Summary",
    "calibrated",
    "signal_attrs",
    "signal_dims",
    "signal_dtype",
]


def signal_dims(shot: Shot) -> tuple[dict[str, int], dict[str, str]]:
    """The product's dimensions (name: length) and each signal's dimension: its group's,
    or its own ``<name>_sample`` when its length differs from the group's."""
    sizes: dict[str, int] = {}
    for s in shot.signals:
        n = int(np.prod(s.channel.shape, dtype=np.int64))
        if sizes.setdefault(s.dim, n) != n:  # same group name, other length: own dim
            sizes[s.name + "_sample"] = n
    dims = {}
    for s in shot.signals:
        n = int(np.prod(s.channel.shape, dtype=np.int64))
        dims[s.name] = s.dim if sizes[s.dim] == n else s.name + "_sample"
    return sizes, dims


TIME_ATTRS = {"units": "s", "long_name": "time since acquisition start"}


def signal_attrs(s: Signal) -> dict[str, Any]:
    """A signal's attributes: its raw channel and units, its time base (offset and
    interval), its calibration's id, version and sha256, units and names."""
    cal = s.calibration
    attrs: dict[str, Any] = {
        "raw_channel": s.channel.source,
        "raw_units": s.raw_units or "",
        "time_offset": s.time_offset,
    }
    if s.sample_interval is not None:
        attrs["sample_interval"] = s.sample_interval
    if cal is not None:
        attrs.update(
            units=cal.output_units or "1",
            long_name=cal.long_name or s.name,
            calibration_id=cal.id,
            calibration_version=np.int32(cal.version),
            calibration_sha256=cal.sha256,
        )
        if cal.standard_name:
            attrs["standard_name"] = cal.standard_name
    else:
        attrs.update(long_name=f"{s.channel.source} (uncalibrated)", comment="raw only")
        if s.raw_units:
            attrs["units"] = s.raw_units
    return attrs


def signal_dtype(s: Signal) -> np.dtype[Any]:
    """What a signal is stored as: float64 once calibrated, else the channel's type."""
    return np.dtype("f8") if s.calibration is not None else np.dtype(s.channel.dtype)


def calibrated(s: Signal, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Raw values of ``s`` as stored: calibrated (after the unit factor), or as they are."""
    cal = s.calibration
    if cal is None:
        return raw
    return cal.apply(raw * s.factor if s.factor != 1.0 else raw)


class Summary:
    """Summary scalars of each signal's stored values, added up chunk by chunk as the
    writers store them (from any thread): what :func:`insitu.ingest.shot.summarize`
    computes (min, max and mean of the values that are not NaN, their number ``n``, the
    NaN count), without reading the raw file a second time."""

    def __init__(self, shot: Shot, *, enabled: bool = True) -> None:
        self.enabled = enabled  # False: add() does nothing (no one asked)
        self._lock = threading.Lock()
        self._n = {s.name: int(np.prod(s.channel.shape, dtype=np.int64)) for s in shot.signals}
        self._acc: dict[str, list[Any]] = {
            name: [np.inf, -np.inf, 0.0, 0, 0] for name in self._n
        }  # min, max, sum, count, NaN

    def add(self, name: str, values: np.ndarray[Any, Any]) -> None:
        """Count ``values`` (stored values of signal ``name``, in any order)."""
        if not self.enabled:
            return
        nans = 0
        if values.dtype.kind in "fc":
            bad = np.isnan(values)
            nans = int(np.count_nonzero(bad))
            if nans:
                values = values[~bad]
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            total = float(values.sum(dtype=np.float64))
        with self._lock:
            acc = self._acc[name]
            acc[4] += nans
            if values.size:
                acc[0], acc[1] = min(acc[0], lo), max(acc[1], hi)
                acc[2] += total
                acc[3] += int(values.size)

    def result(self) -> dict[str, dict[str, Any]]:
        """Per signal: ``min``, ``max``, ``mean`` (None without values), ``n``, ``nan``
        (nothing when not enabled)."""
        out: dict[str, dict[str, Any]] = {}
        if not self.enabled:
            return out
        for name, (lo, hi, total, count, nans) in self._acc.items():
            out[name] = {
                "min": lo if count else None,
                "max": hi if count else None,
                "mean": total / count if count else None,
                "n": self._n[name],
                "nan": nans,
            }
        return out

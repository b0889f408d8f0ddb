"""What a shot's product holds, whatever its format: dimensions, each signal's type and
attributes, and its values as stored (the NetCDF-4 and Zarr writers share these)."""

from __future__ import annotations

from typing import Any

import numpy as np

from insitu.ingest.shot import Shot, Signal

__all__ = ["TIME_ATTRS", "calibrated", "signal_attrs", "signal_dims", "signal_dtype"]


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

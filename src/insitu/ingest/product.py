"""Write a shot's product: calibrated signals, stamped with who, when, what and how.

One NetCDF-4 file per shot and version, ``<output>/<shot>/v<k>/<shot>_v<k>.nc`` (the
catalog's ``shots`` template), chunked along samples, shuffled and deflated. Uniformly
sampled signals carry ``time_offset`` and ``sample_interval`` instead of a time axis. The
file is written under a temporary name in another folder and renamed into place, so a
reader (or the catalog's scan) never sees part of one; a kill leaves only the temporary
file, which the next run removes.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import platform
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from insitu.ingest.shot import Shot

__all__ = [
    "PIPELINE_MAJOR",
    "ProductHeader",
    "ProductInfo",
    "latest_product",
    "product_id",
    "read_header",
    "write_product",
]

# The package's version (not 'from insitu import __version__': the top level names compute).
__version__ = importlib.metadata.version("insitu")
PIPELINE_MAJOR = __version__.split(".")[0]
_BLOCK = 1 << 20  # samples per block: memory does not grow with the file
_CHUNK = 1 << 18  # samples per stored chunk


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """Where a product is and what identifies it."""

    path: Path
    product_id: str
    version: int


@dataclass(frozen=True, slots=True)
class ProductHeader:
    """What a written product says of itself (read by :func:`read_header`)."""

    path: Path
    product_id: str
    version: int
    acquired_at: datetime
    history: str
    calibrations: dict[str, tuple[str, int, str]]  # variable: (id, version, sha256)

    def signals(self) -> set[str]:
        """The signals its calibrations calibrate (the ids' part before '/')."""
        return {cal_id.split("/", 1)[0] for cal_id, _, _ in self.calibrations.values()}


_VERSION_DIR = re.compile(r"v(\d+)")


def latest_product(output: Path, shot: str) -> Path | None:
    """The product file of the highest version of ``shot`` under ``output``, if any."""
    versions = [
        int(m.group(1))
        for d in (output / shot).glob("v*")
        if (m := _VERSION_DIR.fullmatch(d.name)) and (d / f"{shot}_{d.name}.nc").is_file()
    ]
    if not versions:
        return None
    k = max(versions)
    return output / shot / f"v{k}" / f"{shot}_v{k}.nc"


def read_header(path: Path) -> ProductHeader:
    """The identity, time, history and calibrations of the product at ``path``."""
    import netCDF4

    from insitu.ingest.calibration import parse_time

    with netCDF4.Dataset(path) as nc:
        cals = {
            name: (
                str(var.getncattr("calibration_id")),
                int(var.getncattr("calibration_version")),
                str(var.getncattr("calibration_sha256")),
            )
            for name, var in nc.variables.items()
            if "calibration_id" in var.ncattrs()
        }
        return ProductHeader(
            path=path,
            product_id=str(nc.getncattr("product_id")),
            version=int(nc.getncattr("product_version")),
            acquired_at=parse_time(str(nc.getncattr("acquired_at")).replace("Z", "+00:00")),
            history=str(nc.getncattr("history")),
            calibrations=cals,
        )


def product_id(raw_sha256: str, shot: Shot) -> str:
    """sha256 of the raw hash, the calibrations' hashes, the configuration id and the
    pipeline's major version (spec 5.5)."""
    import hashlib

    parts = [raw_sha256, *sorted(c.sha256 for c in shot.calibrations())]
    parts += [shot.configuration_id or "", PIPELINE_MAJOR]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _history(args: str, previous: str | None) -> str:
    from insitu.ingest.store import now_iso

    line = f"{now_iso()} {getpass.getuser()} insitu-ingest {__version__} {args}"
    return f"{previous}\n{line}" if previous else line


def write_product(
    shot: Shot,
    *,
    output: Path,
    tmp: Path,
    version: int,
    raw_sha256: str,
    pipeline: str,
    attributes: dict[str, str],
    args: str,
    started: str,
    previous_history: str | None = None,
) -> ProductInfo:
    """Write ``shot`` as version ``version`` under ``output`` (temporary file in ``tmp``)."""
    import netCDF4

    from insitu.ingest.store import now_iso

    pid = product_id(raw_sha256, shot)
    final = output / shot.shot_id / f"v{version}" / f"{shot.shot_id}_v{version}.nc"
    part = tmp / f"{shot.shot_id}_v{version}.{uuid.uuid4().hex}.nc"
    ingested_at = now_iso()
    try:
        with netCDF4.Dataset(part, "w", format="NETCDF4") as nc:
            nc.setncatts(
                {
                    "Conventions": "CF-1.11",
                    "title": attributes.get("title", f"{pipeline} shot {shot.shot_id}"),
                    "institution": attributes.get("institution", ""),
                    "source": attributes.get("source", f"{shot.raw_format} acquisition"),
                    "references": attributes.get("references", ""),
                    "comment": attributes.get("comment", ""),
                    **{k: v for k, v in attributes.items() if k not in _CF_GLOBAL},
                    "history": _history(args, previous_history),
                    "shot_id": shot.shot_id,
                    "experiment_id": str(shot.root.get("experiment_id", "")),
                    "operator": shot.operator,
                    "acquired_at": shot.acquired_at.isoformat().replace("+00:00", "Z"),
                    "ingested_at": ingested_at,
                    "raw_sha256": raw_sha256,
                    "raw_format": shot.raw_format,
                    "configuration_id": shot.configuration_id or "",
                    "configuration": json.dumps(shot.configuration, sort_keys=True)
                    if shot.configuration is not None
                    else "",
                    "pipeline": pipeline,
                    "pipeline_version": __version__,
                    "product_version": np.int32(version),
                    "product_id": pid,
                    "raw_properties": json.dumps(shot.root, sort_keys=True, default=str),
                    "ingest_warnings": json.dumps(shot.warnings),
                }
            )
            _write_signals(nc, shot)
            nc.setncattr(
                "provenance",
                json.dumps(
                    _provenance(shot, raw_sha256, pid, pipeline, started, now_iso()),
                    sort_keys=True,
                ),
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return ProductInfo(final, pid, version)


_CF_GLOBAL = ("title", "institution", "source", "references", "comment", "history")


def _write_signals(nc: Any, shot: Shot) -> None:
    sizes: dict[str, int] = {}
    for s in shot.signals:
        n = int(np.prod(s.channel.shape, dtype=np.int64))
        if sizes.setdefault(s.dim, n) != n:  # same group name, other length: own dim
            sizes[s.name + "_sample"] = n
    for dim, n in sizes.items():
        nc.createDimension(dim, n)
    if shot.time_values is not None:
        dim = shot.signals[0].dim if shot.signals else "row"
        t = nc.createVariable("time", "f8", (dim,))
        t.setncatts({"units": "s", "long_name": "time since acquisition start"})
        t[:] = shot.time_values
    for s in shot.signals:
        n = int(np.prod(s.channel.shape, dtype=np.int64))
        dim = s.dim if sizes[s.dim] == n else s.name + "_sample"
        cal = s.calibration
        dtype = "f8" if cal is not None else s.channel.dtype
        var = nc.createVariable(
            s.name,
            dtype,
            (dim,),
            zlib=True,
            complevel=1,
            shuffle=True,
            chunksizes=(max(1, min(n, _CHUNK)),),
        )
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
        var.setncatts(attrs)
        for lo in range(0, n, _BLOCK):
            hi = min(lo + _BLOCK, n)
            raw = s.channel.read_flat(lo, hi)
            var[lo:hi] = cal.apply(raw * s.factor if s.factor != 1.0 else raw) if cal else raw


def _provenance(
    shot: Shot, raw_sha256: str, pid: str, pipeline: str, started: str, ended: str
) -> dict[str, Any]:
    """A PROV-JSON document: the product was generated by the ingest run, which used the
    raw file, the calibrations and the configuration, on behalf of the operator."""
    entities: dict[str, Any] = {
        f"raw:{raw_sha256}": {"prov:type": "raw file", "format": shot.raw_format},
        f"product:{pid}": {"prov:type": "product", "shot_id": shot.shot_id},
    }
    used = [f"raw:{raw_sha256}"]
    for c in shot.calibrations():
        key = f"calibration:{c.sha256}"
        entities[key] = {"prov:type": "calibration", "id": c.id, "version": c.version}
        used.append(key)
    if shot.configuration_id:
        key = f"configuration:{shot.configuration_id}"
        entities[key] = {"prov:type": "configuration"}
        used.append(key)
    run = f"run:{pipeline}:{started}"
    return {
        "prefix": {"insitu": "urn:insitu:"},
        "entity": entities,
        "activity": {
            run: {
                "prov:startTime": started,
                "prov:endTime": ended,
                "host": platform.node(),
                "pipeline": pipeline,
            }
        },
        "agent": {
            f"operator:{shot.operator}": {"prov:type": "prov:Person"},
            f"software:insitu-{__version__}": {
                "prov:type": "prov:SoftwareAgent",
                "account": getpass.getuser(),
            },
        },
        "used": {f"_:u{i}": {"prov:activity": run, "prov:entity": e} for i, e in enumerate(used)},
        "wasGeneratedBy": {"_:g0": {"prov:entity": f"product:{pid}", "prov:activity": run}},
        "wasAssociatedWith": {
            "_:a0": {"prov:activity": run, "prov:agent": f"operator:{shot.operator}"},
            "_:a1": {"prov:activity": run, "prov:agent": f"software:insitu-{__version__}"},
        },
    }

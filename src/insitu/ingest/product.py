"""Write a shot's product: calibrated signals, stamped with who, when, what and how.

One product per shot and version, ``<output>/<shot>/v<k>/<shot>_v<k>.zarr`` (the catalog's
``shots`` template): a Zarr store (format 3, consolidated metadata, chunks of about 1 MB
compressed, shuffle + zstd; :mod:`insitu.ingest.zarrproduct`), or with the pipeline's
``product_format = "netcdf4"`` a NetCDF-4 file ``<shot>_v<k>.nc`` chunked along samples,
shuffled and deflated. Both carry the same attributes. Uniformly sampled signals carry
``time_offset`` and ``sample_interval`` instead of a time axis. The product is written
under a temporary name in another folder and renamed into place, so a reader (or the
catalog's scan) never sees part of one; a kill leaves only the temporary store or file,
which the next run removes.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import platform
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from insitu.ingest.layout import (
    TIME_ATTRS,
    Summary,
    calibrated,
    signal_attrs,
    signal_dims,
    signal_dtype,
)
from insitu.ingest.shot import Shot

__all__ = [
    "PIPELINE_MAJOR",
    "PRODUCT_FORMATS",
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
_CHUNK = 1 << 18  # samples per stored chunk (NetCDF-4)
PRODUCT_FORMATS = {"zarr": ".zarr", "netcdf4": ".nc"}  # product_format: its suffix


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """Where a product is and what identifies it."""

    path: Path
    product_id: str
    version: int
    # per signal: min, max, mean (NaN left out), n, nan, of the values as stored
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    """The product (Zarr store or NetCDF-4 file) of the highest version of ``shot`` under
    ``output``, if any."""
    found: dict[int, Path] = {}
    for d in (output / shot).glob("v*"):
        m = _VERSION_DIR.fullmatch(d.name)
        if m is None:
            continue
        for suffix in PRODUCT_FORMATS.values():
            path = d / f"{shot}_{d.name}{suffix}"
            if path.is_file() or (path / "zarr.json").is_file():
                found[int(m.group(1))] = path
    return found[max(found)] if found else None


def read_header(path: Path) -> ProductHeader:
    """The identity, time, history and calibrations of the product at ``path`` (read
    through its format reader: a Zarr store's consolidated metadata, a NetCDF-4 header)."""
    from insitu.formats import reader_for
    from insitu.ingest.calibration import parse_time

    with reader_for(str(path)).header(str(path)) as header:
        cals = {
            var.name: (
                str(var.attrs["calibration_id"]),
                int(var.attrs["calibration_version"]),
                str(var.attrs["calibration_sha256"]),
            )
            for var in header.variables
            if "calibration_id" in var.attrs
        }
        attrs = header.global_attrs
        return ProductHeader(
            path=path,
            product_id=str(attrs["product_id"]),
            version=int(attrs["product_version"]),
            acquired_at=parse_time(str(attrs["acquired_at"]).replace("Z", "+00:00")),
            history=str(attrs["history"]),
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
    product_format: str = "zarr",
    summarize: bool = False,
    check: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> ProductInfo:
    """Write ``shot`` as version ``version`` under ``output`` (a Zarr store, or a NetCDF-4
    file with ``product_format="netcdf4"``), made in ``tmp`` and renamed into place.

    With ``summarize`` (or a ``check``) the values are summed up on the way
    (:attr:`ProductInfo.summary`: what :func:`insitu.ingest.shot.summarize` gives, without
    a second pass over the raw file); ``check(summary)`` runs once they are all written and
    before the rename: if it raises (a NaN policy, say), nothing is published and the
    temporary product is removed."""
    from insitu.ingest.store import now_iso

    if product_format not in PRODUCT_FORMATS:
        raise ValueError(f"product_format {product_format!r}: one of {', '.join(PRODUCT_FORMATS)}")
    suffix = PRODUCT_FORMATS[product_format]
    pid = product_id(raw_sha256, shot)
    name = f"{shot.shot_id}_v{version}"
    final = output / shot.shot_id / f"v{version}" / f"{name}{suffix}"
    part = tmp / f"{name}.{uuid.uuid4().hex}{suffix}"
    attrs = _global_attrs(
        shot, raw_sha256, pid, version, pipeline, attributes, _history(args, previous_history)
    )

    def provenance() -> dict[str, str]:  # the run's end: called once the data is written
        prov = _provenance(shot, raw_sha256, pid, pipeline, started, now_iso())
        return {"provenance": json.dumps(prov, sort_keys=True)}

    summary = Summary(shot, enabled=summarize or check is not None)
    try:
        if product_format == "zarr":
            from insitu.ingest.zarrproduct import write_zarr

            write_zarr(part, shot, attrs, provenance, summary)
        else:
            _write_netcdf(part, shot, attrs, provenance, summary)
        if check is not None:
            check(summary.result())
        final.parent.mkdir(parents=True, exist_ok=True)
        _publish(part, final)
    finally:
        if part.is_dir():
            shutil.rmtree(part, ignore_errors=True)
        else:
            part.unlink(missing_ok=True)
    return ProductInfo(final, pid, version, summary.result())


def _publish(part: Path, final: Path) -> None:
    """Rename ``part`` to ``final``. A store left at ``final`` by a run killed before it
    recorded it (a directory: a rename does not replace it) is first moved aside beside
    ``part``, then removed: readers see the old store or the new one, or for a moment none,
    never part of one."""
    if final.is_dir():
        old = part.with_name(part.name + ".old")
        os.replace(final, old)
        os.replace(part, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(part, final)


_CF_GLOBAL = ("title", "institution", "source", "references", "comment", "history")


def _global_attrs(
    shot: Shot,
    raw_sha256: str,
    pid: str,
    version: int,
    pipeline: str,
    attributes: dict[str, str],
    history: str,
) -> dict[str, Any]:
    """CF, NUG and platform global attributes (spec 5.4), ``provenance`` apart."""
    from insitu.ingest.store import now_iso

    return {
        "Conventions": "CF-1.11",
        "title": attributes.get("title", f"{pipeline} shot {shot.shot_id}"),
        "institution": attributes.get("institution", ""),
        "source": attributes.get("source", f"{shot.raw_format} acquisition"),
        "references": attributes.get("references", ""),
        "comment": attributes.get("comment", ""),
        **{k: v for k, v in attributes.items() if k not in _CF_GLOBAL},
        "history": history,
        "shot_id": shot.shot_id,
        "experiment_id": str(shot.root.get("experiment_id", "")),
        "operator": shot.operator,
        "acquired_at": shot.acquired_at.isoformat().replace("+00:00", "Z"),
        "ingested_at": now_iso(),
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


def _write_netcdf(
    part: Path, shot: Shot, attrs: dict[str, Any], finish: Any, summary: Summary
) -> None:
    """One NetCDF-4 file: chunked along samples, shuffled and deflated (level 1)."""
    import netCDF4

    with netCDF4.Dataset(part, "w", format="NETCDF4") as nc:
        nc.setncatts(attrs)
        sizes, dims = signal_dims(shot)
        for dim, n in sizes.items():
            nc.createDimension(dim, n)
        if shot.time_values is not None:
            dim = shot.signals[0].dim if shot.signals else "row"
            t = nc.createVariable("time", "f8", (dim,))
            t.setncatts(TIME_ATTRS)
            t[:] = shot.time_values
        for s in shot.signals:
            n = int(np.prod(s.channel.shape, dtype=np.int64))
            var = nc.createVariable(
                s.name,
                signal_dtype(s),
                (dims[s.name],),
                zlib=True,
                complevel=1,
                shuffle=True,
                chunksizes=(max(1, min(n, _CHUNK)),),
            )
            var.setncatts(signal_attrs(s))
            for lo in range(0, n, _BLOCK):
                hi = min(lo + _BLOCK, n)
                values = calibrated(s, s.channel.read_flat(lo, hi))
                summary.add(s.name, values)
                var[lo:hi] = values
        nc.setncatts(finish())


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

"""Versioned calibrations: raw counts or volts to physical values, each valid for a period.

One YAML document per definition (spec 5.2)::

    id: langmuir_current/probe-A      # logical signal / instrument instance
    version: 3
    valid_from: 2026-01-12T00:00:00Z  # half-open [valid_from, valid_to), UTC
    valid_to: null
    input:  {units: V}
    output: {units: A, long_name: Langmuir probe current}
    kind: polynomial                  # polynomial | lut | identity
    coefficients: [0.0, 0.02]         # y = c0 + c1*x + ...
    # lut: x: [...strictly increasing...], y: [...], extrapolation: error | clip | linear
    supersedes: 2                     # optional

Definitions are checked when loaded (:func:`load_calibrations`), before any shot: a bad one
stops the run with a :class:`~insitu.errors.ConfigError`. For a signal at a time exactly one
definition not superseded must be valid: none is ``E_CAL_MISSING``, several
``E_CAL_AMBIGUOUS`` (:meth:`Calibrations.resolve`). The identity of a definition is the
sha256 of its canonical JSON.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from insitu.errors import ConfigError, IngestError

__all__ = ["Calibration", "Calibrations", "load_calibrations", "parse_time", "unit_factor"]

Array = np.ndarray[Any, Any]


def parse_time(value: Any) -> datetime:
    """A UTC datetime from an ISO 8601 string or datetime (naive means UTC)."""
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@functools.cache
def _units() -> Any:
    import pint

    return pint.UnitRegistry()


def unit_factor(source: str, target: str) -> float:
    """The factor from ``source`` units to ``target`` units (``ValueError`` if either does
    not parse or they are not convertible)."""
    try:
        q = _units().Quantity(1.0, source)
        return float(q.to(target).magnitude)
    except Exception as exc:
        raise ValueError(f"units {source!r} -> {target!r}: {exc}") from exc


def check_units(units: str) -> None:
    """``ValueError`` unless ``units`` parses as a unit."""
    try:
        _units().Unit(units)
    except Exception as exc:
        raise ValueError(f"unknown unit {units!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Calibration:
    """One calibration definition, checked."""

    id: str
    version: int
    valid_from: datetime
    valid_to: datetime | None
    kind: str
    coefficients: tuple[float, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    extrapolation: str
    input_units: str | None
    output_units: str | None
    long_name: str | None
    standard_name: str | None
    supersedes: int | None
    sha256: str

    @property
    def signal(self) -> str:
        """The logical signal it calibrates (the id's part before '/')."""
        return self.id.split("/", 1)[0]

    def covers(self, t: datetime) -> bool:
        """Whether it is valid at ``t``."""
        return self.valid_from <= t and (self.valid_to is None or t < self.valid_to)

    def apply(self, raw: Array) -> Array:
        """Calibrated float64 values of ``raw`` (already in the input units)."""
        x = np.asarray(raw, dtype=np.float64)
        if self.kind == "identity":
            return x
        if self.kind == "polynomial":
            y = np.full_like(x, self.coefficients[-1])
            for c in self.coefficients[-2::-1]:  # Horner
                y *= x
                y += c
            return y
        xs, ys = np.asarray(self.x), np.asarray(self.y)
        outside = (x < xs[0]) | (x > xs[-1])
        if self.extrapolation == "error" and outside.any():
            raise IngestError(
                "E_CALIBRATION",
                "transform",
                f"calibration {self.id} v{self.version}: {int(outside.sum())} values outside "
                f"its table [{xs[0]}, {xs[-1]}].",
                "Extend the lookup table or set extrapolation to clip or linear.",
            )
        y = np.asarray(np.interp(x, xs, ys), dtype=np.float64)
        if self.extrapolation == "linear" and outside.any():
            lo, hi = x < xs[0], x > xs[-1]
            y[lo] = ys[0] + (x[lo] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
            y[hi] = ys[-1] + (x[hi] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return y

    def record(self) -> dict[str, Any]:
        """What a product records of it."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}


def _definition(doc: dict[str, Any], where: str) -> Calibration:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"Calibration {doc.get('id', '?')!r} in {where}: {what}.")

    for key in ("id", "version", "valid_from", "kind"):
        if key not in doc:
            raise bad(f"no {key!r}")
    kind = str(doc["kind"])
    if kind not in ("polynomial", "lut", "identity"):
        raise bad(f"kind {kind!r} is not polynomial, lut or identity")
    coefficients = tuple(float(c) for c in doc.get("coefficients") or ())
    x = tuple(float(v) for v in doc.get("x") or ())
    y = tuple(float(v) for v in doc.get("y") or ())
    if kind == "polynomial" and (not coefficients or not np.all(np.isfinite(coefficients))):
        raise bad("a polynomial needs finite coefficients")
    if kind == "lut":
        if len(x) < 2 or len(x) != len(y) or not np.all(np.isfinite(x + y)):
            raise bad("a lookup table needs finite x and y of the same length, at least 2")
        if not np.all(np.diff(x) > 0):
            raise bad("the lookup table's x must be strictly increasing")
    extrapolation = str(doc.get("extrapolation", "error"))
    if extrapolation not in ("error", "clip", "linear"):
        raise bad(f"extrapolation {extrapolation!r} is not error, clip or linear")
    valid_from = parse_time(doc["valid_from"])
    valid_to = parse_time(doc["valid_to"]) if doc.get("valid_to") else None
    if valid_to is not None and valid_to <= valid_from:
        raise bad("valid_to is not after valid_from")
    inp, out = doc.get("input") or {}, doc.get("output") or {}
    for units in (inp.get("units"), out.get("units")):
        if units:
            try:
                check_units(str(units))
            except ValueError as exc:
                raise bad(str(exc)) from exc
    canonical = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return Calibration(
        id=str(doc["id"]),
        version=int(doc["version"]),
        valid_from=valid_from,
        valid_to=valid_to,
        kind=kind,
        coefficients=coefficients,
        x=x,
        y=y,
        extrapolation=extrapolation,
        input_units=inp.get("units"),
        output_units=out.get("units"),
        long_name=out.get("long_name"),
        standard_name=out.get("standard_name"),
        supersedes=int(doc["supersedes"]) if doc.get("supersedes") is not None else None,
        sha256=hashlib.sha256(canonical.encode()).hexdigest(),
    )


class Calibrations:
    """A checked set of calibration definitions."""

    def __init__(self, definitions: list[Calibration]) -> None:
        seen: set[tuple[str, int]] = set()
        for c in definitions:
            if (c.id, c.version) in seen:
                raise ConfigError(f"Calibration {c.id} version {c.version} is defined twice.")
            seen.add((c.id, c.version))
        superseded = {(c.id, c.supersedes) for c in definitions if c.supersedes is not None}
        self.all = definitions
        self.active = [c for c in definitions if (c.id, c.version) not in superseded]

    def signals(self) -> set[str]:
        """Signals that have at least one definition."""
        return {c.signal for c in self.all}

    def resolve(self, signal: str, t: datetime) -> Calibration:
        """The one active definition for ``signal`` valid at ``t``."""
        found = [c for c in self.active if c.signal == signal and c.covers(t)]
        if not found:
            raise IngestError(
                "E_CAL_MISSING",
                "resolve",
                f"no calibration of signal {signal!r} is valid at {t.isoformat()}.",
                "Add a calibration definition covering that time, then "
                "'insitu ingest retry' the file.",
            )
        if len(found) > 1:
            names = ", ".join(f"{c.id} v{c.version}" for c in found)
            raise IngestError(
                "E_CAL_AMBIGUOUS",
                "resolve",
                f"calibrations {names} of signal {signal!r} are all valid at {t.isoformat()}.",
                "End the validity of all but one (or mark one 'supersedes'), then "
                "'insitu ingest retry' the file.",
            )
        return found[0]


def load_calibrations(path: str | Path | None) -> Calibrations:
    """The definitions of the YAML file at ``path`` (none if ``None``), checked."""
    if path is None:
        return Calibrations([])
    import yaml  # type: ignore[import-untyped]

    try:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read calibrations {path}: {exc}") from exc
    return Calibrations([_definition(d, str(path)) for d in docs])

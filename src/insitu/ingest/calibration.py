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
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from insitu.errors import ConfigError, IngestError

__all__ = [
    "Calibration",
    "Calibrations",
    "canonical_json",
    "check_coverage",
    "load_calibrations",
    "parse_definition",
    "parse_time",
    "read_yaml",
    "unit_factor",
]

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


def canonical_json(doc: Any) -> str:
    """The canonical JSON of a document (sorted keys, no spaces; times as ISO strings): its
    sha256 is a definition's identity, and it is what the catalog database stores."""
    return json.dumps(doc, sort_keys=True, default=_iso, separators=(",", ":"))


def _iso(value: Any) -> str:
    return str(value)


def parse_definition(doc: Any, where: str) -> Calibration:
    """One definition of ``doc`` (a mapping, as YAML or JSON gives it), checked:
    :class:`~insitu.errors.ConfigError` naming the bad value and the fix."""
    if not isinstance(doc, dict):
        raise ConfigError(
            f"Calibration in {where} is {type(doc).__name__} {doc!r}, not a mapping: write "
            "one mapping per YAML document (id, version, valid_from, kind, ...)."
        )

    def bad(what: str) -> ConfigError:
        return ConfigError(f"Calibration {doc.get('id', '?')!r} in {where}: {what}.")

    for key in ("id", "version", "valid_from", "kind"):
        if key not in doc:
            raise bad(f"no {key!r}; add it (see docs/ingest.md, Calibrations)")
    if not str(doc["id"]).strip():
        raise bad("the id is empty; write 'SIGNAL/INSTRUMENT', e.g. 'langmuir_current/probe-A'")
    try:
        version = int(doc["version"])
    except (TypeError, ValueError):
        version = 0
    if version < 1 or str(version) != str(doc["version"]).strip():
        raise bad(f"version {doc['version']!r} is not a whole number >= 1; write e.g. 'version: 1'")
    kind = str(doc["kind"])
    if kind not in ("polynomial", "lut", "identity"):
        raise bad(f"kind {kind!r} is not polynomial, lut or identity")
    try:
        coefficients = tuple(float(c) for c in doc.get("coefficients") or ())
        x = tuple(float(v) for v in doc.get("x") or ())
        y = tuple(float(v) for v in doc.get("y") or ())
    except (TypeError, ValueError) as exc:
        raise bad(f"coefficients, x and y must be lists of numbers ({exc})") from exc
    if kind == "polynomial" and (not coefficients or not np.all(np.isfinite(coefficients))):
        raise bad(
            f"coefficients {list(coefficients)} are not a non-empty list of finite numbers; "
            "write e.g. 'coefficients: [0.0, 0.02]' (y = c0 + c1*x + ...)"
        )
    if kind == "lut":
        if len(x) < 2 or len(x) != len(y) or not np.all(np.isfinite(x + y)):
            raise bad(
                f"a lookup table needs finite x and y of the same length, at least 2 (x has "
                f"{len(x)} values, y {len(y)})"
            )
        steps = np.diff(x)
        if not np.all(steps > 0):
            i = int(np.argmax(steps <= 0))
            raise bad(
                f"the lookup table's x must be strictly increasing, but x[{i}] = {x[i]} is "
                f"followed by x[{i + 1}] = {x[i + 1]}; sort the table (x with its y) and drop "
                "repeated x"
            )
    extrapolation = str(doc.get("extrapolation", "error"))
    if extrapolation not in ("error", "clip", "linear"):
        raise bad(f"extrapolation {extrapolation!r} is not error, clip or linear")
    try:
        valid_from = parse_time(doc["valid_from"])
        valid_to = parse_time(doc["valid_to"]) if doc.get("valid_to") else None
    except (TypeError, ValueError) as exc:
        raise bad(
            f"a validity time is not ISO 8601 ({exc}); write e.g. 2026-01-12T00:00:00Z"
        ) from exc
    if valid_to is not None and valid_to <= valid_from:
        raise bad(
            f"valid_to {valid_to.isoformat()} is not after valid_from {valid_from.isoformat()}; "
            "the validity is half-open [valid_from, valid_to), valid_to null for open-ended"
        )
    inp, out = doc.get("input") or {}, doc.get("output") or {}
    for units in (inp.get("units"), out.get("units")):
        if units:
            try:
                check_units(str(units))
            except ValueError as exc:
                raise bad(f"{exc}; write a unit pint/UDUNITS knows (e.g. V, mA, Pa)") from exc
    if kind == "identity" and inp.get("units") and out.get("units"):
        try:
            unit_factor(str(inp["units"]), str(out["units"]))
        except ValueError as exc:
            raise bad(
                f"input units {inp['units']!r} cannot be converted to output units "
                f"{out['units']!r} by an identity; use convertible units or a polynomial"
            ) from exc
    supersedes = doc.get("supersedes")
    if supersedes is not None and (not str(supersedes).isdigit() or int(supersedes) >= version):
        raise bad(f"supersedes {supersedes!r} is not an earlier version (below {version})")
    return Calibration(
        id=str(doc["id"]),
        version=version,
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
        supersedes=int(supersedes) if supersedes is not None else None,
        sha256=hashlib.sha256(canonical_json(doc).encode()).hexdigest(),
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
    return Calibrations([parse_definition(d, str(path)) for d in read_yaml(path)])


def _span(c: Calibration) -> str:
    end = c.valid_to.isoformat() if c.valid_to else "open-ended"
    return f"{c.id} v{c.version} [{c.valid_from.isoformat()}, {end})"


def check_coverage(definitions: list[Calibration], signals: set[str]) -> None:
    """:class:`~insitu.errors.ConfigError` when, for one of ``signals``, the active (not
    superseded) definitions overlap (a shot would be ``E_CAL_AMBIGUOUS``) or leave a gap
    between two of them (``E_CAL_MISSING``), naming both and what to change."""
    active = Calibrations(definitions).active
    for signal in sorted(signals):
        spans = sorted((c for c in active if c.signal == signal), key=lambda c: c.valid_from)
        for a, b in itertools.pairwise(spans):
            if a.valid_to is None or a.valid_to > b.valid_from:
                raise ConfigError(
                    f"Calibrations {_span(a)} and {_span(b)} of signal {signal!r} overlap "
                    f"from {b.valid_from.isoformat()}: a shot then would have two. End "
                    f"{a.id} v{a.version} at {b.valid_from.isoformat()} (a new version of "
                    f"it with 'supersedes: {a.version}' and that valid_to), or give "
                    f"{b.id} v{b.version} 'supersedes: {a.version}' if it replaces it."
                )
            if a.valid_to < b.valid_from:
                raise ConfigError(
                    f"Calibrations of signal {signal!r} leave a gap from "
                    f"{a.valid_to.isoformat()} to {b.valid_from.isoformat()} ({_span(a)}, "
                    f"then {_span(b)}): shots then would have none. Start {b.id} "
                    f"v{b.version} at {a.valid_to.isoformat()}, or cover the gap."
                )


def read_yaml(path: str | Path) -> list[Any]:
    """The documents of a YAML (or JSON) file, empty ones left out."""
    import yaml  # type: ignore[import-untyped]

    try:
        with open(path, encoding="utf-8") as fh:
            return [d for d in yaml.safe_load_all(fh) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}. Check the path and its YAML.") from exc

"""Parse and validate a raw file into a :class:`Shot`: who, when, which signals, how to
calibrate each (spec 5.1 stages 3-5). Errors are :class:`~insitu.errors.IngestError` s
with the code of the specification's bad-input table."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from insitu.errors import DataError, IncompleteFile, IngestError
from insitu.formats import Channel, ChannelFile, ChannelReader, CsvDialect, CsvReader, TdmsReader
from insitu.ingest.calibration import Calibration, Calibrations, check_units, parse_time
from insitu.settings import PipelineSettings

__all__ = ["Shot", "Signal", "check_nan", "open_shot", "summarize"]

_UNIT_KEYS = ("units", "unit_string", "NI_UnitDescription")


@dataclass(frozen=True, slots=True)
class Signal:
    """One variable of a product: a raw channel, its time base and its calibration
    (``None``: stored uncalibrated, with a warning)."""

    name: str
    channel: Channel
    dim: str
    raw_units: str | None
    sample_interval: float | None
    time_offset: float
    calibration: Calibration | None
    factor: float = 1.0  # raw units to the calibration's input units


@dataclass(slots=True)
class Shot:
    """A validated raw file: its identity, context and signals."""

    shot_id: str
    operator: str
    acquired_at: datetime
    root: dict[str, Any]
    signals: list[Signal]
    raw_format: str
    warnings: list[str] = field(default_factory=list)
    configuration: dict[str, Any] | None = None
    configuration_id: str | None = None
    time_values: np.ndarray[Any, Any] | None = None  # CSV with irregular sample times

    def calibrations(self) -> list[Calibration]:
        """The calibrations used, once each."""
        seen = {s.calibration.sha256: s.calibration for s in self.signals if s.calibration}
        return sorted(seen.values(), key=lambda c: (c.id, c.version))


def _fail(code: str, stage: str, message: str, action: str) -> IngestError:
    return IngestError(code, stage, message, action)


def _reader(p: PipelineSettings) -> ChannelReader:
    if p.parser == "csv":
        dialect = CsvDialect(
            delimiter=p.delimiter, decimal=p.decimal, skip_rows=p.skip_rows, units_row=p.units_row
        )
        return CsvReader(dialect)
    return TdmsReader()


@contextmanager
def open_shot(
    raw: Path,
    p: PipelineSettings,
    calibrations: Calibrations,
    manifest: dict[str, Any] | None = None,
) -> Iterator[Shot]:
    """The validated shot of raw file ``raw``, its channels open while the context lasts."""
    reader = _reader(p)
    try:
        with reader.open_channels(str(raw)) as cf:
            yield _validate(cf, p, calibrations, manifest, raw)
    except IncompleteFile as exc:
        raise _fail(
            "E_INCOMPLETE", "parse", str(exc), "Copy the complete file to the inbox again."
        ) from exc
    except IngestError:
        raise
    except DataError as exc:
        raise _fail(
            "E_FORMAT",
            "parse",
            str(exc),
            f"Check that the file is {p.parser.upper()} and the pipeline's parser settings.",
        ) from exc


def _validate(
    cf: ChannelFile,
    p: PipelineSettings,
    calibrations: Calibrations,
    manifest: dict[str, Any] | None,
    raw: Path,
) -> Shot:
    if not cf.channels:
        raise _fail(
            "E_INCOMPLETE",
            "validate",
            f"{raw.name} holds no channels (empty or header only).",
            "Copy the complete file again.",
        )
    root = dict(cf.attrs)
    if manifest and manifest.get("shot_id") is not None:
        root.setdefault(p.shot_property, manifest["shot_id"])
    for key in (p.shot_property, p.start_property, p.operator_property):
        if root.get(key) in (None, ""):
            raise _fail(
                "E_SCHEMA",
                "validate",
                f"root property {key!r} is missing.",
                f"Have the acquisition write {key!r} (or give it in the manifest), then "
                "copy the file again.",
            )
    try:
        acquired_at = parse_time(root[p.start_property])
    except ValueError as exc:
        raise _fail(
            "E_SCHEMA",
            "validate",
            f"root property {p.start_property!r} = {root[p.start_property]!r} is no time.",
            "Write the acquisition start as ISO 8601 UTC.",
        ) from exc
    shot = Shot(
        str(root[p.shot_property]),
        str(root[p.operator_property]),
        acquired_at,
        root,
        [],
        p.parser,
    )
    _check_counts(cf, manifest)
    channels = dict(cf.channels)
    dt, t0 = p.sample_interval, 0.0
    if p.parser == "csv" and p.time_column:
        if p.time_column not in channels:
            raise _fail(
                "E_FORMAT",
                "validate",
                f"no time column {p.time_column!r}; columns: {', '.join(channels)}.",
                "Fix the pipeline's time_column or the file's header.",
            )
        times = channels.pop(p.time_column).read_flat(0, channels_len(cf, p.time_column))
        steps = np.diff(times)
        if len(times) > 1 and np.allclose(steps, steps[0], rtol=1e-6, atol=0):
            dt, t0 = float(steps[0]), float(times[0])
        else:
            shot.time_values = np.asarray(times, dtype=np.float64)
            dt = None
    for ch in channels.values():
        shot.signals.append(_signal(ch, p, calibrations, shot, dt, t0))
    return shot


def channels_len(cf: ChannelFile, name: str) -> int:
    """Number of values of channel ``name``."""
    return int(np.prod(cf.channels[name].shape, dtype=np.int64))


def _check_counts(cf: ChannelFile, manifest: dict[str, Any] | None) -> None:
    lengths: dict[str, set[int]] = {}
    for ch in cf.channels.values():
        group = ch.source.rsplit("/", 1)[0] if "/" in ch.source else ""
        lengths.setdefault(group, set()).add(int(np.prod(ch.shape, dtype=np.int64)))
        want = (manifest or {}).get("samples", {})
        expected = want.get(ch.source, want.get(ch.name))
        got = int(np.prod(ch.shape, dtype=np.int64))
        if expected is not None and int(expected) != got:
            raise _fail(
                "E_INCOMPLETE",
                "validate",
                f"channel {ch.source!r} has {got} samples; the manifest says {expected}.",
                "The file was cut short: copy the complete file again.",
            )
    for group, sizes in lengths.items():
        if group and len(sizes) > 1:
            raise _fail(
                "E_INCOMPLETE",
                "validate",
                f"channels of group {group!r} have different lengths {sorted(sizes)}.",
                "The file was cut short: copy the complete file again.",
            )


def _signal(
    ch: Channel,
    p: PipelineSettings,
    calibrations: Calibrations,
    shot: Shot,
    dt: float | None,
    t0: float,
) -> Signal:
    props = ch.properties
    raw_units = next((str(props[k]) for k in _UNIT_KEYS if props.get(k)), None)
    if raw_units:
        try:
            check_units(raw_units)
        except ValueError as exc:
            raise _fail(
                "E_UNITS",
                "validate",
                f"channel {ch.source!r}: {exc}.",
                "Write a unit pint/UDUNITS knows (e.g. 'V', 'A', 'mbar'), or map it.",
            ) from exc
    if "wf_increment" in props:
        dt = float(props["wf_increment"])
        t0 = float(props.get("wf_start_offset", 0.0))
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        raise _fail(
            "E_SCHEMA",
            "validate",
            f"channel {ch.source!r} has sample interval {dt}.",
            "The interval between samples must be finite and > 0.",
        )
    name = p.channels.get(ch.source) or p.channels.get(ch.name)
    if name is None:
        if p.unmapped == "error":
            raise _fail(
                "E_UNMAPPED_CHANNEL",
                "resolve",
                f"channel {ch.source!r} is not in the pipeline's channel map.",
                "Add it to [ingest.pipelines.NAME.channels] or set unmapped = 'raw-only'.",
            )
        shot.warnings.append(f"channel {ch.source!r} is not mapped: stored raw only")
        return Signal(_safe(ch.name), ch, _safe(ch.dims[0]), raw_units, dt, t0, None)
    cal = calibrations.resolve(name, shot.acquired_at)
    factor = 1.0
    if cal.input_units and raw_units and cal.input_units != raw_units:
        from insitu.ingest.calibration import unit_factor

        try:
            factor = unit_factor(raw_units, cal.input_units)
        except ValueError as exc:
            raise _fail(
                "E_UNITS",
                "resolve",
                f"channel {ch.source!r} in {raw_units!r} cannot feed calibration {cal.id} "
                f"v{cal.version} (input {cal.input_units!r}).",
                "Fix the channel's unit or the calibration's input units.",
            ) from exc
    return Signal(name, ch, _safe(ch.dims[0]), raw_units, dt, t0, cal, factor)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


def summarize(
    shot: Shot, nan: Mapping[str, str], block: int = 1 << 20
) -> dict[str, dict[str, Any]]:
    """Summary scalars of each signal's calibrated values (min, max, mean, count, NaNs),
    read in blocks, for the shot search; ``E_NAN`` for a signal holding NaN whose policy
    (``nan[signal]``, else ``nan["*"]``, else allow) is ``reject`` (spec 5.1 step 4)."""
    out: dict[str, dict[str, Any]] = {}
    for s in shot.signals:
        n = int(np.prod(s.channel.shape, dtype=np.int64))
        lo_v, hi_v, total, count, nans = np.inf, -np.inf, 0.0, 0, 0
        floating = s.calibration is not None or np.dtype(s.channel.dtype).kind in "fc"
        for lo in range(0, n, block):
            raw = s.channel.read_flat(lo, min(lo + block, n))
            scaled = raw * s.factor if s.factor != 1.0 else raw
            values = s.calibration.apply(scaled) if s.calibration else raw
            if floating:
                bad = np.isnan(values)
                k = int(bad.sum())
                if k:
                    nans += k
                    values = values[~bad]
            if values.size:
                lo_v = min(lo_v, float(values.min()))
                hi_v = max(hi_v, float(values.max()))
                total += float(values.sum(dtype=np.float64))
                count += int(values.size)
        out[s.name] = {
            "min": lo_v if count else None,
            "max": hi_v if count else None,
            "mean": total / count if count else None,
            "n": n,
            "nan": nans,
        }
    check_nan(shot, out, nan)
    return out


def check_nan(shot: Shot, summary: Mapping[str, Mapping[str, Any]], nan: Mapping[str, str]) -> None:
    """``E_NAN`` for the first signal of ``summary`` (as :func:`summarize` gives it, or as
    the product writer counts it while storing the values) holding NaN whose policy
    (``nan[signal]``, else ``nan["*"]``, else allow) is ``reject``."""
    default = nan.get("*", "allow")
    for s in shot.signals:
        found = summary.get(s.name)
        if not found or not found["nan"]:
            continue
        if nan.get(s.name, nan.get(s.channel.source, default)) == "reject":
            raise _fail(
                "E_NAN",
                "validate",
                f"signal {s.name!r} (channel {s.channel.source!r}) holds {found['nan']} NaN "
                f"of {found['n']} samples, and its NaN policy is 'reject'.",
                f"Fix the acquisition of {s.channel.source!r}, or allow NaN for it "
                f"([ingest.pipelines.NAME.nan] {s.name} = 'allow'), then 'insitu ingest "
                "retry' the file.",
            )

"""The shot search: shot records of the catalog database by campaign, acquisition time,
signal, configuration component and summary values, answered from the database only (no
product is opened)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from insitu import db
from insitu.errors import InvalidRequest
from insitu.ingest.calibration import parse_time
from insitu.ingest.registry import (
    ShotRecord,
    epoch_us,
    shot_components_t,
    shot_signals_t,
    shots_t,
)
from insitu.settings import Settings

__all__ = ["MAX_SHOTS", "Condition", "ShotPage", "find_shots", "parse_where"]

MAX_SHOTS = 1000
_STATS = ("min", "max", "mean")
_OPS = {
    ">=": lambda c, v: c >= v,
    "<=": lambda c, v: c <= v,
    "!=": lambda c, v: c != v,
    "==": lambda c, v: c == v,
    "=": lambda c, v: c == v,
    ">": lambda c, v: c > v,
    "<": lambda c, v: c < v,
}
_CONDITION = re.compile(
    r"^\s*(?P<signal>[A-Za-z0-9_.\-]+?)_(?P<stat>min|max|mean)\s*"
    r"(?P<op>>=|<=|!=|==|=|>|<)\s*(?P<value>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$"
)
_SPLIT = re.compile(r"\s*,\s*|\s+and\s+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Condition:
    """One summary-value condition: ``<signal>_<min|max|mean> <op> <number>``."""

    signal: str
    stat: str
    op: str
    value: float


def parse_where(where: str) -> list[Condition]:
    """The conditions of ``where`` (joined by ',' or 'and'), e.g.
    ``coil_field_max>0.1, neutral_pressure_mean<=8`` (:class:`InvalidRequest` naming the
    part that is not one)."""
    out = []
    for part in _SPLIT.split(where.strip()):
        m = _CONDITION.match(part)
        if m is None:
            raise InvalidRequest(
                f"where: {part!r} is not SIGNAL_STAT OP NUMBER (STAT min, max or mean; OP "
                "one of > >= < <= = !=), e.g. 'coil_field_max>0.1'; join conditions with ','."
            )
        out.append(Condition(m["signal"], m["stat"], m["op"], float(m["value"])))
    return out


@dataclass(frozen=True, slots=True)
class ShotPage:
    """One page of a shot search."""

    total: int
    shots: list[ShotRecord]
    limit: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "shots": [s.to_json() for s in self.shots],
        }


_lock = threading.Lock()
_engines: dict[str, Engine] = {}  # held for the process: a search is one or two queries


def _engine(uri: str) -> Engine:
    with _lock:
        found = _engines.get(uri)
        if found is None:
            found = db.engine(uri)
            try:
                db.upgrade(found)
            except BaseException:
                db.release(found)
                raise
            _engines[uri] = found
        return found


def _time(value: datetime | str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        t = value if isinstance(value, datetime) else parse_time(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} {value!r} is not an ISO 8601 time; write e.g. 2026-03-02 or "
            "2026-03-02T10:00:00Z (UTC)."
        ) from None
    return epoch_us(t)


def _names(value: str | Sequence[str] | None, name: str) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    for v in values:
        if not v or not v.strip() or len(v) > 200:
            raise InvalidRequest(f"{name} {v!r} is empty or too long; give a name, or drop it.")
    return [v.strip() for v in values]


def find_shots(
    settings: Settings | str,
    *,
    campaign: str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    signal: str | Sequence[str] | None = None,
    component: str | Sequence[str] | None = None,
    where: str | Sequence[Condition] | None = None,
    collections: Iterable[str] | None = None,
    pipeline: str | None = None,
    shot: str | None = None,
    latest: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> ShotPage:
    """Shot records matching every criterion, newest acquisition first, one page of them.

    ``settings`` (or the catalog database's URL) says where to look. ``start``/``end``:
    acquired in ``[start, end)`` (UTC); ``signal``/``component``: has every one of these
    signals / configuration components present; ``where``: summary-value conditions
    (:func:`parse_where`); ``collections``: only shots of these collections (the ones a
    caller may read); ``latest``: only the latest version of each shot. Bad values raise
    :class:`~insitu.errors.InvalidRequest` naming them.
    """
    if not 0 <= limit <= MAX_SHOTS:
        raise InvalidRequest(f"limit {limit} is not between 0 and {MAX_SHOTS}.")
    if offset < 0:
        raise InvalidRequest(f"offset {offset} is negative; give 0 or more.")
    conditions = parse_where(where) if isinstance(where, str) else list(where or ())
    t0, t1 = _time(start, "from"), _time(end, "to")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise InvalidRequest(f"to {end!r} is not after from {start!r}; the range is [from, to).")
    clauses: list[Any] = []
    if latest:
        clauses.append(shots_t.c.latest.is_(True))
    if campaign is not None:
        clauses.append(shots_t.c.campaign == _names(campaign, "campaign")[0])
    if pipeline is not None:
        clauses.append(shots_t.c.pipeline == pipeline)
    if shot is not None:
        clauses.append(shots_t.c.shot == shot)
    if collections is not None:
        clauses.append(shots_t.c.collection.in_(sorted(set(collections))))
    if t0 is not None:
        clauses.append(shots_t.c.acquired_us >= t0)
    if t1 is not None:
        clauses.append(shots_t.c.acquired_us < t1)
    sig, comp = shot_signals_t.c, shot_components_t.c
    for name in _names(signal, "signal"):
        clauses.append(shots_t.c.id.in_(sa.select(sig.shot_row).where(sig.signal == name)))
    for name in _names(component, "component"):
        clauses.append(shots_t.c.id.in_(sa.select(comp.shot_row).where(comp.component == name)))
    for c in conditions:
        test = _OPS[c.op](getattr(sig, c.stat), c.value)
        clauses.append(
            shots_t.c.id.in_(sa.select(sig.shot_row).where(sig.signal == c.signal, test))
        )
    engine = _engine(settings if isinstance(settings, str) else settings.catalog_uri)
    with engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.count()).select_from(shots_t).where(*clauses)
        ).scalar_one()
        rows = (
            conn.execute(
                sa.select(shots_t)
                .where(*clauses)
                .order_by(shots_t.c.acquired_us.desc(), shots_t.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
            .mappings()
            .all()
            if limit and offset < total
            else []
        )
    return ShotPage(int(total), [ShotRecord.from_row(r) for r in rows], limit, offset)

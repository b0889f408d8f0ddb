"""Ingest's tables in the catalog database: raw items, shot records, calibrations and
configuration snapshots.

The catalog database is the one place ingest keeps what it knows (spec 5.1 step 8):

* ``ingest_items``: one row per raw file a pipeline secured (its state: ``secured`` while
  processed, ``ingested``, ``quarantined``), what the per-pipeline ledger file held before;
* ``ingest_shots``: one row per product (shot and version): identity, context, and the
  signals, configuration components and summary scalars the shot search answers from,
  with ``ingest_shot_signals`` and ``ingest_shot_components`` holding them indexed;
* ``ingest_calibrations`` and ``ingest_configurations``: the definitions a pipeline calibrates
  with and the testbed snapshots it stamps (:mod:`insitu.ingest.definitions`).

The quarantine's JSON reports and the raw bytes stay files (:class:`~insitu.ingest.store.
RawStore`). :class:`Registry` is the access of one pipeline to these tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from insitu import db
from insitu.ingest.calibration import parse_time

__all__ = [
    "Item",
    "Registry",
    "ShotRecord",
    "calibrations_t",
    "configurations_t",
    "epoch_us",
    "items_t",
    "shot_components_t",
    "shot_rows",
    "shot_signals_t",
    "shots_t",
]

items_t = sa.Table(
    "ingest_items",
    db.metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("shot", sa.String(200)),
    sa.Column("code", sa.String(40)),
    sa.Column("product", sa.String(64)),
    sa.Column("version", sa.Integer),
    sa.Column("updated", sa.String(40), nullable=False),
    sa.Index("ix_ingest_items_state", "pipeline", "state", "updated"),
    sa.Index("ix_ingest_items_shot", "pipeline", "shot"),
)

shots_t = sa.Table(
    "ingest_shots",
    db.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("shot", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("latest", sa.Boolean, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # ingested | superseded
    sa.Column("product_id", sa.String(64), nullable=False),
    sa.Column("raw_sha256", sa.String(64), nullable=False),
    sa.Column("campaign", sa.String(200)),
    sa.Column("operator", sa.String(200)),
    sa.Column("acquired_at", sa.String(40), nullable=False),  # ISO 8601 UTC
    sa.Column("acquired_us", sa.BigInteger, nullable=False),  # microseconds since 1970, UTC
    sa.Column("ingested_at", sa.String(40), nullable=False),
    sa.Column("configuration_id", sa.String(64)),
    sa.Column("calibrations", sa.Text, nullable=False),  # JSON {variable: {id, version, sha256}}
    sa.Column("signals", sa.Text, nullable=False),  # JSON [name, ...]
    sa.Column("components", sa.Text, nullable=False),  # JSON [component id, ...]
    sa.Column("summary", sa.Text, nullable=False),  # JSON {signal: {min, max, mean, n, nan}}
    sa.Column("pipeline_version", sa.String(40), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.UniqueConstraint("pipeline", "shot", "version", name="uq_ingest_shots_version"),
    # The search's indexes cover its filters and order (migration 0003): a count over
    # thousands of matches reads them, not the wide rows.
    sa.Index("ix_ingest_shots_latest", "latest", "acquired_us", "id", "collection"),
    sa.Index(
        "ix_ingest_shots_campaign_latest", "campaign", "latest", "acquired_us", "id", "collection"
    ),
    sa.Index("ix_ingest_shots_shot", "shot"),
)

shot_signals_t = sa.Table(
    "ingest_shot_signals",
    db.metadata,
    sa.Column("shot_row", sa.Integer, primary_key=True),  # ingest_shots.id
    sa.Column("signal", sa.String(200), primary_key=True),
    sa.Column("min", sa.Float),
    sa.Column("max", sa.Float),
    sa.Column("mean", sa.Float),
    sa.Index("ix_ingest_shot_signals_max_row", "signal", "max", "shot_row"),
    sa.Index("ix_ingest_shot_signals_min_row", "signal", "min", "shot_row"),
    sa.Index("ix_ingest_shot_signals_mean_row", "signal", "mean", "shot_row"),
)

shot_components_t = sa.Table(
    "ingest_shot_components",
    db.metadata,
    sa.Column("shot_row", sa.Integer, primary_key=True),
    sa.Column("component", sa.String(200), primary_key=True),
    sa.Index("ix_ingest_shot_components", "component", "shot_row"),
)

calibrations_t = sa.Table(
    "ingest_calibrations",
    db.metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("signal", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("valid_from", sa.String(40), nullable=False),
    sa.Column("valid_to", sa.String(40)),
    sa.Column("supersedes", sa.Integer),
    sa.Column("document", sa.Text, nullable=False),  # canonical JSON
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("author", sa.String(200)),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text),  # the calibrations file it was imported from; NULL: CLI
)

configurations_t = sa.Table(
    "ingest_configurations",
    db.metadata,
    sa.Column("row", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("configuration_id", sa.String(64), nullable=False, index=True),
    sa.Column("testbed", sa.String(200), nullable=False),
    sa.Column("valid_from", sa.String(40)),  # half-open [valid_from, valid_to), UTC
    sa.Column("valid_to", sa.String(40)),
    sa.Column("shot_first", sa.BigInteger),  # or an inclusive range of (numeric) shot ids
    sa.Column("shot_last", sa.BigInteger),
    sa.Column("document", sa.Text, nullable=False),  # canonical JSON
    sa.Column("author", sa.String(200)),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text),  # the configurations file it was imported from; NULL: CLI
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(t: datetime) -> int:
    """Microseconds since 1970-01-01 UTC (how the shot table orders and selects times)."""
    delta = t.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Item:
    """One raw file of a pipeline and its state."""

    sha256: str
    name: str
    state: str  # secured (being processed) | ingested | quarantined
    shot: str | None
    code: str | None
    product: str | None
    version: int | None
    updated: str


@dataclass(frozen=True, slots=True)
class ShotRecord:
    """One product of a shot, as the catalog database records it."""

    pipeline: str
    collection: str
    shot: str
    version: int
    latest: bool
    state: str
    product_id: str
    raw_sha256: str
    campaign: str | None
    operator: str | None
    acquired_at: str
    ingested_at: str
    configuration_id: str | None
    calibrations: dict[str, dict[str, Any]]
    signals: list[str]
    components: list[str]
    summary: dict[str, dict[str, float | int | None]]
    pipeline_version: str
    path: str

    @property
    def dataset_id(self) -> str:
        """Its dataset id in the catalog (the ``shots`` template: ``<shot>.v<k>``)."""
        return f"{self.shot}.v{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        out = {k: getattr(self, k) for k in self.__slots__}
        out["dataset_id"] = self.dataset_id
        return out

    @classmethod
    def from_row(cls, row: Any) -> ShotRecord:
        """From a row of ``ingest_shots``."""
        return cls(
            pipeline=row["pipeline"],
            collection=row["collection"],
            shot=row["shot"],
            version=int(row["version"]),
            latest=bool(row["latest"]),
            state=row["state"],
            product_id=row["product_id"],
            raw_sha256=row["raw_sha256"],
            campaign=row["campaign"],
            operator=row["operator"],
            acquired_at=row["acquired_at"],
            ingested_at=row["ingested_at"],
            configuration_id=row["configuration_id"],
            calibrations=json.loads(row["calibrations"]),
            signals=json.loads(row["signals"]),
            components=json.loads(row["components"]),
            summary=json.loads(row["summary"]),
            pipeline_version=row["pipeline_version"],
            path=row["path"],
        )


def _item(row: Any) -> Item:
    return Item(
        row.sha256, row.name, row.state, row.shot, row.code, row.product, row.version, row.updated
    )


class Registry:
    """The catalog database's ingest tables, as one pipeline uses them (``pipeline``), or
    for reading only (any pipeline name: the shot and definition tables are shared)."""

    def __init__(self, uri: str, pipeline: str) -> None:
        self.pipeline = pipeline
        self.engine: Engine = db.opened(uri)

    def close(self) -> None:
        """Give the engine back."""
        db.release(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction."""
        with self.engine.begin() as conn:
            yield conn

    # -- items -----------------------------------------------------------------------------

    def item(self, sha: str) -> Item | None:
        """The row of raw file ``sha``."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(items_t).where(
                    items_t.c.pipeline == self.pipeline, items_t.c.sha256 == sha
                )
            ).first()
        return _item(row) if row else None

    def items(self, state: str | None = None) -> list[Item]:
        """Rows, oldest change first (of one state if given)."""
        query = sa.select(items_t).where(items_t.c.pipeline == self.pipeline)
        if state:
            query = query.where(items_t.c.state == state)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(items_t.c.updated, items_t.c.sha256)).all()
        return [_item(r) for r in rows]

    def ingested_shot(self, shot: str) -> Item | None:
        """The ingested row of shot ``shot``, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(items_t).where(
                    items_t.c.pipeline == self.pipeline,
                    items_t.c.shot == shot,
                    items_t.c.state == "ingested",
                )
            ).first()
        return _item(row) if row else None

    def record(self, item: Item, conn: Connection | None = None) -> None:
        """Insert or replace the row of ``item``."""
        if conn is None:
            with self.begin() as c:
                self.record(item, c)
            return
        key = (items_t.c.pipeline == self.pipeline) & (items_t.c.sha256 == item.sha256)
        values = {
            "name": item.name,
            "state": item.state,
            "shot": item.shot,
            "code": item.code,
            "product": item.product,
            "version": item.version,
            "updated": item.updated,
        }
        if conn.execute(items_t.update().where(key).values(**values)).rowcount == 0:
            conn.execute(
                items_t.insert().values(pipeline=self.pipeline, sha256=item.sha256, **values)
            )

    def import_ledger(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Take the rows of a ledger file an older version kept (items not known yet)."""
        done = 0
        with self.begin() as conn:
            for row in rows:
                item = Item(*row)
                if conn.execute(
                    sa.select(items_t.c.sha256).where(
                        items_t.c.pipeline == self.pipeline, items_t.c.sha256 == item.sha256
                    )
                ).first():
                    continue
                self.record(item, conn)
                done += 1
        return done

    # -- shots -----------------------------------------------------------------------------

    def record_shot(self, record: ShotRecord, item: Item) -> None:
        """Record product ``record`` as the latest version of its shot, and raw file
        ``item``'s new state, in one transaction (an earlier row of the same version is
        replaced: a killed run's)."""
        self.record_shots([(record, item)])

    def record_shots(self, records: Sequence[tuple[ShotRecord, Item]]) -> None:
        """:meth:`record_shot` for each pair, all in one transaction (a bulk import: shots
        new to the table are inserted a batch at a time)."""
        with self.begin() as conn:
            fresh: list[tuple[ShotRecord, Item]] = []
            for chunk in _chunks(records, 500):
                known = {
                    (r.pipeline, r.shot)
                    for r in conn.execute(
                        sa.select(shots_t.c.pipeline, shots_t.c.shot).where(
                            sa.tuple_(shots_t.c.pipeline, shots_t.c.shot).in_(
                                [(rec.pipeline, rec.shot) for rec, _ in chunk]
                            )
                        )
                    )
                }
                for record, item in chunk:
                    if (record.pipeline, record.shot) in known:
                        self._record_shot(conn, record)
                        self.record(item, conn)
                    else:
                        fresh.append((record, item))
            rows = [shot_rows(record) for record, _ in fresh]
            if rows:
                ids = conn.execute(
                    shots_t.insert().returning(shots_t.c.id, sort_by_parameter_order=True),
                    [values for values, _, _ in rows],
                ).scalars()
                stats, parts = [], []
                for row_id, (_, s, p) in zip(ids, rows, strict=True):
                    stats += [{**r, "shot_row": row_id} for r in s]
                    parts += [{**r, "shot_row": row_id} for r in p]
                if stats:
                    conn.execute(shot_signals_t.insert(), stats)
                if parts:
                    conn.execute(shot_components_t.insert(), parts)
            self._record_items(conn, [item for _, item in fresh])

    def _record_items(self, conn: Connection, items: Sequence[Item]) -> None:
        """:meth:`record` of each, the new ones inserted a batch at a time."""
        new = []
        for chunk in _chunks(items, 500):
            known = set(
                conn.execute(
                    sa.select(items_t.c.sha256).where(
                        items_t.c.pipeline == self.pipeline,
                        items_t.c.sha256.in_([i.sha256 for i in chunk]),
                    )
                ).scalars()
            )
            for item in chunk:
                if item.sha256 in known:
                    self.record(item, conn)
                else:
                    new.append({"pipeline": self.pipeline, **asdict(item)})
        if new:
            conn.execute(items_t.insert(), new)

    def _record_shot(self, conn: Connection, record: ShotRecord) -> None:
        same_shot = (shots_t.c.pipeline == record.pipeline) & (shots_t.c.shot == record.shot)
        old = conn.execute(
            sa.select(shots_t.c.id).where(same_shot, shots_t.c.version == record.version)
        ).scalar()
        if old is not None:
            self._delete_shot_rows(conn, [old])
        conn.execute(
            shots_t.update()
            .where(same_shot, shots_t.c.latest.is_(True))
            .values(latest=False, state="superseded")
        )
        values, stats, parts = shot_rows(record)
        inserted = conn.execute(shots_t.insert().values(**values)).inserted_primary_key
        assert inserted is not None
        for row in (*stats, *parts):
            row["shot_row"] = inserted[0]
        if stats:
            conn.execute(shot_signals_t.insert(), stats)
        if parts:
            conn.execute(shot_components_t.insert(), parts)

    @staticmethod
    def _delete_shot_rows(conn: Connection, ids: list[int]) -> None:
        conn.execute(shot_signals_t.delete().where(shot_signals_t.c.shot_row.in_(ids)))
        conn.execute(shot_components_t.delete().where(shot_components_t.c.shot_row.in_(ids)))
        conn.execute(shots_t.delete().where(shots_t.c.id.in_(ids)))

    def shot(self, shot: str, version: int | None = None) -> ShotRecord | None:
        """The record of ``shot`` (of this pipeline) at ``version``, or its latest."""
        query = sa.select(shots_t).where(
            shots_t.c.pipeline == self.pipeline, shots_t.c.shot == shot
        )
        query = query.where(
            shots_t.c.latest.is_(True) if version is None else shots_t.c.version == version
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return ShotRecord.from_row(row) if row else None


def _chunks(seq: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def shot_rows(
    record: ShotRecord,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``record`` (the latest version) in ``ingest_shots``,
    ``ingest_shot_signals`` and ``ingest_shot_components``; the last two without their
    ``shot_row``."""
    values = record.to_json()
    del values["dataset_id"]
    for key in ("calibrations", "signals", "components", "summary"):
        values[key] = json.dumps(values[key], sort_keys=True)
    values["acquired_us"] = epoch_us(parse_time(record.acquired_at.replace("Z", "+00:00")))
    values.update(latest=True, state="ingested")
    stats = [
        {
            "signal": name,
            "min": _finite(s.get("min")),
            "max": _finite(s.get("max")),
            "mean": _finite(s.get("mean")),
        }
        for name, s in record.summary.items()
    ]
    stats += [
        {"signal": name, "min": None, "max": None, "mean": None}
        for name in record.signals
        if name not in record.summary
    ]
    parts = [{"component": c} for c in sorted(set(record.components))]
    return values, stats, parts


def _finite(value: Any) -> float | None:
    """A float the index can compare (NaN and infinities are left out of the search)."""
    if value is None:
        return None
    v = float(value)
    return v if v == v and v not in (float("inf"), float("-inf")) else None

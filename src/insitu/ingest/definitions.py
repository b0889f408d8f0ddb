"""Calibration definitions and configuration snapshots in the catalog database.

Both are added with the CLI (``insitu ingest calibration add``, ``insitu ingest
configuration add``), checked before anything is stored: a bad definition is refused with
the value at fault and the fix, and nothing of its file is stored. A pipeline reads them from
the database each run. A pipeline's ``calibrations`` / ``configurations`` files seed the
same tables: each run imports what they hold (a definition edited in such a file follows
the file, as before the tables existed; one added with the CLI never changes).

Calibrations are one namespace per catalog: a definition calibrates its signal (the id's
part before '/') in every pipeline. Snapshots belong to a testbed (the tree's ``testbed``,
or ``--testbed``); a pipeline with ``testbed`` set uses only that testbed's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from insitu.errors import ConfigError, IngestError, NotFound
from insitu.ingest.calibration import (
    Calibration,
    Calibrations,
    canonical_json,
    check_coverage,
    parse_definition,
    parse_time,
    read_yaml,
)
from insitu.ingest.registry import Registry, calibrations_t, configurations_t

__all__ = [
    "Snapshot",
    "add_calibrations",
    "add_configuration",
    "calibration_rows",
    "components",
    "configuration_id",
    "load_calibrations_db",
    "one_snapshot",
    "parse_shots",
    "resolve_snapshot",
    "snapshots",
    "sync_calibrations",
    "sync_configurations",
]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- calibrations ------------------------------------------------------------------------


def _calibration_values(c: Calibration, doc: Any, source: str | None) -> dict[str, Any]:
    return {
        "id": c.id,
        "version": c.version,
        "signal": c.signal,
        "kind": c.kind,
        "valid_from": _iso(c.valid_from),
        "valid_to": _iso(c.valid_to),
        "supersedes": c.supersedes,
        "document": canonical_json(doc),
        "sha256": c.sha256,
        "author": str(doc.get("author")) if doc.get("author") is not None else None,
        "created": datetime.now(UTC),
        "source": source,
    }


def calibration_rows(registry: Registry, cal_id: str | None = None) -> list[dict[str, Any]]:
    """Stored definitions (of ``cal_id`` if given), by id and version, with their document."""
    query = sa.select(calibrations_t).order_by(calibrations_t.c.id, calibrations_t.c.version)
    if cal_id is not None:
        query = query.where(calibrations_t.c.id == cal_id)
    with registry.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def load_calibrations_db(registry: Registry) -> Calibrations:
    """Every stored definition, checked again (as the pipeline uses them)."""
    return Calibrations(
        [
            parse_definition(json.loads(r["document"]), "the catalog database")
            for r in calibration_rows(registry)
        ]
    )


def add_calibrations(registry: Registry, path: str | Path) -> list[tuple[Calibration, str]]:
    """Store the definitions of YAML file ``path`` (one document each), all or none.

    Each is checked alone (kind, coefficients, lookup table increasing, units) and with
    what is stored: an id and version stored with other content is refused (definitions do
    not change: add a new version), a version must be above the id's stored ones,
    ``supersedes`` must name a stored (or added) version, and the active definitions of each
    signal may neither overlap nor leave gaps. Returns each definition with ``added`` or
    ``unchanged`` (stored already, same content).
    """
    docs = read_yaml(path)
    if not docs:
        raise ConfigError(f"{path} holds no calibration definition; write one YAML document each.")
    new = [(parse_definition(d, str(path)), d) for d in docs]
    with registry.begin() as conn:
        stored = {
            (r["id"], r["version"]): r for r in conn.execute(sa.select(calibrations_t)).mappings()
        }
        known = [
            parse_definition(json.loads(r["document"]), "the catalog database")
            for r in stored.values()
        ]
        out: list[tuple[Calibration, str]] = []
        seen: set[tuple[str, int]] = set()
        for c, _doc in new:
            key = (c.id, c.version)
            if key in seen:
                raise ConfigError(f"Calibration {c.id} version {c.version} is twice in {path}.")
            seen.add(key)
            if key in stored:
                if stored[key]["sha256"] != c.sha256:
                    top = max(v for i, v in stored if i == c.id)
                    raise ConfigError(
                        f"Calibration {c.id} version {c.version} is stored already with "
                        f"other content (sha256 {stored[key]['sha256'][:12]}, yours "
                        f"{c.sha256[:12]}); a stored definition never changes. Add it as "
                        f"version {top + 1} with 'supersedes: {c.version}'."
                    )
                out.append((c, "unchanged"))
                continue
            top = max((v for i, v in stored if i == c.id), default=0)
            if c.version <= top:
                raise ConfigError(
                    f"Calibration {c.id} version {c.version} is not above its stored version "
                    f"{top}; versions increase: give it version {top + 1}."
                )
            versions = {v for i, v in stored if i == c.id} | {
                d.version for d, _ in new if d.id == c.id
            }
            if c.supersedes is not None and c.supersedes not in versions:
                raise ConfigError(
                    f"Calibration {c.id} version {c.version} supersedes version "
                    f"{c.supersedes}, which is not stored (versions: "
                    f"{sorted(versions - {c.version}) or 'none'}); fix 'supersedes'."
                )
            out.append((c, "added"))
        added = [(c, d) for (c, d), (_, state) in zip(new, out, strict=True) if state == "added"]
        check_coverage(known + [c for c, _ in added], {c.signal for c, _ in added})
        for c, doc in added:
            conn.execute(calibrations_t.insert().values(**_calibration_values(c, doc, None)))
    return out


def sync_calibrations(registry: Registry, path: str | Path) -> None:
    """Import a pipeline's calibrations file: its definitions are stored (changed ones
    replaced, ones gone from the file removed: the file is their source); each is checked
    alone, overlaps show when a shot resolves (``E_CAL_AMBIGUOUS``), as before the
    database. One defined otherwise in the database (by the CLI or another file) is an
    error."""
    source = str(Path(path).expanduser().resolve())
    docs = [(parse_definition(d, str(path)), d) for d in read_yaml(path)]
    Calibrations([c for c, _ in docs])  # twice the same id and version: ConfigError
    with registry.begin() as conn:
        stored = {
            (r["id"], r["version"]): r for r in conn.execute(sa.select(calibrations_t)).mappings()
        }
        wanted = set()
        for c, doc in docs:
            key = (c.id, c.version)
            wanted.add(key)
            row = stored.get(key)
            where = (calibrations_t.c.id == c.id) & (calibrations_t.c.version == c.version)
            if row is None:
                conn.execute(calibrations_t.insert().values(**_calibration_values(c, doc, source)))
            elif row["sha256"] != c.sha256:
                if row["source"] != source:
                    raise ConfigError(
                        f"Calibration {c.id} version {c.version} in {path} differs from the "
                        f"one stored from {row['source'] or 'the CLI'}; give it another "
                        "version (or id), or remove it from the file."
                    )
                conn.execute(
                    calibrations_t.update()
                    .where(where)
                    .values(**_calibration_values(c, doc, source))
                )
        gone = [k for k, r in stored.items() if r["source"] == source and k not in wanted]
        for cal_id, version in gone:
            conn.execute(
                calibrations_t.delete().where(
                    (calibrations_t.c.id == cal_id) & (calibrations_t.c.version == version)
                )
            )


# -- configurations ----------------------------------------------------------------------


def configuration_id(tree: Any) -> str:
    """The sha256 of a configuration snapshot's canonical JSON."""
    return hashlib.sha256(canonical_json(tree).encode()).hexdigest()


def components(tree: Any) -> list[str]:
    """Ids of the components present in a snapshot: every mapping with a ``type`` whose
    ``present`` is not false, named by its ``id`` or else its key."""
    found: set[str] = set()

    def walk(node: Any, key: str | None) -> None:
        if isinstance(node, dict):
            if "type" in node and node.get("present", True) is not False:
                found.add(str(node.get("id", key)))
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(tree, None)
    found.discard("None")
    return sorted(found)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A configuration snapshot and when it is valid."""

    configuration_id: str
    testbed: str
    tree: dict[str, Any]
    valid_from: datetime | None
    valid_to: datetime | None
    shot_first: int | None
    shot_last: int | None

    def covers_time(self, t: datetime) -> bool:
        """Whether a time validity holds ``t``."""
        return (
            self.shot_first is None
            and self.valid_from is not None
            and self.valid_from <= t
            and (self.valid_to is None or t < self.valid_to)
        )

    def covers_shot(self, shot: str) -> bool:
        """Whether a shot range holds ``shot`` (a whole number)."""
        if self.shot_first is None or self.shot_last is None or not shot.isdigit():
            return False
        return self.shot_first <= int(shot) <= self.shot_last

    def validity(self) -> str:
        """The validity in words."""
        if self.shot_first is not None:
            return f"shots {self.shot_first}-{self.shot_last}"
        end = _iso(self.valid_to) or "open-ended"
        return f"[{_iso(self.valid_from)}, {end})"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "configuration_id": self.configuration_id,
            "testbed": self.testbed,
            "valid_from": _iso(self.valid_from),
            "valid_to": _iso(self.valid_to),
            "shots": None if self.shot_first is None else f"{self.shot_first}-{self.shot_last}",
            "components": components(self.tree),
            "tree": self.tree,
        }


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        configuration_id=row["configuration_id"],
        testbed=row["testbed"],
        tree=json.loads(row["document"]),
        valid_from=parse_time(row["valid_from"]) if row["valid_from"] else None,
        valid_to=parse_time(row["valid_to"]) if row["valid_to"] else None,
        shot_first=row["shot_first"],
        shot_last=row["shot_last"],
    )


def snapshots(registry: Registry, testbed: str | None = None) -> list[Snapshot]:
    """Stored snapshots (of ``testbed`` if given), in the order they were stored."""
    query = sa.select(configurations_t).order_by(configurations_t.c.row)
    if testbed is not None:
        query = query.where(configurations_t.c.testbed == testbed)
    with registry.engine.connect() as conn:
        return [_snapshot(r) for r in conn.execute(query).mappings()]


def parse_shots(value: str) -> tuple[int, int]:
    """``A-B`` (whole numbers, A <= B) as a pair."""
    first, sep, last = value.strip().partition("-")
    if not (sep and first.strip().isdigit() and last.strip().isdigit()):
        raise ConfigError(
            f"Shot range {value!r} is not A-B with whole numbers A <= B; write e.g. 3001-3099."
        )
    a, b = int(first), int(last)
    if a > b:
        raise ConfigError(f"Shot range {value!r} ends before it starts; write {b}-{a}.")
    return a, b


def _tree(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"Configuration snapshot in {where} is {type(value).__name__}, not a non-empty "
            "mapping: write the testbed's tree (testbed -> subsystems -> diagnostics)."
        )
    for key, node in _nodes(value):
        if "present" in node and not isinstance(node["present"], bool):
            raise ConfigError(
                f"Component {key!r} in {where}: present = {node['present']!r} is not true or "
                "false; write 'present: true' or 'present: false'."
            )
    return value


def _nodes(node: Any, key: str = "") -> Iterable[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield key, node
        for k, v in node.items():
            yield from _nodes(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _nodes(v, key)


def _overlaps(a: Snapshot, b: Snapshot) -> bool:
    if a.testbed != b.testbed or (a.shot_first is None) != (b.shot_first is None):
        return False
    if a.shot_first is not None:
        return not (a.shot_last < b.shot_first or b.shot_last < a.shot_first)  # type: ignore[operator]
    assert a.valid_from is not None and b.valid_from is not None
    a_end_after = a.valid_to is None or a.valid_to > b.valid_from
    b_end_after = b.valid_to is None or b.valid_to > a.valid_from
    return a_end_after and b_end_after


def add_configuration(
    registry: Registry,
    path: str | Path,
    *,
    valid_from: str | None = None,
    valid_to: str | None = None,
    shots: str | None = None,
    testbed: str | None = None,
    author: str | None = None,
) -> tuple[Snapshot, str, list[Snapshot]]:
    """Store the snapshot tree of JSON/YAML file ``path``, valid from ``valid_from``
    (until ``valid_to``, else open-ended) or for shots ``A-B``. An open-ended snapshot of
    the same testbed added with the CLI that starts earlier is ended where this one starts;
    any other overlap is refused. Returns the snapshot, ``added`` or ``unchanged``, and the
    snapshots it ended."""
    docs = read_yaml(path)
    if len(docs) != 1:
        raise ConfigError(f"{path} holds {len(docs)} documents; a configuration file is one tree.")
    tree = _tree(docs[0], str(path))
    if (shots is None) == (valid_from is None) or (shots is not None and valid_to is not None):
        raise ConfigError(
            "Give the snapshot's validity as --valid-from TIME [--valid-to TIME], or as "
            "--shots A-B, not both."
        )
    try:
        start = parse_time(valid_from) if valid_from else None
        end = parse_time(valid_to) if valid_to else None
    except ValueError as exc:
        raise ConfigError(
            f"{exc}; write times as ISO 8601 UTC, e.g. 2026-03-01T00:00:00Z."
        ) from exc
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--valid-to {valid_to} is not after --valid-from {valid_from}.")
    first, last = parse_shots(shots) if shots else (None, None)
    bed = testbed if testbed is not None else str(tree.get("testbed", ""))
    snap = Snapshot(configuration_id(tree), bed, tree, start, end, first, last)
    ended: list[Snapshot] = []
    with registry.begin() as conn:
        rows = list(
            conn.execute(
                sa.select(configurations_t).where(configurations_t.c.testbed == bed)
            ).mappings()
        )
        for row in rows:
            other = _snapshot(row)
            if other == snap:
                return snap, "unchanged", []
            if not _overlaps(snap, other):
                continue
            if (
                snap.valid_from is not None
                and other.valid_to is None
                and other.valid_from is not None
                and other.valid_from < snap.valid_from
                and row["source"] is None
            ):
                conn.execute(
                    configurations_t.update()
                    .where(configurations_t.c.row == row["row"])
                    .values(valid_to=_iso(snap.valid_from))
                )
                ended.append(other)
                continue
            raise ConfigError(
                f"Snapshot {snap.configuration_id[:12]} ({snap.validity()}) overlaps snapshot "
                f"{other.configuration_id[:12]} ({other.validity()}) of testbed {bed!r}"
                + (f", which comes from {row['source']} (edit that file)" if row["source"] else "")
                + "; give it a validity that starts where the other ends, or ends where it "
                "starts."
            )
        _insert_snapshot(conn, snap, author, None)
    return snap, "added", ended


def _insert_snapshot(
    conn: Connection, snap: Snapshot, author: str | None, source: str | None
) -> None:
    conn.execute(
        configurations_t.insert().values(
            configuration_id=snap.configuration_id,
            testbed=snap.testbed,
            valid_from=_iso(snap.valid_from),
            valid_to=_iso(snap.valid_to),
            shot_first=snap.shot_first,
            shot_last=snap.shot_last,
            document=canonical_json(snap.tree),
            author=author,
            created=datetime.now(UTC),
            source=source,
        )
    )


def sync_configurations(registry: Registry, path: str | Path) -> None:
    """Import a pipeline's configurations file (a JSON or YAML list of ``{valid_from,
    valid_to, tree}`` or ``{shots: "A-B", tree}``): the file is the source of its rows."""
    source = str(Path(path).expanduser().resolve())
    docs = read_yaml(path)
    entries = docs[0] if len(docs) == 1 and isinstance(docs[0], list) else docs
    wanted = []
    for i, entry in enumerate(entries):
        where = f"{path} (snapshot {i + 1})"
        if not isinstance(entry, dict) or "tree" not in entry:
            raise ConfigError(
                f"{where} has no 'tree'; each entry is {{valid_from, valid_to, tree}}."
            )
        tree = _tree(entry["tree"], where)
        try:
            start = parse_time(entry["valid_from"]) if entry.get("valid_from") else None
            end = parse_time(entry["valid_to"]) if entry.get("valid_to") else None
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}; write ISO 8601 UTC times.") from exc
        first, last = parse_shots(str(entry["shots"])) if entry.get("shots") else (None, None)
        if start is None and first is None:
            raise ConfigError(f"{where} has neither valid_from nor shots; give one.")
        bed = str(entry.get("testbed", tree.get("testbed", "")))
        wanted.append(Snapshot(configuration_id(tree), bed, tree, start, end, first, last))
    with registry.begin() as conn:
        rows = conn.execute(
            sa.select(configurations_t).where(configurations_t.c.source == source)
        ).mappings()
        if sorted(map(repr, (_snapshot(r) for r in rows))) == sorted(map(repr, wanted)):
            return
        conn.execute(configurations_t.delete().where(configurations_t.c.source == source))
        for snap in wanted:
            _insert_snapshot(conn, snap, None, source)


def resolve_snapshot(found: list[Snapshot], shot: str, t: datetime) -> Snapshot | None:
    """The snapshot of ``shot`` acquired at ``t`` among ``found``: one whose shot range
    holds it, else the one valid at ``t``. None when ``found`` is empty (no snapshots:
    products carry no configuration); ``E_CONFIG_MISSING`` / ``E_CONFIG_AMBIGUOUS``
    otherwise."""
    if not found:
        return None
    for matches in (
        [s for s in found if s.covers_shot(shot)],
        [s for s in found if s.covers_time(t)],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(f"{s.configuration_id[:12]} ({s.validity()})" for s in matches)
            raise IngestError(
                "E_CONFIG_AMBIGUOUS",
                "resolve",
                f"configuration snapshots {names} are all valid for shot {shot!r} at "
                f"{t.isoformat()}.",
                "Fix the snapshots' validity so that one holds, then 'insitu ingest retry' "
                "the file.",
            )
    raise IngestError(
        "E_CONFIG_MISSING",
        "resolve",
        f"no configuration snapshot is valid for shot {shot!r} at {t.isoformat()}.",
        "Add the snapshot of the testbed at that time ('insitu ingest configuration add'), "
        "then 'insitu ingest retry' the file.",
    )


def one_snapshot(registry: Registry, ref: str) -> list[Snapshot]:
    """The stored validities of configuration ``ref`` (its id or a prefix of it)."""
    found = [s for s in snapshots(registry) if s.configuration_id.startswith(ref.lower())]
    if not ref or len({s.configuration_id for s in found}) != 1:
        known = ", ".join(sorted({s.configuration_id[:12] for s in snapshots(registry)}))
        raise NotFound(
            f"No single configuration {ref!r} (stored: {known or 'none'}); "
            "'insitu ingest configuration list' shows them."
        )
    return found

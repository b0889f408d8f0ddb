"""A pipeline: take what is complete in the inbox, secure it, make products, register them.

Every raw file ends in one of three states, recorded in the catalog database (with the
shot record of its product, in one transaction): ``ingested``,
``duplicate-ignored`` (these bytes were ingested before: nothing is written) or
``quarantined`` (a report says why and what to do; other files go on). One run of a
pipeline at a time (a lock file); each run first removes what a killed run left in ``tmp``.

:meth:`Pipeline.watch` runs until told to stop, taking files as they become complete;
:meth:`Pipeline.reprocess` writes a new version of the shots a calibration change affects.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insitu.errors import ConfigError, IngestError, InvalidRequest, NotFound, ScanInProgress
from insitu.ingest.calibration import Calibration, Calibrations, parse_time
from insitu.ingest.definitions import (
    Snapshot,
    components,
    load_calibrations_db,
    resolve_snapshot,
    snapshots,
    sync_calibrations,
    sync_configurations,
)
from insitu.ingest.product import (
    ProductHeader,
    latest_product,
    product_id,
    read_header,
    write_product,
)
from insitu.ingest.registry import Item, Registry, ShotRecord
from insitu.ingest.shot import Shot, check_nan, open_shot, summarize
from insitu.ingest.store import (
    Candidate,
    FileChanged,
    RawStore,
    candidates,
    check_manifest,
    now_iso,
)
from insitu.settings import PipelineSettings, Settings

__all__ = ["Outcome", "Pipeline", "RunReport"]

log = logging.getLogger(__name__)
_VERSION = importlib.metadata.version("insitu")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one raw file."""

    name: str
    sha256: str
    # run: ingested | duplicate-ignored | quarantined; reprocess: reprocessed | unchanged |
    # failed (the shot's products stay as they were)
    state: str
    code: str | None = None
    message: str | None = None
    product: str | None = None


@dataclass(slots=True)
class RunReport:
    """What one run did."""

    pipeline: str
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, state: str) -> int:
        """How many files ended in ``state``."""
        return sum(o.state == state for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """Nothing was quarantined and nothing failed."""
        return self.count("quarantined") == 0 and self.count("failed") == 0


def poll_interval(stable_seconds: float) -> float:
    """How often :meth:`Pipeline.watch` looks at the inbox: a quarter of ``stable_seconds``,
    at most 1 s (a manifest is seen within it), at least 50 ms."""
    return max(0.05, min(1.0, stable_seconds / 4))


class Pipeline:
    """One configured pipeline (``[ingest.pipelines.NAME]``)."""

    def __init__(self, name: str, settings: Settings) -> None:
        if name not in settings.ingest.pipelines:
            known = ", ".join(settings.ingest.pipelines) or "none"
            raise ConfigError(
                f"No ingest pipeline {name!r} (configured: {known}). Add an "
                f"[ingest.pipelines.{name}] table to the settings file."
            )
        self.name = name
        self.settings = settings
        self.spec: PipelineSettings = settings.ingest.pipelines[name]
        root = Path(self.spec.store) if self.spec.store else settings.data_dir / "ingest" / name
        self.registry = Registry(settings.catalog_uri, name)
        try:
            self.store = RawStore(root.expanduser(), self.registry)
            self._setup(name)
        except BaseException:
            self.registry.close()
            raise

    def _setup(self, name: str) -> None:
        self.output = (
            Path(self.spec.output).expanduser()
            if self.spec.output
            else self.store.root / "products"
        )
        self.output.mkdir(parents=True, exist_ok=True)
        self.inbox = Path(self.spec.source).expanduser()
        self.collection = self.spec.collection or name
        # Read by load_definitions() before each run, retry and reprocess (not to show a
        # pipeline's state, which needs none of them).
        self.calibrations = Calibrations([])
        self.snapshots: list[Snapshot] = []

    def load_definitions(self) -> None:
        """Import the pipeline's calibrations and configurations files (if set) into the
        catalog database, then read the definitions and snapshots from it. Done before each
        run, retry and reprocess: a bad definition stops it before any shot."""
        if self.spec.calibrations:
            sync_calibrations(self.registry, self.spec.calibrations)
        if self.spec.configurations:
            sync_configurations(self.registry, self.spec.configurations)
        self.calibrations = load_calibrations_db(self.registry)
        self.snapshots = snapshots(self.registry, self.spec.testbed)

    def close(self) -> None:
        """Give back the catalog database's engine."""
        self.registry.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _running(self) -> Iterator[None]:
        with open(self.store.root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for left in (self.store.root / "tmp").iterdir():  # a killed run's partial files
                if left.is_dir():
                    shutil.rmtree(left)
                else:
                    left.unlink()
            yield

    def pending(self, now: float | None = None) -> list[Candidate]:
        """Inbox files that are complete and waiting."""
        return candidates(self.inbox, self.spec.pattern, self.spec.stable_seconds, now)

    def run(
        self,
        *,
        register: bool = True,
        progress: Callable[[Outcome], None] | None = None,
        now: float | None = None,
        stop: threading.Event | None = None,
    ) -> RunReport:
        """Ingest every complete inbox file (and any a killed run left secured but not
        processed); register the products in the catalog. When ``stop`` is set, the file
        being processed is finished and the rest are left for the next run."""
        report = RunReport(self.name)
        with self._running():
            self.load_definitions()
            for item in self.store.items("secured"):  # a killed run's
                if stop is not None and stop.is_set():
                    break
                raw = self.store.raw_path(item.sha256, item.name)
                manifest = self.store.manifest(item.sha256, item.name)
                outcome = self._process(item.sha256, item.name, raw, manifest)
                report.outcomes.append(outcome)
                if progress:
                    progress(outcome)
            for cand in self.pending(now):
                if stop is not None and stop.is_set():
                    break
                taken = self._take(cand)
                if taken is None:
                    continue
                report.outcomes.append(taken)
                if progress:
                    progress(taken)
        if register and report.count("ingested"):
            self.register()
        return report

    def watch(
        self,
        stop: threading.Event,
        *,
        progress: Callable[[Outcome], None] | None = None,
        interval: float | None = None,
    ) -> RunReport:
        """Ingest files as they become complete until ``stop`` is set.

        The inbox is looked at every ``interval`` seconds (default
        :func:`poll_interval`): a file is taken once its manifest exists or its size and
        mtime have been unchanged for ``stable_seconds``, so nothing waits a fixed time.
        When ``stop`` is set, the file being processed is finished (its product written and
        registered) and the watch returns; an exception raised meanwhile (a second signal)
        abandons it safely: its raw copy and ledger row make the next run resume it, and
        its temporary product is removed. Returns what was done.
        """
        from insitu.catalog import Catalog

        every = poll_interval(self.spec.stable_seconds) if interval is None else interval
        total = RunReport(self.name)
        with Catalog(self.settings) as catalog:  # a new database is made now, not later
            catalog.collections()
        unregistered = bool(self.store.items("ingested"))  # an earlier run's, maybe
        while not stop.is_set():
            if self.store.items("secured") or self.pending():
                report = self.run(register=False, progress=progress, stop=stop)
                total.outcomes.extend(report.outcomes)
                unregistered = unregistered or report.count("ingested") > 0
            if unregistered:
                try:
                    self.register()
                    unregistered = False
                except ScanInProgress as exc:  # another process scans it: next time
                    log.warning("%s: products not registered yet: %s", self.name, exc)
            stop.wait(every)
        return total

    def reprocess(
        self,
        calibration: str | None = None,
        *,
        register: bool = True,
        progress: Callable[[Outcome], None] | None = None,
    ) -> RunReport:
        """Write a new version of each ingested shot whose product would now differ.

        With ``calibration`` (``ID@VERSION``, a definition of the pipeline's calibrations
        that is in force) only shots acquired inside its validity that have a signal it
        calibrates are looked at; without, every ingested shot (after any change of the
        calibrations or configuration files). A shot whose product id would not change is
        ``unchanged``, so a second reprocess writes nothing. A new version is
        ``v<k+1>`` beside ``v<k>``, which stays readable; the catalog's rescan makes the
        new one the latest. A shot that cannot be reprocessed (say ``E_CAL_MISSING``) is
        ``failed`` and keeps its products.
        """
        self.load_definitions()
        target = self.calibration(calibration) if calibration else None
        report = RunReport(self.name)
        with self._running():
            for item in self.store.items("ingested"):
                outcome = self._reprocess(item, target, calibration)
                if outcome is None:
                    continue
                report.outcomes.append(outcome)
                if progress:
                    progress(outcome)
        if register and report.count("reprocessed"):
            self.register()
        return report

    def calibration(self, ref: str) -> Calibration:
        """The calibration definition ``ID@VERSION`` (in force, not superseded), as
        :meth:`load_definitions` read them."""
        cal_id, _, version = ref.rpartition("@")
        if not cal_id or not version.isdigit():
            raise InvalidRequest(
                f"Calibration {ref!r} is not ID@VERSION (e.g. langmuir_current/probe-A@2)."
            )
        for c in self.calibrations.all:
            if c.id == cal_id and c.version == int(version):
                if c not in self.calibrations.active:
                    raise InvalidRequest(
                        f"Calibration {ref} is superseded; reprocess with the one that "
                        "supersedes it."
                    )
                return c
        known = ", ".join(sorted(f"{c.id}@{c.version}" for c in self.calibrations.all))
        raise NotFound(
            f"No calibration {ref} in the catalog database (defined: {known or 'none'}); "
            "'insitu ingest calibration list' shows them."
        )

    def retry(self, sha: str, *, register: bool = True) -> Outcome:
        """Ingest quarantined raw file ``sha`` again (after its problem was fixed)."""
        item = self.store.item(sha)
        if item is None or item.state != "quarantined":
            raise NotFound(
                f"No quarantined item {sha!r} in pipeline {self.name!r}; "
                f"'insitu ingest quarantine {self.name}' lists them."
            )
        raw = self.store.raw_path(sha, item.name)
        with self._running():
            self.load_definitions()
            manifest = self.store.manifest(sha, item.name)
            outcome = self._process(sha, item.name, raw, manifest)
        retry = {"at": now_iso(), "outcome": outcome.state, "code": outcome.code}
        if outcome.state == "quarantined":
            self.store.add_retry(sha, retry)
        else:
            self.store.resolve(sha, retry)
        if register and outcome.state == "ingested":
            self.register()
        return outcome

    def register(self) -> None:
        """Register (or rescan) the products' collection in the catalog."""
        from insitu.catalog import Catalog
        from insitu.errors import CollectionNotFound

        with Catalog(self.settings) as catalog:
            try:
                catalog.collection(self.collection)
            except CollectionNotFound:
                catalog.add_collection(self.collection, self.output, template="shots")
            catalog.scan(self.collection, progress=False)

    # -- one file ------------------------------------------------------------------------

    def _take(self, cand: Candidate) -> Outcome | None:
        name = cand.path.name
        try:
            sha, raw = self.store.secure(cand.path, cand.manifest)
        except FileChanged as exc:  # still being written: the next look takes it
            log.info("%s: %s", self.name, exc)
            return None
        except FileNotFoundError:  # moved away meanwhile
            return None
        known = self.store.item(sha)
        if known is not None and known.state in ("ingested", "duplicate-ignored"):
            self.store.release(cand.path)
            log.info("%s: %s was ingested before (%s)", self.name, name, known.product)
            return Outcome(name, sha, "duplicate-ignored", product=known.product)
        # Secured, not yet processed: a run killed from here on resumes it (run()); only
        # now may the inbox file go.
        self.store.record(Item(sha, name, "secured", None, None, None, None, now_iso()))
        self.store.release(cand.path)
        return self._process(sha, name, raw, cand.manifest)

    def _reprocess(self, item: Item, target: Calibration | None, ref: str | None) -> Outcome | None:
        record = self.registry.shot(item.shot or "")
        if target is not None and record is not None:  # chosen from the catalog database
            used = {c["id"].split("/", 1)[0] for c in record.calibrations.values()}
            acquired = parse_time(record.acquired_at.replace("Z", "+00:00"))
            if not (target.covers(acquired) and target.signal in used):
                return None
        found = latest_product(self.output, item.shot or "")
        if found is None:
            return Outcome(item.name, item.sha256, "failed", "E_NO_PRODUCT", "no product")
        header = read_header(found)
        if target is not None and not (
            target.covers(header.acquired_at) and target.signal in header.signals()
        ):
            return None
        try:
            return self._rewrite(item, header, ref)
        except IngestError as exc:
            outcome = Outcome(item.name, item.sha256, "failed", exc.code, exc.detail)
        log.error("%s: %s not reprocessed: %s", self.name, item.name, outcome.message)
        return outcome

    def _rewrite(self, item: Item, header: ProductHeader, ref: str | None) -> Outcome:
        """Version k+1 of ``item``'s shot, unless its product id would not change."""
        raw = self.store.raw_path(item.sha256, item.name)
        manifest = self.store.manifest(item.sha256, item.name)
        started = now_iso()
        with open_shot(raw, self.spec, self.calibrations, manifest) as shot:
            self._configure(shot)
            if product_id(item.sha256, shot) == header.product_id:
                if (item.product, item.version) != (
                    header.product_id,
                    header.version,
                ) or self.registry.shot(shot.shot_id, header.version) is None:
                    # a killed run's, or a product of a version before the shot records
                    self._record(item, shot, header.path, header.product_id, header.version)
                return Outcome(item.name, item.sha256, "unchanged", product=header.product_id)
            info = write_product(
                shot,
                output=self.output,
                tmp=self.store.root / "tmp",
                version=header.version + 1,
                raw_sha256=item.sha256,
                pipeline=self.name,
                attributes=self.spec.attributes,
                args=f"ingest reprocess {self.name}" + (f" --calibration {ref}" if ref else ""),
                started=started,
                previous_history=header.history,
                product_format=self.spec.product_format,
                check=lambda summary: check_nan(shot, summary, self.spec.nan),
            )
            self._record(item, shot, info.path, info.product_id, info.version, info.summary)
        log.info("%s: %s -> %s", self.name, item.name, info.path)
        return Outcome(item.name, item.sha256, "reprocessed", product=info.product_id)

    def _configure(self, shot: Shot) -> None:
        """Attach the configuration snapshot of ``shot`` (none when there are none)."""
        snap = resolve_snapshot(self.snapshots, shot.shot_id, shot.acquired_at)
        if snap is not None:
            shot.configuration = snap.tree
            shot.configuration_id = snap.configuration_id

    def _record(
        self,
        item: Item,
        shot: Shot,
        path: Path,
        pid: str,
        version: int,
        summary: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Record the product of ``shot`` and ``item``'s state in one transaction."""
        if summary is None:
            summary = summarize(shot, {})
        root = shot.root
        campaign = root.get("campaign") or root.get("experiment_id")
        record = ShotRecord(
            pipeline=self.name,
            collection=self.collection,
            shot=shot.shot_id,
            version=version,
            latest=True,
            state="ingested",
            product_id=pid,
            raw_sha256=item.sha256,
            campaign=str(campaign) if campaign not in (None, "") else None,
            operator=shot.operator,
            acquired_at=shot.acquired_at.isoformat().replace("+00:00", "Z"),
            ingested_at=now_iso(),
            configuration_id=shot.configuration_id,
            calibrations={s.name: s.calibration.record() for s in shot.signals if s.calibration},
            signals=[s.name for s in shot.signals],
            components=components(shot.configuration) if shot.configuration else [],
            summary=summary,
            pipeline_version=_VERSION,
            path=str(path),
        )
        done = Item(item.sha256, item.name, "ingested", shot.shot_id, None, pid, version, now_iso())
        self.registry.record_shot(record, done)

    def _process(self, sha: str, name: str, raw: Path, manifest: dict[str, Any] | None) -> Outcome:
        started = now_iso()
        try:
            check_manifest(name, sha, raw.stat().st_size, manifest)
            with open_shot(raw, self.spec, self.calibrations, manifest) as shot:
                self._configure(shot)
                self._check_conflict(sha, shot.shot_id)
                info = write_product(
                    shot,
                    output=self.output,
                    tmp=self.store.root / "tmp",
                    version=1,
                    raw_sha256=sha,
                    pipeline=self.name,
                    attributes=self.spec.attributes,
                    args=f"ingest run {self.name} {name}",
                    started=started,
                    product_format=self.spec.product_format,
                    check=lambda summary: check_nan(shot, summary, self.spec.nan),
                )
                for warning in shot.warnings:
                    log.warning("%s: %s: %s", self.name, name, warning)
                item = Item(sha, name, "secured", shot.shot_id, None, None, None, now_iso())
                self._record(item, shot, info.path, info.product_id, info.version, info.summary)
        except IngestError as exc:
            return self._quarantine(sha, name, raw, exc)
        log.info("%s: %s -> %s", self.name, name, info.path)
        return Outcome(name, sha, "ingested", product=info.product_id)

    def _check_conflict(self, sha: str, shot_id: str) -> None:
        other = self.store.ingested_shot(shot_id)
        if other is not None and other.sha256 != sha:
            raise IngestError(
                "E_DUPLICATE_CONFLICT",
                "register",
                f"shot {shot_id!r} was ingested from other bytes ({other.sha256}, file "
                f"{other.name}).",
                "Both raw files are kept: decide which is right, then quarantine or "
                "reprocess accordingly.",
            )

    def _quarantine(self, sha: str, name: str, raw: Path, exc: IngestError) -> Outcome:
        self.store.quarantine(sha, name, raw, exc)
        self.store.record(Item(sha, name, "quarantined", None, exc.code, None, None, now_iso()))
        log.error("%s: %s quarantined: %s", self.name, name, exc)
        return Outcome(name, sha, "quarantined", exc.code, exc.detail)

    def status(self) -> dict[str, Any]:
        """Counts per state, what waits in the inbox, and the quarantined items."""
        items = self.store.items()
        counts: dict[str, int] = {}
        for i in items:
            counts[i.state] = counts.get(i.state, 0) + 1
        return {
            "pipeline": self.name,
            "inbox": str(self.inbox),
            "waiting": len(self.pending()),
            "states": counts,
            "quarantined": [
                {"sha256": i.sha256, "file": i.name, "code": i.code}
                for i in items
                if i.state == "quarantined"
            ],
        }

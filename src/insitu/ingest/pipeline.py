"""A pipeline: take what is complete in the inbox, secure it, make products, register them.

Every raw file ends in one of three states, recorded in the ledger: ``ingested``,
``duplicate-ignored`` (these bytes were ingested before: nothing is written) or
``quarantined`` (a report says why and what to do; other files go on). One run of a
pipeline at a time (a lock file); each run first removes what a killed run left in ``tmp``.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insitu.errors import ConfigError, IngestError, NotFound
from insitu.ingest.calibration import Calibrations, load_calibrations
from insitu.ingest.product import write_product
from insitu.ingest.shot import open_shot, resolve_configuration
from insitu.ingest.store import (
    Candidate,
    Item,
    RawStore,
    candidates,
    check_manifest,
    now_iso,
)
from insitu.settings import PipelineSettings, Settings

__all__ = ["Outcome", "Pipeline", "RunReport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one raw file."""

    name: str
    sha256: str
    state: str  # ingested | duplicate-ignored | quarantined
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
        """Nothing was quarantined."""
        return self.count("quarantined") == 0


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
        self.store = RawStore(root.expanduser())
        self.output = (
            Path(self.spec.output).expanduser()
            if self.spec.output
            else self.store.root / "products"
        )
        self.output.mkdir(parents=True, exist_ok=True)
        self.inbox = Path(self.spec.source).expanduser()
        self.collection = self.spec.collection or name
        # Checked before any shot: a bad definition stops the run here.
        self.calibrations: Calibrations = load_calibrations(self.spec.calibrations)

    def close(self) -> None:
        """Close the ledger."""
        self.store.close()

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
    ) -> RunReport:
        """Ingest every complete inbox file (and any a killed run left secured but not
        processed); register the products in the catalog."""
        report = RunReport(self.name)
        with self._running():
            for item in self.store.items("secured"):  # a killed run's
                raw = self.store.raw_path(item.sha256, item.name)
                manifest = self.store.manifest(item.sha256, item.name)
                outcome = self._process(item.sha256, item.name, raw, manifest)
                report.outcomes.append(outcome)
                if progress:
                    progress(outcome)
            for cand in self.pending(now):
                outcome = self._take(cand)
                report.outcomes.append(outcome)
                if progress:
                    progress(outcome)
        if register and report.count("ingested"):
            self.register()
        return report

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

    def _take(self, cand: Candidate) -> Outcome:
        name = cand.path.name
        sha, raw = self.store.secure(cand.path, cand.manifest)
        known = self.store.item(sha)
        if known is not None and known.state in ("ingested", "duplicate-ignored"):
            log.info("%s: %s was ingested before (%s)", self.name, name, known.product)
            return Outcome(name, sha, "duplicate-ignored", product=known.product)
        # Secured, not yet processed: a run killed from here on resumes it (run()).
        self.store.record(Item(sha, name, "secured", None, None, None, None, now_iso()))
        return self._process(sha, name, raw, cand.manifest)

    def _process(self, sha: str, name: str, raw: Path, manifest: dict[str, Any] | None) -> Outcome:
        started = now_iso()
        try:
            check_manifest(name, sha, raw.stat().st_size, manifest)
            with open_shot(raw, self.spec, self.calibrations, manifest) as shot:
                resolve_configuration(self.spec.configurations, shot)
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
                )
                for warning in shot.warnings:
                    log.warning("%s: %s: %s", self.name, name, warning)
                shot_id = shot.shot_id
        except IngestError as exc:
            return self._quarantine(sha, name, raw, exc)
        self.store.record(
            Item(sha, name, "ingested", shot_id, None, info.product_id, info.version, now_iso())
        )
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

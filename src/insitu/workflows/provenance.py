"""The provenance record of a workflow run, ``runs/<run_id>/run.json`` (specification
section 6): which workflow (its hash), which interpreter and package versions, and per node
its component, status, timings, exit code, log, the content hashes of its inputs and
outputs, its cache key and whether it came from the cache."""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NodeRecord", "RunRecord", "environment"]

RUN_SCHEMA = "insitu.run/1"


@dataclass
class NodeRecord:
    """One node of a run. ``status``: done, cached, failed, skipped (an upstream failed) or
    cancelled (the run was)."""

    node: str
    component: str
    hash: str
    status: str = "pending"
    cached: bool = False
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    log: str | None = None
    workdir: str | None = None
    cache_key: str | None = None
    branches: int | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunRecord:
    """A whole run; :meth:`write` writes run.json."""

    run_id: str
    workflow: str
    workflow_hash: str
    executor: str
    workers: int | None
    directory: str
    params: dict[str, Any]
    started: float
    finished: float | None = None
    status: str = "running"
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)  # who asked for it, if not a CLI

    @property
    def cache_hits(self) -> list[str]:
        return sorted(n for n, r in self.nodes.items() if r.cached)

    @property
    def failed(self) -> list[NodeRecord]:
        return [r for r in self.nodes.values() if r.status == "failed"]

    def as_dict(self) -> dict[str, Any]:
        doc = {"schema": RUN_SCHEMA, **asdict(self)}
        doc["cache_hits"] = self.cache_hits
        return doc

    def write(self) -> Path:
        path = Path(self.directory) / "run.json"
        path.write_text(json.dumps(self.as_dict(), indent=1, default=str) + "\n", encoding="utf-8")
        return path


def environment(python: str = sys.executable) -> dict[str, Any]:
    """Interpreter, platform and installed distributions (``pip freeze`` without pip).

    Listing the distributions takes about 150 ms, so the list is kept while no folder of
    ``sys.path`` changes (installing or removing a package changes its folder's mtime).
    """
    stamps = []
    for entry in sys.path:
        try:
            stamps.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return {
        "python": python,
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": list(_packages(tuple(stamps))),
    }


@functools.lru_cache(maxsize=4)
def _packages(stamps: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    from importlib.metadata import distributions

    names = {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]}
    return tuple(sorted(names, key=str.lower))

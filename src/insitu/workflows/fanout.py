"""``map``: a node run once per element of a list input, in at most ``max_branches``
branches (NaaVRE's splitter and merger). The list is split into elements, each written as
that input of its own ``inputs.json`` (inline JSON or a file, as any output); the elements
are cut into ``max_branches`` contiguous batches, one backend job each, which runs the task
once per element; each output of the node is then the list of the branches' values, in
element order, written as one output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest
from insitu.workflows._runtime import _insitu_read, _insitu_write
from insitu.workflows.noderun import NodeJob
from insitu.workflows.workflow import MapSpec

__all__ = ["merge_branches", "split_branches"]


def split_branches(
    node: str,
    spec: MapSpec,
    inputs: dict[str, dict[str, Any]],
    work: Path,
    task: str,
    flags: tuple[str, ...],
    env: dict[str, str],
) -> list[NodeJob]:
    """The jobs of a mapped node: one per batch of elements of input ``spec.over``."""
    items = _insitu_read(spec.over, inputs[spec.over], "/")
    if not isinstance(items, list | tuple):
        raise InvalidRequest(
            f"E-WF-MAP: node {node!r} maps over input {spec.over!r}, which is a "
            f"{type(items).__name__}, not a list; make the producing cell return a list"
        )
    dirs: list[str] = []
    each: list[dict[str, Any]] = []
    for k, item in enumerate(items):
        branch = work / "branches" / f"{k:05d}"
        (branch / "in").mkdir(parents=True, exist_ok=True)
        entry = _insitu_write(spec.over, item, str(branch / "in"))
        if entry["kind"] == "file":
            entry["path"] = str(branch / "in" / entry["path"])
        dirs.append(str(branch))
        each.append({**inputs, spec.over: entry})
    n = min(spec.max_branches, len(items))
    jobs = []
    for b in range(n):  # contiguous batches of nearly equal size
        lo, hi = b * len(items) // n, (b + 1) * len(items) // n
        jobs.append(NodeJob(node, task, tuple(dirs[lo:hi]), tuple(each[lo:hi]), flags, env))
    return jobs


def merge_branches(metadata: dict[str, Any], runs: list[dict[str, Any]], work: Path) -> Any:
    """Write each output of a mapped node as the list of its branches' values into
    ``work/out``; that outputs.json."""
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    merged = {}
    for port in metadata.get("outputs", []):
        name = port["name"]
        values = [_insitu_read(name, r["outputs"][name], r["outdir"]) for r in runs]
        merged[name] = _insitu_write(name, values, str(out))
    (out / "outputs.json").write_text(json.dumps(merged, indent=1, sort_keys=True))
    return merged

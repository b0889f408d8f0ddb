"""``workflow.yaml``: components composed into a graph, and its validation (specification
section 5).

The document is canonical (keys in a fixed order, one edge per line, sorted) so that two
versions diff cleanly::

    schema: insitu.workflow/1
    name: analysis
    source_notebook: analysis.ipynb
    params:
      param_n: 50
    nodes:
      load:
        component: components/load-1a2b3c4d     # relative to workflow.yaml
        hash: 1a2b3c4d...                        # the component's full hash
        cell: c1
      tile:
        component: components/tile-5e6f7a8b
        hash: 5e6f7a8b...
        map: {over: tiles, max_branches: 8}      # one branch per element of input 'tiles'
    edges:
    - {from: load.tiles, to: tile.tiles}

A node's parameters take the workflow's ``params`` of the same name, else the component's
default. ``map`` runs the node once per element of the list bound to input ``over``, in at
most ``max_branches`` branches (elements split into contiguous batches), and each output of
the node becomes the list of the branches' outputs, in element order.

Validation (:meth:`Workflow.validate`) reports every problem at once, each with a code and
what to do: a component folder missing or holding another hash (``E-WF-COMPONENT``), an edge
naming an unknown node or port (``E-WF-PORT``), a required input bound by no edge
(``E-WF-UNBOUND``) or by two (``E-WF-BOUND-TWICE``), typed ports of different types
(``E-WF-TYPE``), a cycle (``E-WF-CYCLE``), a bad ``map`` (``E-WF-MAP``); a node with no
edge at all is allowed and reported (``W-WF-UNCONNECTED``). The same component may be used
by two nodes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest, NotFound
from insitu.workflows.codes import (
    E_WF_BOUND_TWICE,
    E_WF_COMPONENT,
    E_WF_CYCLE,
    E_WF_MAP,
    E_WF_PORT,
    E_WF_TYPE,
    E_WF_UNBOUND,
    W_WF_UNCONNECTED,
    Diagnostic,
)

__all__ = ["SCHEMA", "MapSpec", "Node", "Workflow", "WorkflowInvalid", "load_workflow"]

SCHEMA = "insitu.workflow/1"


class WorkflowInvalid(InvalidRequest):
    """A workflow.yaml that does not validate; ``diagnostics`` holds every problem."""

    def __init__(self, path: str, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        lines = "\n".join(f"  {d.code}: {d.message}" for d in diagnostics)
        super().__init__(f"{path} is not a valid workflow:\n{lines}")


@dataclass(frozen=True)
class MapSpec:
    """Fan-out of a node over the list bound to its input ``over``."""

    over: str
    max_branches: int = 8


@dataclass(frozen=True)
class Node:
    """One node: a component folder (relative to the workflow) and its expected hash."""

    id: str
    component: str
    hash: str
    cell: str | None = None
    map: MapSpec | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def ports(self, kind: str) -> dict[str, dict[str, Any]]:
        """``inputs``, ``outputs`` or ``params`` of the component, by name."""
        return {p["name"]: p for p in self.metadata.get(kind, [])}


@dataclass(frozen=True)
class WorkflowEdge:
    """``source`` node's output ``source_port`` feeds ``target``'s input ``target_port``."""

    source: str
    source_port: str
    target: str
    target_port: str

    def as_dict(self) -> dict[str, str]:
        return {
            "from": f"{self.source}.{self.source_port}",
            "to": f"{self.target}.{self.target_port}",
        }


@dataclass
class Workflow:
    """A parsed workflow.yaml; ``directory`` is where relative component paths start."""

    name: str
    nodes: dict[str, Node]
    edges: list[WorkflowEdge]
    params: dict[str, Any] = field(default_factory=dict)
    source_notebook: str = ""
    secrets: list[str] = field(default_factory=list)
    directory: Path = field(default_factory=Path)
    warnings: list[Diagnostic] = field(default_factory=list)

    # ---------------------------------------------------------------- document
    def as_dict(self) -> dict[str, Any]:
        """The canonical document (what :meth:`dump` writes)."""
        nodes: dict[str, Any] = {}
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            entry: dict[str, Any] = {"component": n.component, "hash": n.hash}
            if n.cell:
                entry["cell"] = n.cell
            if n.map:
                entry["map"] = {"over": n.map.over, "max_branches": n.map.max_branches}
            nodes[nid] = entry
        doc: dict[str, Any] = {"schema": SCHEMA, "name": self.name}
        if self.source_notebook:
            doc["source_notebook"] = self.source_notebook
        doc["params"] = {k: self.params[k] for k in sorted(self.params)}
        if self.secrets:
            doc["secrets"] = sorted(self.secrets)
        doc["nodes"] = nodes
        doc["edges"] = sorted((e.as_dict() for e in self.edges), key=lambda d: (d["to"], d["from"]))
        return doc

    def dump(self) -> str:
        """workflow.yaml's text: block style, fixed key order, one edge per line."""
        import yaml  # type: ignore[import-untyped]

        doc = self.as_dict()
        edges = doc.pop("edges")
        text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
        text += "edges:\n" if edges else "edges: []\n"
        for e in edges:
            text += f"- {{from: {e['from']}, to: {e['to']}}}\n"
        return text

    def write(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.write_text(self.dump(), encoding="utf-8")
        return target

    @property
    def hash(self) -> str:
        """sha256 of the canonical document as JSON (comments and layout do not count)."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    # ---------------------------------------------------------------- graph
    def upstream(self) -> dict[str, set[str]]:
        """Each node's producers."""
        deps: dict[str, set[str]] = {n: set() for n in self.nodes}
        for e in self.edges:
            if e.target in deps and e.source in self.nodes:
                deps[e.target].add(e.source)
        return deps

    def order(self) -> list[str]:
        """Node ids in a topological order (ties by id)."""
        ts = TopologicalSorter({n: sorted(d) for n, d in sorted(self.upstream().items())})
        return list(ts.static_order())

    def inputs_of(self, node: str) -> list[WorkflowEdge]:
        return [e for e in self.edges if e.target == node]

    def component_dir(self, node: str) -> Path:
        return (self.directory / self.nodes[node].component).resolve()

    # ---------------------------------------------------------------- validation
    def validate(self, path: str = "workflow.yaml") -> list[Diagnostic]:
        """Raise :class:`WorkflowInvalid` listing every error; return the warnings."""
        errors: list[Diagnostic] = []
        for nid, n in self.nodes.items():
            errors += _check_component(self, nid, n)
        loaded = {nid for nid, n in self.nodes.items() if n.metadata}
        bound: dict[tuple[str, str], list[WorkflowEdge]] = {}
        for e in self.edges:
            problems = _check_edge(self, e, loaded)
            errors += problems
            if not problems:
                bound.setdefault((e.target, e.target_port), []).append(e)
        for nid in sorted(loaded):
            n = self.nodes[nid]
            for port in n.ports("inputs").values():
                if port.get("kind") == "code" or not port.get("required", True):
                    continue
                got = bound.get((nid, port["name"]), [])
                if not got:
                    errors.append(
                        E_WF_UNBOUND.at(
                            f"node {nid!r}: input {port['name']!r} is bound by no edge; add "
                            f"'- {{from: NODE.PORT, to: {nid}.{port['name']}}}' to edges",
                            name=f"{nid}.{port['name']}",
                        )
                    )
                elif len(got) > 1:
                    froms = ", ".join(f"{e.source}.{e.source_port}" for e in got)
                    errors.append(
                        E_WF_BOUND_TWICE.at(
                            f"node {nid!r}: input {port['name']!r} is bound by {len(got)} edges "
                            f"({froms}); keep one of them",
                            name=f"{nid}.{port['name']}",
                        )
                    )
            if n.map and n.map.over not in n.ports("inputs"):
                errors.append(
                    E_WF_MAP.at(
                        f"node {nid!r}: map over {n.map.over!r}, which is not one of its "
                        f"inputs ({', '.join(sorted(n.ports('inputs'))) or 'none'})",
                        name=nid,
                    )
                )
            if n.map and n.map.max_branches < 1:
                errors.append(
                    E_WF_MAP.at(f"node {nid!r}: map max_branches must be at least 1", name=nid)
                )
        try:
            self.order()
        except CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            errors.append(
                E_WF_CYCLE.at(f"the edges form a cycle ({cycle}); remove one of its edges")
            )
        if errors:
            raise WorkflowInvalid(path, errors)
        touched = {e.source for e in self.edges} | {e.target for e in self.edges}
        self.warnings = [
            W_WF_UNCONNECTED.at(f"node {nid!r} has no edge; it runs on its own", name=nid)
            for nid in sorted(self.nodes)
            if nid not in touched and len(self.nodes) > 1
        ]
        return self.warnings


def _check_component(wf: Workflow, nid: str, n: Node) -> list[Diagnostic]:
    folder = wf.directory / n.component
    meta_path = folder / "component.json"
    if not meta_path.is_file():
        return [
            E_WF_COMPONENT.at(
                f"node {nid!r}: no component.json in {str(folder)!r}; extract the component "
                "again (insitu workflow from-notebook) or correct the node's 'component'",
                name=nid,
            )
        ]
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("hash") != n.hash:
        return [
            E_WF_COMPONENT.at(
                f"node {nid!r}: {str(folder)!r} holds component {str(meta.get('hash'))[:12]}, "
                f"the workflow wants {n.hash[:12]}; point 'component' at the right folder or "
                "set 'hash' to the one in its component.json",
                name=nid,
            )
        ]
    n.metadata.update(meta)
    return []


def _type_of(port: dict[str, Any]) -> str:
    t = str(port.get("type") or "any")
    return "any" if t in ("any", "") else t


def _check_edge(wf: Workflow, e: WorkflowEdge, loaded: set[str]) -> list[Diagnostic]:
    label = f"{e.source}.{e.source_port} -> {e.target}.{e.target_port}"
    out: list[Diagnostic] = []
    for nid in (e.source, e.target):
        if nid not in wf.nodes:
            out.append(
                E_WF_PORT.at(
                    f"edge {label}: no node {nid!r}; the nodes are "
                    f"{', '.join(sorted(wf.nodes)) or 'none'}",
                    name=nid,
                )
            )
    if out or e.source not in loaded or e.target not in loaded:
        return out
    outs = wf.nodes[e.source].ports("outputs")
    ins = wf.nodes[e.target].ports("inputs")
    if e.source_port not in outs:
        out.append(
            E_WF_PORT.at(
                f"edge {label}: node {e.source!r} has no output {e.source_port!r}; its outputs "
                f"are {', '.join(sorted(outs)) or 'none'}",
                name=f"{e.source}.{e.source_port}",
            )
        )
    if e.target_port not in ins:
        out.append(
            E_WF_PORT.at(
                f"edge {label}: node {e.target!r} has no input {e.target_port!r}; its inputs "
                f"are {', '.join(sorted(ins)) or 'none'}",
                name=f"{e.target}.{e.target_port}",
            )
        )
    if not out:
        src, dst = _type_of(outs[e.source_port]), _type_of(ins[e.target_port])
        if wf.nodes[e.target].map and wf.nodes[e.target].map.over == e.target_port:  # type: ignore[union-attr]
            src = "any" if src in ("any", "list") else src
        if "any" not in (src, dst) and src != dst:
            out.append(
                E_WF_TYPE.at(
                    f"edge {label}: output type {src} does not fit input type {dst}; connect "
                    "an output of the input's type",
                    name=f"{e.target}.{e.target_port}",
                )
            )
    return out


def _port(text: Any, where: str, path: str) -> tuple[str, str]:
    if not isinstance(text, str) or text.count(".") != 1 or not all(text.split(".")):
        raise InvalidRequest(
            f"{path}: edge {where} is {text!r}; write it as NODE.PORT, e.g. 'load.ds'"
        )
    a, b = text.split(".")
    return a, b


def _parse(doc: Any, path: str, directory: Path) -> Workflow:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InvalidRequest(
            f"{path}: schema is {got!r}, expected {SCHEMA!r}; is this a workflow.yaml made "
            "by 'insitu workflow from-notebook'?"
        )
    nodes: dict[str, Node] = {}
    for nid, spec in (doc.get("nodes") or {}).items():
        if not isinstance(spec, dict) or "component" not in spec or "hash" not in spec:
            raise InvalidRequest(
                f"{path}: node {nid!r} needs 'component' (its folder) and 'hash'; got {spec!r}"
            )
        if "." in str(nid):
            raise InvalidRequest(f"{path}: node id {nid!r} may not contain '.'; rename it")
        m = spec.get("map")
        mapspec = None
        if m is not None:
            if not isinstance(m, dict) or "over" not in m:
                raise InvalidRequest(
                    f"{path}: node {nid!r}: map is {m!r}; write it as "
                    "{over: INPUT, max_branches: N}"
                )
            mapspec = MapSpec(str(m["over"]), int(m.get("max_branches", 8)))
        nodes[str(nid)] = Node(
            str(nid), str(spec["component"]), str(spec["hash"]), spec.get("cell"), mapspec
        )
    edges = []
    for i, e in enumerate(doc.get("edges") or []):
        if not isinstance(e, dict) or set(e) != {"from", "to"}:
            raise InvalidRequest(f"{path}: edge {i} is {e!r}; write it as {{from: N.P, to: N.P}}")
        edges.append(
            WorkflowEdge(*_port(e["from"], f"{i} 'from'", path), *_port(e["to"], f"{i} 'to'", path))
        )
    return Workflow(
        name=str(doc.get("name") or Path(path).parent.name),
        nodes=nodes,
        edges=edges,
        params=dict(doc.get("params") or {}),
        source_notebook=str(doc.get("source_notebook") or ""),
        secrets=list(doc.get("secrets") or []),
        directory=directory,
    )


def load_workflow(path: str | os.PathLike[str], *, validate: bool = True) -> Workflow:
    """Read and (by default) validate a workflow.yaml; a directory means its workflow.yaml."""
    import yaml

    p = Path(path)
    if p.is_dir():
        p = p / "workflow.yaml"
    if not p.is_file():
        raise NotFound(
            f"No workflow file {str(p)!r}; make one with "
            "'insitu workflow from-notebook NOTEBOOK --out DIR'."
        )
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{p} is not valid YAML: {exc}") from exc
    wf = _parse(doc, str(p), p.parent.resolve())
    if validate:
        wf.validate(str(p))
    return wf

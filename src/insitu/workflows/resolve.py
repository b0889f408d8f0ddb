"""A notebook resolved to a variable-level DAG: which cell's version of each name every cell
reads (edges labelled ``name@producer``), the notebook's parameters, each cell's outputs.

Walks the code cells in notebook order keeping ``last: name → producer`` (specification
section 2):

* a read binds to its last writer; with none it is a parameter (``param_``/``conf_``/
  ``secret_`` cells, or the cell tagged ``parameters`` as papermill does), a builtin
  (ignored unless an earlier cell rebinds it), ``W-OUT-OF-ORDER`` (only a later cell writes
  it) or ``E-UNRESOLVED`` (also after ``del``, naming the cell that deleted it);
* reads of functions, classes, imports and ``conf_`` names are *code edges*: the consumer
  re-emits the defining statement (transitively, with what that statement uses), and a
  function's free variables become reads of the consumer at its own position (Kale's rule);
  calling a function that assigns a ``global`` makes the calling cell write that name;
* a name a cell binds on some paths only reads the earlier version too (pass-through), so
  the cell's output is always defined; with no earlier version readers get ``W-MAYBE-UNBOUND``;
* ``outputs(j)``: names of ``j`` that some later read binds to (the live-out set).
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from insitu.workflows.analysis import analyse_cell, cell_tree
from insitu.workflows.cell import CellAnalysis, Import
from insitu.workflows.codes import (
    E_UNRESOLVED,
    W_DEF_VALUE_CHANGED,
    W_MAYBE_UNBOUND,
    W_OUT_OF_ORDER,
    W_OUTPUT_NOT_SERIALIZABLE,
    Code,
    Diagnostic,
)

__all__ = ["PREFIXES", "CellNode", "Edge", "NotebookGraph", "Param", "resolve_cells"]

PREFIXES = {"param_": "param", "conf_": "conf", "secret_": "secret"}
"""Name prefixes that make a notebook-level parameter, configuration or secret (NaaVRE's)."""

_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "get_ipython", "display"}

EdgeKind = Literal["value", "code", "import", "conf"]
TargetKind = Literal["value", "code", "import", "conf", "param", "secret"]


@dataclass(frozen=True)
class Edge:
    """``consumer`` uses ``name`` as ``producer`` left it (``kind`` value: data; code, import,
    conf: the defining statement is re-emitted in the consumer)."""

    name: str
    producer: str
    consumer: str
    kind: EdgeKind

    @property
    def label(self) -> str:
        """``name@producer``."""
        return f"{self.name}@{self.producer}"


@dataclass(frozen=True)
class Param:
    """A notebook parameter (``param``: JSON default), configuration (``conf``: an expression
    re-emitted where it is used) or secret (``secret``: from the environment, no default)."""

    name: str
    kind: Literal["param", "conf", "secret"]
    cell: str
    type: str
    default: Any = None
    expression: str = ""


@dataclass(frozen=True)
class CellNode:
    """One code cell resolved against the cells before it."""

    id: str
    index: int
    source: str
    analysis: CellAnalysis
    title: str
    parameter_cell: bool
    inputs: tuple[Edge, ...]
    code: tuple[Edge, ...]
    prelude: tuple[tuple[int, int], ...]
    imports: tuple[Import, ...]
    params: tuple[str, ...]
    secrets: tuple[str, ...]
    writes: tuple[str, ...]
    outputs: tuple[str, ...]
    unresolved: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The ``E-`` findings of this cell."""
        return tuple(d for d in self.diagnostics if d.severity == "error")

    def as_dict(self) -> dict[str, Any]:
        """What ``insitu cells extract --json`` prints for the cell."""
        a = self.analysis
        return {
            "cell": self.id,
            "index": self.index,
            "title": self.title,
            "parameter_cell": self.parameter_cell,
            "inputs": [{"name": e.name, "from": e.label} for e in self.inputs],
            "code": [{"name": e.name, "from": e.label, "kind": e.kind} for e in self.code],
            "outputs": list(self.outputs),
            "parameters": list(self.params),
            "secrets": list(self.secrets),
            "imports": sorted({"." * i.level + i.module for i in self.imports}),
            "reads": list(a.reads),
            "writes": list(self.writes),
            "mutates": list(a.mutates),
            "maybe_writes": list(a.maybe_writes),
            "unresolved": list(self.unresolved),
            "warnings": [d.as_dict() for d in self.diagnostics],
            "source_hash": a.source_hash,
        }


@dataclass(frozen=True)
class NotebookGraph:
    """The resolved notebook: cells in order, parameters, and every edge."""

    cells: tuple[CellNode, ...]
    params: tuple[Param, ...]

    @property
    def edges(self) -> tuple[Edge, ...]:
        """Every data and code edge, in consumer order."""
        return tuple(e for c in self.cells for e in (*c.inputs, *c.code))

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Every finding of every cell."""
        return tuple(d for c in self.cells for d in c.diagnostics)

    def cell(self, cell_id: str) -> CellNode:
        """The cell with that id (``KeyError`` if none)."""
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise KeyError(cell_id)

    def param(self, name: str) -> Param:
        """The parameter of that name (``KeyError`` if none)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """Deterministic JSON form (the same bytes for the same code, whatever the outputs,
        execution counts or metadata of the notebook)."""
        return {
            "cells": [c.as_dict() for c in self.cells],
            "params": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "cell": p.cell,
                    "type": p.type,
                    **({"default": p.default} if p.kind == "param" else {}),
                    **({"expression": p.expression} if p.kind == "conf" else {}),
                }
                for p in self.params
            ],
            "edges": [
                {"from": e.producer, "to": e.consumer, "name": e.name, "kind": e.kind}
                for e in self.edges
            ],
        }


class _Target(NamedTuple):  # a tuple: made for every binding of every cell, so cheap
    kind: TargetKind
    cell: int
    stmt: int = -1
    maybe: bool = False


@dataclass
class _Use:
    """What one consumer needs, filled while its reads are resolved."""

    inputs: dict[str, int] = field(default_factory=dict)
    code: dict[str, tuple[int, EdgeKind]] = field(default_factory=dict)
    prelude: dict[tuple[int, int], None] = field(default_factory=dict)
    params: dict[str, None] = field(default_factory=dict)
    secrets: dict[str, None] = field(default_factory=dict)
    extra_writes: dict[str, None] = field(default_factory=dict)
    unresolved: dict[str, None] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(value), "any"
    )


def _prefix_kind(name: str) -> Literal["param", "conf", "secret"] | None:
    for prefix, kind in PREFIXES.items():
        if name.startswith(prefix):
            return kind  # type: ignore[return-value]
    return None


class _Resolver:
    def __init__(
        self, ids: list[str], sources: list[str], tags: list[list[str]], allow_star_imports: bool
    ) -> None:
        self.ids = ids
        self.analyses = [analyse_cell(s) for s in sources]
        self.sources = sources
        self.tags = tags
        self.allow_star = allow_star_imports
        self.last: dict[str, _Target] = {}
        self.deleted_in: dict[str, int] = {}
        self.star: list[tuple[int, int, str]] = []
        self.resolved: list[dict[str, _Target | None]] = []
        self.params: dict[str, Param] = {}
        self.parameter_cells: list[bool | None] = [None] * len(sources)
        self.writers: dict[str, list[int]] = {}
        for i, a in enumerate(self.analyses):
            for n in (*a.writes, *a.maybe_writes, *a.mutates):
                self.writers.setdefault(n, []).append(i)

    # -- lookup --------------------------------------------------------------------------

    def say(self, use: _Use, code: Code, i: int, name: str, line: int | None, msg: str) -> None:
        """Report ``code`` about ``name`` in cell ``i``."""
        use.diagnostics.append(code.at(msg, cell=self.ids[i], line=line, name=name))

    def lookup(
        self, name: str, i: int, use: _Use, line: int | None, why: str = ""
    ) -> _Target | None:
        t = self.last.get(name)
        if t is not None:
            if t.maybe:
                self.say(
                    use,
                    W_MAYBE_UNBOUND,
                    i,
                    name,
                    line,
                    f"{name!r} is bound by cell {self.ids[t.cell]} on some paths only; bind it "
                    "on every path (an else branch, or a value before the if/loop/try).",
                )
            return t
        if name in _BUILTINS:
            return None
        if name in self.deleted_in:
            use.unresolved.setdefault(name)
            self.say(
                use,
                E_UNRESOLVED,
                i,
                name,
                line,
                f"{name!r}{why} was deleted in cell {self.ids[self.deleted_in[name]]}; read it "
                "before the del, or define it again.",
            )
            return None
        if self.star and self.allow_star:
            j, stmt, _ = self.star[-1]
            return _Target("import", j, stmt)
        later = [j for j in self.writers.get(name, []) if j > i]
        use.unresolved.setdefault(name)
        if later:
            self.say(
                use,
                W_OUT_OF_ORDER,
                i,
                name,
                line,
                f"{name!r}{why} is read here but first defined by a later cell "
                f"{self.ids[later[0]]}; move that cell up.",
            )
        else:
            star = (
                f" It may come from 'from {self.star[-1][2]} import *' (E-STAR-IMPORT)."
                if self.star
                else ""
            )
            self.say(
                use,
                E_UNRESOLVED,
                i,
                name,
                line,
                f"{name!r}{why} is read but no earlier cell defines it; define it in an "
                f"earlier cell or make it a parameter (param_{name} = ...).{star}",
            )
        return None

    def use(self, name: str, t: _Target | None, use: _Use, i: int) -> None:
        if t is None:
            return
        if t.kind == "value":
            prev = use.inputs.setdefault(name, t.cell)
            if prev != t.cell:
                self.say(
                    use,
                    W_DEF_VALUE_CHANGED,
                    i,
                    name,
                    None,
                    f"this cell needs {name}@{self.ids[prev]} and {name}@{self.ids[t.cell]} "
                    f"(a definition it re-creates was made with the other); the component "
                    f"has {name}@{self.ids[prev]} only. Give one of them another name.",
                )
        elif t.kind == "param":
            use.params.setdefault(name)
        elif t.kind == "secret":
            use.secrets.setdefault(name)
        else:
            use.code.setdefault(name, (t.cell, t.kind))
            self.inline(t.cell, t.stmt, use, i)

    def inline(self, j: int, stmt: int, use: _Use, i: int) -> None:
        """Re-emit statement ``stmt`` of cell ``j`` in consumer ``i``, with what it needs."""
        if (j, stmt) in use.prelude:
            return
        use.prelude[(j, stmt)] = None
        a = self.analyses[j]
        for u in a.stmt_uses[stmt]:
            t = self.bound_before(j, stmt, u)
            later = any(u in dict(b) for b in a.stmt_binds[stmt + 1 :])
            if t is not None and t.kind == "value" and t.cell == j and later:
                self.say(
                    use,
                    W_DEF_VALUE_CHANGED,
                    i,
                    u,
                    None,
                    f"cell {self.ids[j]} binds {u!r} again after a definition made with it; "
                    f"this cell re-creates that definition with the value the cell ends with "
                    f"({u}@{self.ids[j]}). Give the two values different names.",
                )
            self.use(u, t, use, i)
        for d in a.code_defs:
            if d.stmt != stmt:
                continue
            for fv in d.free_vars:  # looked up when called, so at the consumer's position
                if fv == d.name:
                    continue
                t = self.lookup(fv, i, use, None, f" (a free variable of {d.name})")
                self.use(fv, t, use, i)
            use.extra_writes.update(dict.fromkeys(d.global_writes))

    def bound_before(self, j: int, stmt: int, name: str) -> _Target | None:
        """What ``name`` was, in cell ``j``, just before its statement ``stmt`` ran."""
        a = self.analyses[j]
        for s in range(stmt - 1, -1, -1):
            kind = dict(a.stmt_binds[s]).get(name)
            if kind is not None:
                return _Target(_edge_kind(kind), j, s)
        return self.resolved[j].get(name)

    # -- the walk ------------------------------------------------------------------------

    def run(self) -> list[_Use]:
        uses = []
        for i, a in enumerate(self.analyses):
            use = _Use()
            uses.append(use)
            self.resolved.append({})
            if not a.ok:
                continue
            lines = dict(a.read_lines)
            for name in a.reads:
                if name in a.maybe_reads and name not in self.last:
                    # bound on some paths of this very cell, and by no cell before it
                    self.say(
                        use,
                        W_MAYBE_UNBOUND,
                        i,
                        name,
                        lines.get(name),
                        f"{name!r} is read after this cell binds it on some paths only; "
                        "bind it on every path (an else branch, or a value before the "
                        "if/loop/try).",
                    )
                    continue
                t = self.lookup(name, i, use, lines.get(name))
                self.resolved[i][name] = t
                self.use(name, t, use, i)
            if self.is_parameter_cell(i):
                self.register_params(i)
                continue
            for m in a.maybe_writes:  # pass-through: the earlier version when not bound here
                t = self.last.get(m)
                if t is not None and t.kind == "value" and not t.maybe:
                    use.inputs.setdefault(m, t.cell)
            self.update(i, a, use)
        return uses

    def is_parameter_cell(self, i: int) -> bool:
        if self.parameter_cells[i] is None:
            self.parameter_cells[i] = self._is_parameter_cell(i)
        return bool(self.parameter_cells[i])

    def _is_parameter_cell(self, i: int) -> bool:
        a = self.analyses[i]
        if "parameters" in self.tags[i]:
            return True
        values = [b.name for b in a.bindings if b.kind == "value"]
        return bool(values) and not a.mutates and all(_prefix_kind(n) for n in values)

    def register_params(self, i: int) -> None:
        a = self.analyses[i]
        tree = cell_tree(self.sources[i])
        for b in a.bindings:
            if b.kind != "value":
                self.last[b.name] = _Target(_edge_kind(b.kind), i, b.stmt)
                continue
            kind = _prefix_kind(b.name) or "param"
            stmt = tree.body[b.stmt]
            value_node = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
            default: Any = None
            literal = False
            if value_node is not None:
                try:
                    default = ast.literal_eval(value_node)
                    literal = True
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    pass
            if kind == "param" and not literal:
                kind = "conf"  # an expression, not a value: re-emitted where it is used
            if kind == "secret":
                default = None
            expr = ast.unparse(value_node) if value_node is not None else ""
            self.params[b.name] = Param(
                b.name,
                kind,
                self.ids[i],
                _type_name(default) if literal else "any",
                default if kind == "param" else None,
                expr if kind == "conf" else "",
            )
            self.last[b.name] = _Target(kind, i, b.stmt)

    def update(self, i: int, a: CellAnalysis, use: _Use) -> None:
        for b in a.bindings:
            if b.kind == "value" and _prefix_kind(b.name) == "secret":
                # a secret is never data passed on: later cells take it from the environment
                self.params.setdefault(b.name, Param(b.name, "secret", self.ids[i], "any"))
                self.last[b.name] = _Target("secret", i, b.stmt)
                continue
            maybe = b.name in a.maybe_writes and b.name not in use.inputs
            prev = self.last.get(b.name)
            if maybe and prev is not None and prev.kind != "value":
                maybe = False
            self.last[b.name] = _Target(_edge_kind(b.kind), i, b.stmt, maybe)
        for m in (*a.mutates, *use.extra_writes):
            prev = self.last.get(m)
            if prev is None or prev.kind == "value":
                self.last[m] = _Target("value", i)
        for d in a.deletes:
            self.last.pop(d, None)
            self.deleted_in[d] = i
        for module, stmt, _line in a.star_imports:
            self.star.append((i, stmt, module))


def _imports(
    analyses: list[CellAnalysis], i: int, prelude: list[tuple[int, int]]
) -> tuple[Import, ...]:
    """The cell's own imports and those of the statements it re-emits."""
    found = list(analyses[i].imports)
    for j, s in prelude:
        start, end = analyses[j].stmt_lines[s]
        found += [imp for imp in analyses[j].imports if start <= imp.lineno <= end]
    return tuple(found)


def _edge_kind(kind: str) -> TargetKind:
    return "code" if kind in ("function", "class") else kind  # type: ignore[return-value]


def resolve_cells(
    sources: list[str],
    ids: list[str] | None = None,
    *,
    tags: list[list[str]] | None = None,
    titles: list[str] | None = None,
    indexes: list[int] | None = None,
    allow_star_imports: bool = False,
    export_all: bool = False,
) -> NotebookGraph:
    """Resolve code cells (their sources, in notebook order) to a :class:`NotebookGraph`.

    ``ids`` default to ``c0, c1, ...``; ``tags`` are each cell's nbformat tags (a cell tagged
    ``parameters`` holds parameters); ``export_all`` makes every public name a cell binds an
    output, not just those a later cell reads.
    """
    n = len(sources)
    ids = ids or [f"c{i}" for i in range(n)]
    r = _Resolver(ids, sources, tags or [[] for _ in range(n)], allow_star_imports)
    uses = r.run()
    consumers: dict[int, dict[str, None]] = {i: {} for i in range(n)}
    for use in uses:
        for name, j in use.inputs.items():
            consumers[j].setdefault(name)
    cells = []
    for i, (a, use) in enumerate(zip(r.analyses, uses, strict=True)):
        passed = [m for m in a.maybe_writes if m in use.inputs]  # pass-through: always bound
        writes = dict.fromkeys([*a.writes, *passed, *use.extra_writes, *a.mutates])
        parameter_cell = a.ok and r.is_parameter_cell(i)
        if export_all and not parameter_cell:
            for b in a.bindings:
                if b.kind == "value" and not b.name.startswith("_"):
                    consumers[i].setdefault(b.name)
        order = [*writes, *a.maybe_writes]
        outputs = tuple(x for x in order if x in consumers[i])
        diags = [
            replace(d, cell=ids[i])
            for d in a.diagnostics
            if not (allow_star_imports and d.code == "E-STAR-IMPORT")
        ]
        diags += use.diagnostics
        for o in outputs:
            if o in a.with_targets:
                diags.append(
                    W_OUTPUT_NOT_SERIALIZABLE.at(
                        f"{o!r} is bound by a 'with' statement (an open file, lock or connection?) "
                        "and read by a later cell; pass the path or the data instead.",
                        cell=ids[i],
                        name=o,
                    )
                )
        cells.append(
            CellNode(
                id=ids[i],
                index=indexes[i] if indexes else i,
                source=sources[i],
                analysis=a,
                title=titles[i] if titles else "",
                parameter_cell=parameter_cell,
                inputs=tuple(Edge(k, ids[j], ids[i], "value") for k, j in use.inputs.items()),
                code=tuple(Edge(k, ids[j], ids[i], kind) for k, (j, kind) in use.code.items()),
                prelude=tuple(sorted(use.prelude)),
                imports=_imports(r.analyses, i, sorted(use.prelude)),
                params=tuple(use.params),
                secrets=tuple(use.secrets),
                writes=tuple(writes),
                outputs=() if parameter_cell else outputs,
                unresolved=tuple(use.unresolved),
                diagnostics=tuple(diags),
            )
        )
    return NotebookGraph(tuple(cells), tuple(r.params.values()))

"""What the analysis of one cell finds: its bindings, definitions, imports and findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from insitu.workflows.codes import Diagnostic

__all__ = ["Binding", "CellAnalysis", "CodeDef", "Import", "Kind"]

Kind = Literal["value", "function", "class", "import"]


@dataclass(frozen=True)
class Import:
    """One imported name: ``import a.b as c`` binds ``c``; ``import a.b`` binds ``a``."""

    module: str
    name: str | None
    asname: str | None
    level: int
    lineno: int
    optional: bool
    bound: str

    @property
    def top(self) -> str:
        """The top-level module a distribution must provide (``''`` for relative imports)."""
        return "" if self.level else self.module.split(".")[0]


@dataclass(frozen=True)
class CodeDef:
    """A function or class the cell defines."""

    name: str
    kind: Literal["function", "class"]
    stmt: int
    lineno: int
    end_lineno: int
    def_reads: tuple[str, ...]
    free_vars: tuple[str, ...]
    global_writes: tuple[str, ...]


@dataclass(frozen=True)
class Binding:
    """How the cell leaves a name: a value, code, or an import, and which top-level
    statement (index into the cell's module body) bound it last."""

    name: str
    kind: Kind
    stmt: int


@dataclass(frozen=True)
class CellAnalysis:
    """What one cell reads, writes and needs. Depends on the source text only."""

    source_hash: str
    ok: bool
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    mutates: tuple[str, ...] = ()
    maybe_writes: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()
    bindings: tuple[Binding, ...] = ()
    code_defs: tuple[CodeDef, ...] = ()
    imports: tuple[Import, ...] = ()
    star_imports: tuple[tuple[str, int, int], ...] = ()
    stmt_uses: tuple[tuple[str, ...], ...] = ()
    stmt_binds: tuple[tuple[tuple[str, Kind], ...], ...] = ()
    with_targets: tuple[str, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    pip_hints: tuple[str, ...] = ()
    read_lines: tuple[tuple[str, int], ...] = ()
    stmt_lines: tuple[tuple[int, int], ...] = ()
    maybe_reads: tuple[str, ...] = ()
    plain: bool = True

    def binding(self, name: str) -> Binding | None:
        """How this cell binds ``name``, or None."""
        for b in self.bindings:
            if b.name == name:
                return b
        return None

    def code_def(self, name: str) -> CodeDef | None:
        """The function or class ``name`` this cell defines last, or None."""
        found = None
        for d in self.code_defs:
            if d.name == name:
                found = d
        return found

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON form (no AST), deterministic for a given source."""
        return {
            "source_hash": self.source_hash,
            "ok": self.ok,
            "reads": list(self.reads),
            "writes": list(self.writes),
            "mutates": list(self.mutates),
            "maybe_writes": list(self.maybe_writes),
            "deletes": list(self.deletes),
            "code_defs": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "line": d.lineno,
                    "def_reads": list(d.def_reads),
                    "free_vars": list(d.free_vars),
                    "global_writes": list(d.global_writes),
                }
                for d in self.code_defs
            ],
            "imports": [
                {
                    "module": i.module,
                    "name": i.name,
                    "asname": i.asname,
                    "level": i.level,
                    "line": i.lineno,
                    "optional": i.optional,
                }
                for i in self.imports
            ],
            "diagnostics": [d.as_dict() for d in self.diagnostics],
            "pip_hints": list(self.pip_hints),
        }

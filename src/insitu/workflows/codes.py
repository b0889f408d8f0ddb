"""Every warning and error the workflows subsystem reports, each with a stable code.

A code never changes meaning once released: tests, the ``--json`` output and the web pages
match on it. ``E-`` codes stop a cell (or a run) from being used as it is; ``W-`` codes say
that something was changed, guessed or may go wrong at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CODES",
    "E_OUTPUT_NOT_SERIALIZABLE",
    "E_OUTPUT_UNDEFINED",
    "E_STAR_IMPORT",
    "E_SYNTAX",
    "E_UNRESOLVED",
    "E_WF_BOUND_TWICE",
    "E_WF_COMPONENT",
    "E_WF_CYCLE",
    "E_WF_MAP",
    "E_WF_NODE_FAILED",
    "E_WF_PORT",
    "E_WF_TYPE",
    "E_WF_UNBOUND",
    "W_DEF_VALUE_CHANGED",
    "W_DEP_GUESS",
    "W_DYNAMIC",
    "W_HIDDEN_MUTATION",
    "W_IPY_HISTORY",
    "W_LOCAL_MODULE",
    "W_MAGIC_DROPPED",
    "W_MAGIC_UNSUPPORTED",
    "W_MAYBE_UNBOUND",
    "W_OUTPUT_NOT_SERIALIZABLE",
    "W_OUT_OF_ORDER",
    "W_WF_UNCONNECTED",
    "Code",
    "Diagnostic",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Code:
    """One kind of finding: its stable ``code`` and what it means (``summary``)."""

    code: str
    summary: str

    @property
    def severity(self) -> Severity:
        """``error`` for ``E-`` codes, ``warning`` for ``W-`` codes."""
        return "error" if self.code.startswith("E-") else "warning"

    def at(
        self,
        message: str,
        *,
        cell: str | None = None,
        line: int | None = None,
        name: str | None = None,
    ) -> Diagnostic:
        """This code found at a place: ``message`` names the value and what to do."""
        return Diagnostic(self.code, self.severity, message, cell, line, name)


@dataclass(frozen=True, order=True)
class Diagnostic:
    """A finding in one cell (``cell`` is its id), at a line of that cell when known."""

    code: str
    severity: Severity
    message: str
    cell: str | None = None
    line: int | None = None
    name: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain JSON form, keys in a fixed order."""
        return {
            "code": self.code,
            "severity": self.severity,
            "cell": self.cell,
            "line": self.line,
            "name": self.name,
            "message": self.message,
        }


E_SYNTAX = Code(
    "E-SYNTAX", "the cell is not valid Python even after IPython syntax is turned into calls"
)
E_STAR_IMPORT = Code("E-STAR-IMPORT", "'from m import *' hides which names the cell defines")
E_UNRESOLVED = Code("E-UNRESOLVED", "a name is read that no earlier cell defines")
E_OUTPUT_UNDEFINED = Code("E-OUTPUT-UNDEFINED", "an output was not bound when the task ended")
E_OUTPUT_NOT_SERIALIZABLE = Code(
    "E-OUTPUT-NOT-SERIALIZABLE", "an output could not be written by any serializer"
)
W_MAGIC_DROPPED = Code("W-MAGIC-DROPPED", "an IPython magic with no effect on data was left out")
W_MAGIC_UNSUPPORTED = Code(
    "W-MAGIC-UNSUPPORTED", "an IPython magic whose effect a component cannot reproduce"
)
W_DYNAMIC = Code("W-DYNAMIC", "exec, eval, globals() and the like defeat static analysis")
W_IPY_HISTORY = Code("W-IPY-HISTORY", "the cell reads IPython's output history (_, __, _i3, Out)")
W_OUT_OF_ORDER = Code("W-OUT-OF-ORDER", "a name is read before the cell that defines it")
W_MAYBE_UNBOUND = Code("W-MAYBE-UNBOUND", "a name read here is bound on some paths only")
W_LOCAL_MODULE = Code("W-LOCAL-MODULE", "an import of a module kept next to the notebook")
W_DEP_GUESS = Code("W-DEP-GUESS", "an import whose distribution was guessed from its name")
W_OUTPUT_NOT_SERIALIZABLE = Code(
    "W-OUTPUT-NOT-SERIALIZABLE", "an output looks like an open file, lock or connection"
)
W_DEF_VALUE_CHANGED = Code(
    "W-DEF-VALUE-CHANGED",
    "a component needs two versions of one name (a definition made with an earlier value)",
)
W_HIDDEN_MUTATION = Code(
    "W-HIDDEN-MUTATION", "an input changed during the task without a visible mutation"
)

E_WF_COMPONENT = Code(
    "E-WF-COMPONENT", "a workflow node's component folder is missing or holds another hash"
)
E_WF_PORT = Code("E-WF-PORT", "a workflow edge names a node or port that does not exist")
E_WF_UNBOUND = Code("E-WF-UNBOUND", "a required input of a workflow node is bound by no edge")
E_WF_BOUND_TWICE = Code("E-WF-BOUND-TWICE", "an input of a workflow node is bound by two edges")
E_WF_TYPE = Code("E-WF-TYPE", "an edge joins an output and an input of different types")
E_WF_CYCLE = Code("E-WF-CYCLE", "the workflow's edges form a cycle")
E_WF_MAP = Code("E-WF-MAP", "a node's map names no input of it, or its value is not a list")
E_WF_NODE_FAILED = Code("E-WF-NODE-FAILED", "a workflow node's task exited with an error")
W_WF_UNCONNECTED = Code("W-WF-UNCONNECTED", "a workflow node has no edge (it runs on its own)")

CODES: dict[str, Code] = {
    c.code: c
    for c in (
        E_SYNTAX,
        E_STAR_IMPORT,
        E_UNRESOLVED,
        E_OUTPUT_UNDEFINED,
        E_OUTPUT_NOT_SERIALIZABLE,
        W_MAGIC_DROPPED,
        W_MAGIC_UNSUPPORTED,
        W_DYNAMIC,
        W_IPY_HISTORY,
        W_OUT_OF_ORDER,
        W_MAYBE_UNBOUND,
        W_LOCAL_MODULE,
        W_DEP_GUESS,
        W_OUTPUT_NOT_SERIALIZABLE,
        W_HIDDEN_MUTATION,
        W_DEF_VALUE_CHANGED,
        E_WF_BOUND_TWICE,
        E_WF_COMPONENT,
        E_WF_CYCLE,
        E_WF_MAP,
        E_WF_NODE_FAILED,
        E_WF_PORT,
        E_WF_TYPE,
        E_WF_UNBOUND,
        W_WF_UNCONNECTED,
    )
}
"""Every code by its name, for documentation and for matching in the web pages."""

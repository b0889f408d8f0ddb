"""IPython syntax in a cell (``%x``, ``%%x``, ``!cmd``, ``v = !cmd``, ``x?``) turned into plain
Python that a component can run without IPython.

IPython's own ``TransformerManager`` turns the syntax into ``get_ipython()...`` calls, keeping
line numbers; this module then rewrites those calls in the AST:

* ``!cmd`` → ``_insitu_shell('cmd')``; ``v = !cmd`` and ``v = %sx cmd`` →
  ``v = _insitu_getoutput('cmd')`` (``$name`` and ``{expr}`` in the command are reads);
* ``%%capture out`` → ``with _insitu_capture() as out:`` around the cell body, so ``out`` is
  an ordinary write;
* ``%time STMT`` / ``%timeit STMT`` / ``%%time`` / ``%%timeit`` → the statement itself
  (dropping it would lose its assignments: a better rule than dropping the line);
* ``%matplotlib``, ``%load_ext``, ``%config``, help (``x?``) → ``pass`` with
  ``W-MAGIC-DROPPED``; ``%pip``/``%conda``/``!pip install`` → ``pass`` plus a dependency hint;
* ``%run``, ``%store``, ``%autoreload`` and unknown magics → ``pass`` with
  ``W-MAGIC-UNSUPPORTED`` (the rest of the cell is still analysed).

The runtime helpers (``_insitu_shell`` ...) are defined in every generated ``task.py``.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from insitu.workflows.codes import W_MAGIC_DROPPED, W_MAGIC_UNSUPPORTED, Diagnostic

if TYPE_CHECKING:
    from IPython.core.inputtransformer2 import TransformerManager

__all__ = ["HELPERS", "Normalized", "ipython_to_python", "normalize_ipython"]

HELPERS = frozenset({"_insitu_shell", "_insitu_getoutput", "_insitu_capture"})
"""Names the rewritten code calls; the generated task defines them."""

_DROPPED = frozenset(
    {
        "matplotlib",
        "load_ext",
        "unload_ext",
        "reload_ext",
        "config",
        "pinfo",
        "pinfo2",
        "psearch",
        "precision",
        "pprint",
        "who",
        "whos",
        "who_ls",
        "pwd",
        "history",
        "lsmagic",
        "magic",
        "env",
        "xmode",
        "colors",
        "doctest_mode",
        "pdoc",
        "pdef",
        "psource",
        "pfile",
    }
)
_UNWRAPPED = frozenset({"time", "timeit", "prun", "capture"})
_INSTALLERS = frozenset({"pip", "conda", "mamba"})
_SHELL_CELLS = frozenset({"bash", "sh", "script", "system"})
_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)|\{([^{}]+)\}")


@dataclass
class Normalized:
    """The cell's module with IPython calls rewritten, and what the rewriting found."""

    tree: ast.Module
    diagnostics: list[Diagnostic] = field(default_factory=list)
    pip_hints: list[str] = field(default_factory=list)


_transformer: TransformerManager | None = None


def ipython_to_python(source: str) -> str:
    """IPython's own transformation of magics, shell lines and help into calls."""
    global _transformer
    if _transformer is None:
        from IPython.core.inputtransformer2 import TransformerManager

        _transformer = TransformerManager()
    return _transformer.transform_cell(source)


def _ipython_call(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """``get_ipython().method(args)`` → (method, args); anything else → None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
    ):
        return node.func.attr, list(node.args)
    return None


def _const(args: list[ast.expr], i: int) -> str:
    if i < len(args) and isinstance(args[i], ast.Constant) and isinstance(args[i].value, str):  # type: ignore[attr-defined]
        return str(args[i].value)  # type: ignore[attr-defined]
    return ""


def _install_hints(line: str) -> list[str]:
    """Requirements named by ``pip install ...`` / ``conda install ...`` (flags left out)."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    if "install" not in words:
        return []
    after = words[words.index("install") + 1 :]
    return [w for w in after if not w.startswith("-")]


class _Rewriter(ast.NodeTransformer):
    def __init__(self, out: Normalized, cell: str | None) -> None:
        self.out = out
        self.cell = cell

    def _warn(self, code: str, name: str, line: int) -> None:
        kind = W_MAGIC_DROPPED if code == "dropped" else W_MAGIC_UNSUPPORTED
        what = (
            f"%{name} has no effect on data and is left out of the component"
            if code == "dropped"
            else f"%{name} cannot be reproduced by a component; it is left out and the rest "
            "of the cell is kept. Put its effect into plain Python if the cell needs it."
        )
        self.out.diagnostics.append(kind.at(what, cell=self.cell, line=line, name=name))

    def _call(self, func: str, cmd: str, like: ast.AST) -> ast.expr:
        """``func('cmd', {'x': x, 'a+1': a + 1})``: the Python values the command expands
        (``$x`` and ``{a+1}``, as IPython does) become ordinary reads at this point."""
        keys: list[ast.expr | None] = []
        values: list[ast.expr] = []
        for m in _VAR.finditer(cmd):
            text = m.group(1) or m.group(2)
            if m.group(1) and text.isupper():
                continue  # '$HOME': an environment variable, left to the shell
            try:
                value = ast.parse(text, mode="eval").body
            except SyntaxError:
                continue
            if text not in [k.value for k in keys if isinstance(k, ast.Constant)]:
                keys.append(ast.Constant(text))
                values.append(value)
        call = ast.Call(ast.Name(func, ast.Load()), [ast.Constant(cmd), ast.Dict(keys, values)], [])
        return ast.fix_missing_locations(ast.copy_location(call, like))

    def visit_Expr(self, node: ast.Expr) -> ast.AST | list[ast.stmt]:
        found = _ipython_call(node.value)
        if found is None:
            return self.generic_visit(node)
        method, args = found
        line = node.lineno
        if method == "system":
            cmd = _const(args, 0)
            hints = _install_hints(cmd) if cmd.split()[:1] in (["pip"], ["conda"]) else []
            if hints:
                self.out.pip_hints.extend(hints)
                return ast.copy_location(ast.Pass(), node)
            return ast.copy_location(ast.Expr(self._call("_insitu_shell", cmd, node)), node)
        if method == "getoutput":
            cmd = _const(args, 0)
            return ast.copy_location(ast.Expr(self._call("_insitu_getoutput", cmd, node)), node)
        if method == "run_line_magic":
            return self._line_magic(_const(args, 0), _const(args, 1), node)
        if method == "run_cell_magic":
            return self._cell_magic(_const(args, 0), _const(args, 1), _const(args, 2), node)
        self._warn("unsupported", method, line)
        return ast.copy_location(ast.Pass(), node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        found = _ipython_call(node.value)
        if found is not None:
            method, args = found
            name = _const(args, 0)
            if method == "getoutput" or (method == "run_line_magic" and name in ("sx", "system")):
                cmd = _const(args, 0 if method == "getoutput" else 1)
                node.value = self._call("_insitu_getoutput", cmd, node.value)
                return node
            self._warn("unsupported", name or method, node.lineno)
            node.value = ast.copy_location(ast.Constant(None), node.value)
            return node
        return self.generic_visit(node)

    def _parse_body(self, body: str, first_line: int) -> list[ast.stmt]:
        tree = ast.parse(ipython_to_python(body))
        ast.increment_lineno(tree, first_line)
        return [s for stmt in tree.body for s in _as_list(self.visit(stmt))]

    def _line_magic(self, name: str, line: str, node: ast.stmt) -> ast.AST | list[ast.stmt]:
        if name in _INSTALLERS:
            self.out.pip_hints.extend(_install_hints(line))
            return ast.copy_location(ast.Pass(), node)
        if name in _UNWRAPPED and name != "capture" and line.strip():
            # '%time x = f()' keeps 'x = f()': the statement is what the cell is for.
            stmts = self._parse_body(line.lstrip(), node.lineno - 1)
            self._warn("dropped", name, node.lineno)
            return stmts or [ast.copy_location(ast.Pass(), node)]
        if name in _DROPPED:
            self._warn("dropped", name, node.lineno)
        else:
            self._warn("unsupported", name, node.lineno)
        return ast.copy_location(ast.Pass(), node)

    def _cell_magic(
        self, name: str, line: str, body: str, node: ast.stmt
    ) -> ast.AST | list[ast.stmt]:
        if name in _SHELL_CELLS:
            return ast.copy_location(ast.Expr(self._call("_insitu_shell", body, node)), node)
        if name == "capture":
            words = [w for w in line.split() if not w.startswith("-")]
            stmts = self._parse_body(body, node.lineno) or [ast.Pass()]
            item = ast.withitem(
                ast.Call(ast.Name("_insitu_capture", ast.Load()), [], []),
                ast.Name(words[0], ast.Store()) if words else None,
            )
            with_ = ast.With([item], stmts)
            return ast.fix_missing_locations(ast.copy_location(with_, node))
        if name in _UNWRAPPED:
            self._warn("dropped", name, node.lineno)
            return self._parse_body(body, node.lineno) or [ast.copy_location(ast.Pass(), node)]
        if name in _INSTALLERS:
            self.out.pip_hints.extend(_install_hints(body))
            return ast.copy_location(ast.Pass(), node)
        self._warn("unsupported", name, node.lineno)
        return ast.copy_location(ast.Pass(), node)


def _as_list(node: ast.AST | list[ast.stmt] | None) -> list[ast.stmt]:
    if node is None:
        return []
    if isinstance(node, list):
        return node
    assert isinstance(node, ast.stmt)
    return [node]


def normalize_ipython(tree: ast.Module, cell: str | None = None) -> Normalized:
    """Rewrite the ``get_ipython()`` calls of a transformed cell in place (see module doc)."""
    out = Normalized(tree)
    _Rewriter(out, cell).visit(tree)
    ast.fix_missing_locations(tree)
    return out

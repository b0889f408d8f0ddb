"""Static analysis of one notebook cell: what it reads, writes, mutates and imports.

One pass over the cell's AST, in statement order, tracking which names are *definitely*
bound so far on every path (``if`` without ``else``, loops and ``try`` bind only on some
paths), plus :mod:`symtable` for the free variables of the functions and classes the cell
defines. The result depends on the source text only and is cached by it, so re-analysing a
notebook after one cell changed analyses that one cell again.

Rules (specification sections 1.1-1.4):

* ``reads``: names possibly read before this cell binds them (calling a function the cell
  itself defines reads that function's free variables at the call);
* ``writes``: names the cell leaves bound on every path; ``maybe_writes``: on some paths;
* ``mutates``: names read and changed in place (``x += 1``, ``x[i] = v``, ``x.a = v``,
  ``del x[i]``, ``x.append(v)`` and the other :data:`MUTATORS`, ``inplace=True``);
* comprehension and lambda bodies are scopes of their own; the walrus in a comprehension
  binds in the cell (PEP 572); ``except E as e`` leaves ``e`` unbound;
* ``code_defs``: functions and classes, their def-time reads (decorators, defaults, bases,
  class body) and call-time free variables; ``imports`` with an ``optional`` flag when the
  import sits inside ``try``/``if``;
* findings: ``E-SYNTAX`` (only this cell), ``E-STAR-IMPORT``, ``W-DYNAMIC``,
  ``W-IPY-HISTORY`` and those of :mod:`insitu.workflows.magics`.
"""

from __future__ import annotations

import ast
import hashlib
import re
import symtable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from insitu.workflows.cell import Binding, CellAnalysis, CodeDef, Import, Kind
from insitu.workflows.codes import E_STAR_IMPORT, E_SYNTAX, W_DYNAMIC, W_IPY_HISTORY, Diagnostic
from insitu.workflows.magics import HELPERS, ipython_to_python, normalize_ipython

__all__ = ["MUTATORS", "analyse_cell", "cell_tree"]

MUTATORS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "remove",
        "clear",
        "sort",
        "reverse",
        "update",
        "setdefault",
        "popitem",
        "add",
        "discard",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
        "fill",
        "resize",
        "put",
        "itemset",
        "setflags",
        "__setitem__",
        "__delitem__",
        "appendleft",
        "extendleft",
        "popleft",
        "rotate",
    }
)
"""Method names taken to change their receiver in place (``lst.append(3)`` mutates ``lst``)."""

_DYNAMIC = frozenset({"exec", "eval", "globals", "locals", "vars", "__import__"})
_HISTORY = re.compile(r"^(_|__|___|_i|_ii|_iii|_i\d+|_\d+|_oh|_ih|Out|In)$")


def analyse_cell(source: str, mutators: frozenset[str] = MUTATORS) -> CellAnalysis:
    """Analyse one code cell's source (IPython syntax allowed); cached by the source text.

    A syntax error gives ``ok=False`` and one ``E-SYNTAX`` finding; it never raises.
    """
    return _analyse(source, mutators)


def _parse(source: str) -> tuple[ast.Module, bool, list[Diagnostic], list[str]]:
    """(module, plain Python?, findings of the IPython rewriting, pip hints); raises
    SyntaxError when the cell is not valid even as IPython."""
    try:
        return ast.parse(source), True, [], []
    except SyntaxError:
        # Only IPython syntax makes valid cells fail here, so plain cells skip the
        # (much slower) IPython transformer.
        tree = ast.parse(ipython_to_python(source))
    norm = normalize_ipython(tree)
    return tree, False, norm.diagnostics, norm.pip_hints


def cell_tree(source: str) -> ast.Module:
    """The cell as plain Python (IPython syntax rewritten), a new tree on every call.

    Not kept with the analysis: thousands of cached syntax trees would make every garbage
    collection walk them (analysis of 1,000 cells went superlinear that way).
    Raises SyntaxError for a cell whose analysis says ``ok=False``.
    """
    return _parse(source)[0]


@lru_cache(maxsize=8192)
def _analyse(source: str, mutators: frozenset[str]) -> CellAnalysis:
    digest = hashlib.sha256(source.encode()).hexdigest()
    try:
        tree, plain, diagnostics, pip_hints = _parse(source)
    except SyntaxError as exc:
        msg = f"line {exc.lineno}: {exc.msg}. Fix the cell; the other cells are analysed."
        return CellAnalysis(digest, False, diagnostics=(E_SYNTAX.at(msg, line=exc.lineno),))
    walker = _Walker(source if plain else None, mutators)
    walker.module(tree)
    diagnostics.extend(walker.diagnostics)
    bound = walker.bound
    return CellAnalysis(
        source_hash=digest,
        ok=True,
        reads=tuple(walker.reads),
        writes=tuple(n for n in walker.order if n in bound),
        mutates=tuple(walker.mutates),
        maybe_writes=tuple(n for n in walker.order if n in walker.maybe and n not in bound),
        deletes=tuple(n for n in walker.deleted if n not in walker.maybe),
        bindings=tuple(Binding(n, *walker.kinds[n]) for n in walker.order if n in walker.maybe),
        code_defs=tuple(walker.code_defs),
        imports=tuple(walker.imports),
        star_imports=tuple(walker.star_imports),
        stmt_uses=tuple(tuple(r) for r in walker.stmt_uses),
        stmt_binds=tuple(tuple(b.items()) for b in walker.stmt_binds),
        with_targets=tuple(n for n in walker.with_targets if n in walker.maybe),
        diagnostics=tuple(sorted(diagnostics, key=lambda d: (d.line or 0, d.code))),
        pip_hints=tuple(pip_hints),
        read_lines=tuple(walker.reads.items()),
        maybe_reads=tuple(walker.maybe_reads),
        stmt_lines=tuple((s.lineno, s.end_lineno or s.lineno) for s in tree.body),
        plain=plain,
    )


@dataclass
class _State:
    bound: set[str]
    maybe: set[str]
    kinds: dict[str, tuple[Kind, int]]
    terminated: bool = False

    def copy(self) -> _State:
        return _State(set(self.bound), set(self.maybe), dict(self.kinds), self.terminated)


def _merge(states: list[_State]) -> _State:
    """The state after paths join: bound on every live path, maybe-bound on any."""
    live = [s for s in states if not s.terminated] or states
    out = live[0].copy()
    for s in live[1:]:
        out.bound &= s.bound
        out.maybe |= s.maybe
        for k, v in s.kinds.items():
            out.kinds.setdefault(k, v)
    out.terminated = all(s.terminated for s in states)
    return out


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Walker:
    """The single pass. Module-level state lives in ``st``; ``scopes`` holds the local
    names of the comprehensions, lambdas and class bodies being walked."""

    def __init__(self, table_source: str | None, mutators: frozenset[str]) -> None:
        self.table_source = table_source
        self.mutators = mutators
        self.st = _State(set(), set(), {})
        self.reads: dict[str, int] = {}
        self.mutates: dict[str, None] = {}
        self.order: dict[str, None] = {}
        self.deleted: dict[str, None] = {}
        self.code_defs: list[CodeDef] = []
        self.local_defs: dict[str, CodeDef] = {}
        self.imports: list[Import] = []
        self.star_imports: list[tuple[str, int, int]] = []
        self.stmt_uses: list[dict[str, None]] = []
        self.stmt_binds: list[dict[str, Kind]] = []
        self.with_targets: dict[str, None] = {}
        self.diagnostics: list[Diagnostic] = []
        self.scopes: list[set[str]] = []
        self.nesting = 0
        self.lazy_annotations = False
        self.maybe_reads: dict[str, None] = {}
        self.stmt = 0
        self._tables: dict[tuple[str, int], symtable.SymbolTable] | None = None
        self._expanding: set[str] = set()

    @property
    def bound(self) -> set[str]:
        return self.st.bound

    @property
    def maybe(self) -> set[str]:
        return self.st.maybe

    @property
    def kinds(self) -> dict[str, tuple[Kind, int]]:
        return self.st.kinds

    # -- names -------------------------------------------------------------------------

    def read(self, name: str, line: int) -> None:
        if any(name in s for s in self.scopes) or name in HELPERS:
            return
        self.stmt_uses[-1].setdefault(name)
        if name in self.st.bound:
            d = self.local_defs.get(name)
            if d is not None and name not in self._expanding:
                # calling a function of this cell reads its free variables now
                self._expanding.add(name)
                for fv in d.free_vars:
                    self.read(fv, line)
                for g in d.global_writes:
                    self.write(g, "value")
                self._expanding.discard(name)
            return
        if name not in self.reads:
            self.reads[name] = line
            if name in self.st.maybe:  # bound earlier in this cell, on some paths
                self.maybe_reads.setdefault(name)
            if _HISTORY.match(name):
                self.diagnostics.append(
                    W_IPY_HISTORY.at(
                        f"{name!r} is IPython's output history, which a component does not "
                        "have; assign the value to a name and read that name instead.",
                        line=line,
                        name=name,
                    )
                )

    def write(self, name: str, kind: Kind) -> None:
        if self.scopes:
            self.scopes[-1].add(name)
            return
        self.st.bound.add(name)
        self.st.maybe.add(name)
        self.st.kinds[name] = (kind, self.stmt)
        self.stmt_binds[-1][name] = kind
        self.order.setdefault(name)
        self.deleted.pop(name, None)
        self.local_defs.pop(name, None)

    def mutate(self, name: str | None, line: int) -> None:
        if name is None or any(name in s for s in self.scopes):
            return
        self.read(name, line)
        if name not in self.st.bound:
            self.mutates.setdefault(name)

    # -- statements ----------------------------------------------------------------------

    def module(self, tree: ast.Module) -> None:
        for i, stmt in enumerate(tree.body):
            self.stmt = i
            self.stmt_uses.append({})
            self.stmt_binds.append({})
            self.statement(stmt)

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.statement(stmt)

    def statement(self, node: ast.stmt) -> None:
        line = node.lineno
        if isinstance(node, ast.Expr):
            self.expr(node.value)
        elif isinstance(node, ast.Assign):
            self.expr(node.value)
            for t in node.targets:
                self.target(t)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.value)
            if isinstance(node.target, ast.Name):
                name = node.target.id
                self.mutate(name, line)
                self.write(name, "value")
            else:
                self.target(node.target)
        elif isinstance(node, ast.AnnAssign):
            if not self.lazy_annotations:
                self.expr(node.annotation)
            if node.value is not None:
                self.expr(node.value)
                self.target(node.target)
            elif not isinstance(node.target, ast.Name):
                self.expr(node.target)
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                self.delete(t)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.function(node)
        elif isinstance(node, ast.ClassDef):
            self.class_(node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            self.import_(node)
        elif isinstance(node, ast.If):
            self.expr(node.test)
            self.branches([node.body, node.orelse])
        elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
            self.loop(node)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.try_(node)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
                    if isinstance(item.optional_vars, ast.Name):
                        self.with_targets.setdefault(item.optional_vars.id)
            self.nested(node.body)
        elif isinstance(node, ast.Match):
            self.match(node)
        elif isinstance(node, ast.Raise):
            for e in (node.exc, node.cause):
                if e is not None:
                    self.expr(e)
            self.st.terminated = True
        elif isinstance(node, ast.Break | ast.Continue):
            self.st.terminated = True
        elif isinstance(node, ast.Return):
            if node.value is not None:
                self.expr(node.value)
        elif isinstance(node, ast.Assert):
            self.expr(node.test)
            if node.msg is not None:
                self.expr(node.msg)
        # Pass, Global, Nonlocal: no module-level effect

    def nested(self, body: list[ast.stmt]) -> None:
        self.nesting += 1
        self.block(body)
        self.nesting -= 1

    def branches(self, bodies: list[list[ast.stmt]], fallthrough: bool = False) -> None:
        start = self.st.copy()
        ends = [start.copy()] if fallthrough else []
        for body in bodies:
            self.st = start.copy()
            self.nested(body)
            ends.append(self.st)
        self.st = _merge(ends)

    def loop(self, node: ast.For | ast.AsyncFor | ast.While) -> None:
        if isinstance(node, ast.While):
            self.expr(node.test)
        else:
            self.expr(node.iter)
        start = self.st.copy()
        if not isinstance(node, ast.While):
            self.target(node.target)
        self.nested(node.body)
        body_end = self.st
        body_end.terminated = False
        self.st = _merge([start, body_end])  # the body may run zero times
        if node.orelse:
            breaks = any(isinstance(n, ast.Break) for s in node.body for n in ast.walk(s))
            before = self.st.copy()
            self.nested(node.orelse)
            if breaks:
                self.st = _merge([before, self.st])

    def try_(self, node: ast.Try | ast.TryStar) -> None:
        start = self.st.copy()
        self.nested(node.body)
        self.nested(node.orelse)
        ends = [self.st]
        for h in node.handlers:
            self.st = start.copy()
            self.st.maybe |= ends[0].maybe
            if h.type is not None:
                self.expr(h.type)
            if h.name:
                self.write(h.name, "value")
            self.nested(h.body)
            if h.name and not self.scopes:  # 'except E as e': e is deleted after the block
                self.st.bound.discard(h.name)
                self.st.maybe.discard(h.name)
            ends.append(self.st)
        self.st = _merge(ends)
        self.nested(node.finalbody)

    def match(self, node: ast.Match) -> None:
        self.expr(node.subject)
        start = self.st.copy()
        ends = []
        irrefutable = False
        for case in node.cases:
            self.st = start.copy()
            self.pattern(case.pattern)
            if case.guard is not None:
                self.expr(case.guard)
            elif isinstance(case.pattern, ast.MatchAs) and case.pattern.pattern is None:
                irrefutable = True
            self.nested(case.body)
            ends.append(self.st)
        if not irrefutable:
            ends.append(start)
        self.st = _merge(ends)

    def pattern(self, p: ast.pattern) -> None:
        for n in ast.walk(p):
            if isinstance(n, ast.MatchAs | ast.MatchStar) and n.name:
                self.write(n.name, "value")
            elif isinstance(n, ast.MatchMapping) and n.rest:
                self.write(n.rest, "value")
            elif isinstance(n, ast.MatchValue):
                self.expr(n.value)
            elif isinstance(n, ast.MatchClass):
                self.expr(n.cls)

    def target(self, t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            self.write(t.id, "value")
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                self.target(e)
        elif isinstance(t, ast.Starred):
            self.target(t.value)
        elif isinstance(t, ast.Attribute | ast.Subscript):
            self.expr(t.value)
            if isinstance(t, ast.Subscript):
                self.expr(t.slice)
            self.mutate(_root(t), t.lineno)

    def delete(self, t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            self.read(t.id, t.lineno)
            if self.scopes:
                self.scopes[-1].discard(t.id)
                return
            self.st.bound.discard(t.id)
            self.st.maybe.discard(t.id)
            self.st.kinds.pop(t.id, None)
            self.deleted.setdefault(t.id)
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                self.delete(e)
        else:
            self.target(t)

    def import_(self, node: ast.Import | ast.ImportFrom) -> None:
        optional = self.nesting > 0
        if isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                self.imports.append(Import(a.name, None, a.asname, 0, node.lineno, optional, bound))
                self.write(bound, "import")
            return
        module = node.module or ""
        if module == "__future__" and any(a.name == "annotations" for a in node.names):
            self.lazy_annotations = True  # PEP 563: annotations are not evaluated
        for a in node.names:
            if a.name == "*":
                self.star_imports.append(("." * node.level + module, self.stmt, node.lineno))
                self.diagnostics.append(
                    E_STAR_IMPORT.at(
                        f"'from {module} import *' hides which names the cell defines; "
                        f"import the names used (from {module} import a, b), or pass "
                        "--allow-star-imports.",
                        line=node.lineno,
                        name=module,
                    )
                )
                continue
            bound = a.asname or a.name
            self.imports.append(
                Import(module, a.name, a.asname, node.level, node.lineno, optional, bound)
            )
            self.write(bound, "import")

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for d in node.decorator_list:
            self.expr(d)
        args = node.args
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.expr(default)
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None and a.annotation is not None and not self.lazy_annotations:
                self.expr(a.annotation)
        if node.returns is not None and not self.lazy_annotations:
            self.expr(node.returns)
        self.define(node, "function")

    def class_(self, node: ast.ClassDef) -> None:
        for d in node.decorator_list:
            self.expr(d)
        for b in node.bases:
            self.expr(b)
        for k in node.keywords:
            self.expr(k.value)
        if self.scopes:
            self.scopes.append(set())
            self.block(node.body)
            self.scopes.pop()
            self.write(node.name, "class")
            return
        self.scopes.append(set())  # the class body runs now, in a scope of its own
        nesting, self.nesting = self.nesting, self.nesting + 1
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                for d in stmt.decorator_list:
                    self.expr(d)
                for default in [*stmt.args.defaults, *stmt.args.kw_defaults]:
                    if default is not None:
                        self.expr(default)
                self.scopes[-1].add(stmt.name)
            else:
                self.statement(stmt)
        self.nesting = nesting
        self.scopes.pop()
        self.define(node, "class")

    def define(
        self,
        node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef,
        kind: Literal["function", "class"],
    ) -> None:
        if self.scopes:
            self.write(node.name, kind)
            return
        free, gwrites = self.free_vars(node)
        d = CodeDef(
            node.name,
            kind,
            self.stmt,
            node.lineno,
            node.end_lineno or node.lineno,
            tuple(self.stmt_uses[-1]),
            free,
            gwrites,
        )
        self.write(node.name, kind)
        self.code_defs.append(d)
        self.local_defs[node.name] = d

    def free_vars(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Globals read (at call time) and ``global`` names assigned, from symtable."""
        table = self.table(node)
        free: dict[str, None] = {}
        gwrites: dict[str, None] = {}
        todo = list(table.get_children()) if isinstance(node, ast.ClassDef) else [table]
        while todo:
            t = todo.pop(0)
            for sym in t.get_symbols():
                if sym.is_global():
                    if sym.is_referenced():
                        free.setdefault(sym.get_name())
                    if sym.is_declared_global() and sym.is_assigned():
                        gwrites.setdefault(sym.get_name())
            todo.extend(t.get_children())
        if gwrites:  # symtable records 'count += 1' as a store only; it reads count too
            for n in ast.walk(node):
                if (
                    isinstance(n, ast.AugAssign)
                    and isinstance(n.target, ast.Name)
                    and n.target.id in gwrites
                ):
                    free.setdefault(n.target.id)
        return tuple(free), tuple(gwrites)

    def table(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    ) -> symtable.SymbolTable:
        if self._tables is None and self.table_source is not None:
            self._tables = {}
            try:
                todo = [symtable.symtable(self.table_source, "<cell>", "exec")]
            except SyntaxError:  # top-level 'await' and the like: take each def alone
                todo = []
            while todo:
                t = todo.pop()
                children = t.get_children()
                for c in children:
                    self._tables.setdefault((c.get_name(), c.get_lineno()), c)
                todo.extend(children)
        found = (self._tables or {}).get((node.name, node.lineno))
        if found is not None:
            return found
        # the cell was rewritten (its lines moved) or would not compile: the def alone
        return symtable.symtable(ast.unparse(node), "<cell>", "exec").get_children()[0]

    # -- expressions ---------------------------------------------------------------------

    def expr(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.read(node.id, node.lineno)
            elif isinstance(node.ctx, ast.Store):
                self.write(node.id, "value")
            return
        if isinstance(node, ast.Constant):
            return
        if isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.walrus(node.target.id)
        elif isinstance(node, ast.Lambda):
            args = node.args
            for default in [*args.defaults, *args.kw_defaults]:
                if default is not None:
                    self.expr(default)
            names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            self.scopes.append(names | {"<lambda>"})
            self.expr(node.body)
            self.scopes.pop()
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            self.comprehension(node)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child)
                elif isinstance(child, ast.keyword | ast.comprehension | ast.arguments):
                    for sub in ast.iter_child_nodes(child):
                        if isinstance(sub, ast.expr):
                            self.expr(sub)

    def walrus(self, name: str) -> None:
        """``:=`` binds in the nearest enclosing non-comprehension scope (PEP 572)."""
        scopes = [s for s in self.scopes if "<comp>" not in s]
        if scopes:
            scopes[-1].add(name)
            return
        saved, self.scopes = self.scopes, []
        self.write(name, "value")
        self.scopes = saved

    def comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        gens = node.generators
        self.expr(gens[0].iter)  # the first iterable is evaluated in the enclosing scope
        self.scopes.append({"<comp>"})
        for i, g in enumerate(gens):
            if i:
                self.expr(g.iter)
            for n in ast.walk(g.target):
                if isinstance(n, ast.Name):
                    self.scopes[-1].add(n.id)
            for cond in g.ifs:
                self.expr(cond)
        if isinstance(node, ast.DictComp):
            self.expr(node.key)
            self.expr(node.value)
        else:
            self.expr(node.elt)
        self.scopes.pop()

    def call(self, node: ast.Call) -> None:
        func = node.func
        line = node.lineno
        if isinstance(func, ast.Name) and func.id in _DYNAMIC and not self.is_local(func.id):
            self.dynamic(f"{func.id}()", line)
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            and not (node.args and isinstance(node.args[0], ast.Constant))
        ):
            self.dynamic("importlib.import_module() of a computed name", line)
        self.expr(func)
        for a in node.args:
            self.expr(a)
        for k in node.keywords:
            self.expr(k.value)
        if isinstance(func, ast.Attribute):
            inplace = any(
                k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if func.attr in self.mutators or inplace:
                self.mutate(_root(func.value), line)

    def is_local(self, name: str) -> bool:
        return name in self.st.maybe or any(name in s for s in self.scopes)

    def dynamic(self, what: str, line: int) -> None:
        self.diagnostics.append(
            W_DYNAMIC.at(
                f"{what} reads or writes names analysis cannot see; check the component's "
                "inputs and outputs by hand.",
                line=line,
            )
        )

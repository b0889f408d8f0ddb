"""One resolved cell to a component: ``component.json``, ``task.py``, ``requirements.txt`` and a
``Dockerfile`` build context (specification section 4).

``task.py`` is built from the cell's AST: the cell's own text when it is plain Python (its
comments kept), ``ast.unparse`` of the rewritten tree when it held IPython syntax, preceded
by the statements it inlines from earlier cells (functions, classes, imports, ``conf_``
assignments) and followed by the outputs. The runtime of the entrypoint contract
(:mod:`insitu.workflows._runtime`) is copied in, so a task needs nothing of insitu.

A component is content-addressed: ``hash`` is the sha256 of the canonical JSON of its code
(as a syntax tree: comments and layout do not count), interface, pinned requirements, base
image and runtime version, so the same cell gives the same hash whatever the notebook's
outputs, execution counts or metadata.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insitu.workflows.analysis import cell_tree
from insitu.workflows.deps import Dependency, Environment, resolve_dependencies
from insitu.workflows.resolve import CellNode, NotebookGraph

__all__ = [
    "ENTRYPOINT",
    "RUNTIME_VERSION",
    "SCHEMA",
    "Component",
    "build_component",
    "read_outputs",
    "write_component",
]

SCHEMA = "insitu.component/1"
RUNTIME_VERSION = "1"
ENTRYPOINT = "python task.py --inputs inputs.json --outdir OUT/"


def read_outputs(outdir: str | Path) -> dict[str, Any]:
    """The values a task wrote to ``outdir`` (``outputs.json`` and its files), by name."""
    from insitu.workflows._runtime import _insitu_read

    entries = json.loads((Path(outdir) / "outputs.json").read_text(encoding="utf-8"))
    return {name: _insitu_read(name, spec, str(outdir)) for name, spec in entries.items()}


def _runtime_source() -> str:
    return (Path(__file__).with_name("_runtime.py")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Component:
    """A component's files, as text, and its metadata (the content of component.json)."""

    name: str
    hash: str
    cell: str
    metadata: dict[str, Any]
    task: str
    requirements: str
    dockerfile: str
    local_modules: tuple[Path, ...] = ()
    directory: Path | None = field(default=None, compare=False)

    @property
    def dirname(self) -> str:
        """``<slug>-<hash8>``."""
        return f"{self.name}-{self.hash[:8]}"


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:40].rstrip("-") or "cell"


def _leading_comments(source: str) -> list[str]:
    out: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped:
            if out:
                break
            continue
        if not stripped.startswith("#") or stripped.startswith(("#!", "# %%")):
            break
        out.append(stripped.lstrip("#").strip())
    return out


def _naming(node: CellNode) -> tuple[str, str, str]:
    """(name, title, description) of a cell's component."""
    comments = _leading_comments(node.source)
    first = next((d.name for d in node.analysis.code_defs), None)
    first = first or (node.outputs[0] if node.outputs else None)
    first = first or (node.writes[0] if node.writes else None)
    name = _slug(first or node.title or f"cell-{node.index}")
    title = node.title or (comments[0] if comments else name)
    return name, title, " ".join(comments)


def _top_level_await(body: str) -> bool:
    """Whether the code only compiles with top-level ``await`` (as IPython allows)."""
    try:
        compile(body, "<cell>", "exec", dont_inherit=True)
    except SyntaxError:
        try:
            compile(body, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        except SyntaxError:
            return False  # some other error: left for the task to report
        return True
    return False


def _cell_code(graph: NotebookGraph, node: CellNode) -> tuple[str, list[str]]:
    """The Python the task runs (inputs loaded, inlined definitions, the cell, the outputs),
    and the cell's ``from __future__`` imports, which must open the file."""
    a = node.analysis
    lines: list[str] = ["_insitu = _InsituTask.from_argv()"]
    for p in node.params:
        default = graph.param(p).default
        lines.append(f"{p} = _insitu.param({p!r}, _insitu_json.loads({json.dumps(default)!r}))")
    for s in node.secrets:
        lines.append(f"{s} = _insitu.secret({s!r})")
    for name in [*(e.name for e in node.inputs), *node.unresolved]:
        lines.append(f"{name} = _insitu.input({name!r})")
    if node.prelude:
        lines += ["", "# --- definitions this cell uses, from the cells that made them"]
    for j, stmt_index in node.prelude:
        producer = graph.cells[j]
        stmt = cell_tree(producer.source).body[stmt_index]
        lines += [f"# from cell {producer.id}", ast.unparse(stmt)]
    lines += ["", f"# --- cell {node.id}"]
    tree = cell_tree(node.source)
    futures = [s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
    if futures:
        tree.body = [s for s in tree.body if s not in futures]
    body = node.source if a.plain and not futures else ast.unparse(tree)
    if _top_level_await(body):
        lines.append(f"_insitu_run_async({body!r}, globals())")
    else:
        lines.append(body.rstrip("\n"))
    inputs = {e.name for e in node.inputs} | set(node.unresolved)
    changes = tuple(sorted(inputs & {*node.writes, *a.maybe_writes}))
    finish = f"{list(node.outputs)!r}" + (f", {changes!r}" if changes else "")
    lines += ["", "# --- outputs", f"_insitu.finish(globals(), {finish})", ""]
    return "\n".join(lines), [ast.unparse(s) for s in futures]


def _dockerfile(base_image: str, local: list[Path]) -> str:
    copies = "".join(f"COPY {p.name} ./{p.name}\n" for p in local)
    return (
        "# Build with: podman build -t <name>:<hash8> .  (or buildah bud, docker build)\n"
        f"FROM {base_image}\n"
        "WORKDIR /component\n"
        "COPY requirements.txt ./\n"
        "RUN python -m pip install --no-cache-dir -r requirements.txt\n"
        f"{copies}"
        "COPY task.py ./\n"
        'ENTRYPOINT ["python", "/component/task.py"]\n'
    )


def _requirements(deps: list[Dependency]) -> str:
    lines = ["# Pinned from the environment the notebook ran in (insitu cells extract)."]
    for d in deps:
        if d.optional and not d.version:
            lines.append(f"# optional, not installed where the notebook ran: {d.distribution}")
        else:
            lines.append(d.requirement + ("  # optional" if d.optional else ""))
    return "\n".join(lines) + "\n"


def build_component(
    graph: NotebookGraph,
    cell_id: str,
    env: Environment,
    *,
    source_notebook: str = "",
    notebook_dir: Path | None = None,
    base_image: str | None = None,
) -> Component:
    """The component of one resolved cell (files as text; :func:`write_component` writes)."""
    node = graph.cell(cell_id)
    code, futures = _cell_code(graph, node)
    deps, local, diags = resolve_dependencies(
        list(node.imports), env, notebook_dir=notebook_dir, pip_hints=list(node.analysis.pip_hints)
    )
    base_image = base_image or f"python:{env.version}-slim"
    name, title, description = _naming(node)
    inputs = [
        {"name": e.name, "type": "any", "kind": "value", "required": True, "from": e.label}
        for e in node.inputs
    ]
    inputs += [
        {"name": n, "type": "any", "kind": "value", "required": True, "from": None}
        for n in node.unresolved
    ]
    inputs += [
        {"name": e.name, "type": e.kind, "kind": "code", "required": False, "from": e.label}
        for e in node.code
    ]
    interface = {
        "inputs": inputs,
        "outputs": [{"name": o, "type": "any", "kind": "value"} for o in node.outputs],
        "params": [
            {"name": p, "type": graph.param(p).type, "default": graph.param(p).default}
            for p in node.params
        ],
        "secrets": [{"name": s} for s in node.secrets],
    }
    content = {
        # the syntax tree, not the text: comments and layout do not make a new version
        "code": ast.dump(ast.parse("\n".join([*futures, code]))),
        "interface": interface,
        "dependencies": [d.requirement for d in deps if not (d.optional and not d.version)],
        "base_image": base_image,
        "runtime": RUNTIME_VERSION,
    }
    digest = hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    warnings = [d.as_dict() for d in (*node.diagnostics, *diags)]
    metadata: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name,
        "title": title,
        "description": description,
        "source_notebook": source_notebook,
        "cell_id": node.id,
        "cell_index": node.index,
        "language": "python",
        **interface,
        "dependencies": [d.as_dict() for d in deps],
        "base_image": base_image,
        "entrypoint": ENTRYPOINT,
        "hash": digest,
        "previous_version": None,
        "source_hash": node.analysis.source_hash,
        "warnings": warnings,
    }
    header = (
        f"# Generated by insitu from {source_notebook or 'a notebook'}, cell {node.id}: "
        "edit the notebook, not this file.\n"
    )
    runtime = _runtime_source()
    if futures:  # right after the docstring, where Python accepts them
        end = runtime.index('\n"""\n') + 5
        runtime = runtime[:end] + "\n".join(futures) + "\n" + runtime[end:]
    task = header + runtime + "\n\n" + code
    return Component(
        name,
        digest,
        node.id,
        metadata,
        task,
        _requirements(deps),
        _dockerfile(base_image, local),
        tuple(local),
    )


def _previous(out: Path, metadata: dict[str, Any]) -> str | None:
    """The hash of the newest other version of the same cell already in ``out``."""
    best: tuple[float, str] | None = None
    for path in out.glob("*/component.json"):
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        same = (other.get("source_notebook"), other.get("cell_id")) == (
            metadata["source_notebook"],
            metadata["cell_id"],
        )
        if same and other.get("hash") != metadata["hash"]:
            mtime = path.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, str(other.get("hash")))
    return best[1] if best else None


def write_component(component: Component, out: Path) -> Component:
    """Write ``out/<slug>-<hash8>/`` (component.json, task.py, requirements.txt, Dockerfile,
    local modules); an unchanged component is left as it is."""
    target = out / component.dirname
    metadata = dict(component.metadata)
    if (target / "component.json").exists():
        old = json.loads((target / "component.json").read_text(encoding="utf-8"))
        metadata["previous_version"] = old.get("previous_version")
    else:
        metadata["previous_version"] = _previous(out, metadata) if out.exists() else None
    target.mkdir(parents=True, exist_ok=True)
    (target / "component.json").write_text(
        json.dumps(metadata, indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )
    (target / "task.py").write_text(component.task, encoding="utf-8")
    (target / "requirements.txt").write_text(component.requirements, encoding="utf-8")
    (target / "Dockerfile").write_text(component.dockerfile, encoding="utf-8")
    for p in component.local_modules:
        if p.is_dir():
            shutil.copytree(p, target / p.name, dirs_exist_ok=True)
        else:
            shutil.copy2(p, target / p.name)
    return Component(
        component.name,
        component.hash,
        component.cell,
        metadata,
        component.task,
        component.requirements,
        component.dockerfile,
        component.local_modules,
        target,
    )

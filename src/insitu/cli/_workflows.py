"""``insitu cells ...``: notebook cells to components; ``insitu workflow ...``: components
composed into a workflow.yaml and run.

Exit codes of ``cells extract``: 0 when no selected cell has an ``E-`` finding, 1 when some
cell has one (the other components are written all the same) or the notebook or a cell
cannot be found, 2 for a usage or settings error. ``workflow run``: 0 done, 1 a node failed
or the workflow does not validate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from insitu.settings import Settings

__all__ = ["cells_group", "workflow_group"]


@click.group("cells")
def cells_group() -> None:
    """Notebook cells to reusable components with detected inputs, outputs and dependencies."""


@cells_group.command("extract")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the <name>-<hash8>/ component folders (default: analyse only).",
)
@click.option(
    "--cells",
    "cells",
    multiple=True,
    help="Cell id or index to extract (repeat, or comma-separate; default: every code cell).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print per cell its inputs, outputs, parameters, imports and warnings as JSON.",
)
@click.option(
    "--allow-star-imports",
    is_flag=True,
    help="Bind names no cell defines to the last 'from m import *'.",
)
@click.option(
    "--export-all",
    is_flag=True,
    help="Every public name a cell binds is an output, not only those read later.",
)
@click.option(
    "--python",
    "python",
    default=None,
    help="Interpreter whose installed packages pin the requirements "
    "(default: the notebook's kernel, else this one).",
)
@click.option(
    "--base-image",
    default=None,
    help="Container base image (default python:<kernel version>-slim).",
)
@click.option(
    "--register",
    is_flag=True,
    help="Register the written components in the component catalog (needs --out).",
)
@click.pass_obj
def extract_command(
    settings: Settings,
    notebook: Path,
    out: Path | None,
    cells: tuple[str, ...],
    as_json: bool,
    allow_star_imports: bool,
    export_all: bool,
    python: str | None,
    base_image: str | None,
    register: bool,
) -> None:
    """Turn NOTEBOOK's code cells into components (component.json, task.py,
    requirements.txt, Dockerfile), one folder each under --out."""
    from insitu.workflows import extract

    if register and out is None:
        raise click.UsageError("--register needs --out DIR: the catalog keeps the folders.")
    chosen = [c.strip() for part in cells for c in part.split(",") if c.strip()]
    result = extract(
        notebook,
        out,
        cells=chosen or None,
        allow_star_imports=allow_star_imports,
        export_all=export_all,
        python=python,
        base_image=base_image,
    )
    report = result.report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for entry in report:
            comp = entry["component"]
            ins = ", ".join(i["from"] for i in entry["inputs"]) or "-"
            outs = ", ".join(entry["outputs"]) or "-"
            where = comp["directory"] or comp["name"] if comp else f"skipped ({entry['skipped']})"
            click.echo(f"cell {entry['cell']}: in {ins}; out {outs} -> {where}")
            for w in entry["warnings"]:
                line = f" line {w['line']}" if w["line"] else ""
                click.echo(f"  {w['code']}{line}: {w['message']}")
    if register:
        _register(settings, [c.directory for c in result.components if c.directory], err=as_json)
    if not result.ok:
        click.secho(
            "Some cells have errors (E- codes above); their components may not run.",
            fg="red",
            err=True,
        )
        sys.exit(1)


def _register(settings: Settings, paths: list[Path | str], *, err: bool = False) -> None:
    from insitu.workflows import ComponentCatalog

    with ComponentCatalog.from_settings(settings) as catalog:
        for path in paths:
            for e in catalog.register(path):
                state = "registered" if e.new else "already registered"
                click.echo(f"{e.name} {e.short}: {state} ({e.directory})", err=err)


@cells_group.command("register")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def register_command(settings: Settings, paths: tuple[Path, ...]) -> None:
    """Register components in the component catalog (the catalog database): each PATH a
    component folder, its component.json, or a folder of component folders."""
    _register(settings, list(paths))


def _port_text(ports: list[dict[str, object]]) -> str:
    return ", ".join(f"{p['name']}: {p.get('type') or 'any'}" for p in ports) or "-"


@cells_group.command("search")
@click.argument("text", required=False)
@click.option("--port", default=None, help="A port (input, output, parameter) of this name.")
@click.option("--type", "type_", default=None, help="A port of this type (with --port: that one).")
@click.option("--uses", default=None, help="Depends on this distribution (e.g. numpy).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the components as JSON.")
@click.pass_obj
def search_command(
    settings: Settings,
    text: str | None,
    port: str | None,
    type_: str | None,
    uses: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Search the component catalog: TEXT in name, title, description, notebook or code
    (words or their beginnings), and/or by port name, port type and dependency."""
    from insitu.workflows import ComponentCatalog

    with ComponentCatalog.from_settings(settings) as catalog:
        found = catalog.search(text, port=port, type=type_, uses=uses, limit=limit)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in found], indent=2))
        return
    if not found:
        click.echo("No component matches.", err=True)
        return
    for e in found:
        deps = ", ".join(str(d["distribution"]) for d in e.dependencies) or "-"
        click.echo(f"{e.short}  {e.name}  ({e.source_notebook or '?'} cell {e.cell_id})")
        click.echo(f"    in {_port_text(e.inputs + e.params)}; out {_port_text(e.outputs)}")
        click.echo(f"    uses {deps}")


@cells_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the component as JSON.")
@click.pass_obj
def show_command(settings: Settings, ref: str, as_json: bool) -> None:
    """Show component REF (its hash, or the hash's first digits) of the component catalog."""
    from insitu.workflows import ComponentCatalog

    with ComponentCatalog.from_settings(settings) as catalog:
        entry = catalog.get(ref)
        versions = catalog.versions(entry)
    if as_json:
        doc = entry.to_json() | {"versions": [v.hash for v in versions]}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{entry.name} ({entry.hash})\n{entry.title}")
    if entry.description:
        click.echo(entry.description)
    click.echo(f"notebook {entry.source_notebook or '?'}, cell {entry.cell_id}; {entry.directory}")
    click.echo(f"inputs  {_port_text(entry.inputs)}\nparams  {_port_text(entry.params)}")
    click.echo(f"outputs {_port_text(entry.outputs)}")
    deps = [f"{d['distribution']}=={d.get('version') or '?'}" for d in entry.dependencies]
    click.echo(f"uses    {', '.join(deps) or '-'}")
    click.echo("versions " + " <- ".join(v.short for v in reversed(versions)))
    click.echo("\n" + entry.source)


@click.group("workflow")
def workflow_group() -> None:
    """Workflows of components: built from a notebook, validated and run with a cache."""


@workflow_group.command("from-notebook")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for components/ and workflow.yaml.",
)
@click.option("--allow-star-imports", is_flag=True, help="As for 'insitu cells extract'.")
@click.option("--export-all", is_flag=True, help="As for 'insitu cells extract'.")
@click.option("--python", "python", default=None, help="As for 'insitu cells extract'.")
@click.option("--register", is_flag=True, help="Register the components in the catalog.")
@click.pass_obj
def from_notebook_command(
    settings: Settings,
    notebook: Path,
    out: Path,
    allow_star_imports: bool,
    export_all: bool,
    python: str | None,
    register: bool,
) -> None:
    """Turn NOTEBOOK into components and a workflow.yaml under --out."""
    from insitu.workflows import workflow_from_notebook

    wf, _ = workflow_from_notebook(
        notebook,
        out,
        allow_star_imports=allow_star_imports,
        export_all=export_all,
        python=python,
    )
    click.echo(
        f"{out / 'workflow.yaml'}: {len(wf.nodes)} nodes, {len(wf.edges)} edges, "
        f"params {', '.join(sorted(wf.params)) or '-'}"
    )
    for w in wf.warnings:
        click.echo(f"  {w.code}: {w.message}")
    if register:
        _register(settings, sorted({wf.component_dir(n) for n in wf.nodes}))


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r}: write it as NAME=VALUE (VALUE as JSON, or text)")
    name, raw = text.split("=", 1)
    try:
        value: object = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


@workflow_group.command("run")
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: N task processes at a time here; dask: the compute cluster (insitu "
    "cluster up, or one started for the run).",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel nodes.")
@click.option(
    "--param", "params", multiple=True, help="NAME=VALUE (VALUE as JSON, else text); repeat."
)
@click.option("--no-cache", is_flag=True, help="Neither use nor fill the cache.")
@click.option("--force", is_flag=True, help="Run every node, then refresh the cache.")
@click.option(
    "--check-mutation",
    is_flag=True,
    help="Report inputs a node changes without a visible mutation (W-HIDDEN-MUTATION).",
)
def run_command(
    workflow: Path,
    executor: str,
    workers: int | None,
    params: tuple[str, ...],
    no_cache: bool,
    force: bool,
    check_mutation: bool,
) -> None:
    """Run WORKFLOW (a workflow.yaml or its directory); the record goes to
    runs/<run_id>/run.json beside it. Exit status 1 when a node fails."""
    from insitu.workflows import (
        DaskBackend,
        LocalBackend,
        NodeRecord,
        WorkflowFailed,
        load_workflow,
        run_workflow,
    )

    wf = load_workflow(workflow)
    for w in wf.warnings:
        click.echo(f"{w.code}: {w.message}", err=True)

    def show(done: int, total: int, rec: NodeRecord) -> None:
        took = f" {rec.seconds:.2f} s" if rec.seconds else ""
        extra = f" ({'; '.join(rec.warnings)})" if rec.warnings else ""
        click.echo(f"[{done}/{total}] {rec.node}: {rec.status}{took}{extra}", err=True)

    options = dict(
        params=dict(_param(p) for p in params),
        use_cache=not no_cache,
        force=force,
        check_mutation=check_mutation,
        progress=show,
    )
    try:
        if executor == "dask":
            from insitu.compute import cluster

            with cluster(workers=workers) as client:
                record = run_workflow(wf, DaskBackend(client), **options)  # type: ignore[arg-type]
        else:
            record = run_workflow(wf, LocalBackend(workers), **options)  # type: ignore[arg-type]
    except WorkflowFailed as exc:
        click.secho(str(exc), fg="red", err=True)
        sys.exit(1)
    hits = len(record.cache_hits)
    click.echo(
        f"run {record.run_id}: {len(record.nodes)} nodes done ({hits} from the cache) in "
        f"{(record.finished or record.started) - record.started:.2f} s; "
        f"record {record.directory}/run.json"
    )


_image_prefix = click.option(
    "--image-prefix",
    default="localhost/insitu",
    show_default=True,
    help="Component images are PREFIX/<name>:<hash12> ('workflow build' tags, exports name).",
)


@workflow_group.command("export")
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "target",
    type=click.Choice(["cwl", "argo"]),
    required=True,
    help="cwl: workflow.cwl + a tool.cwl per component (CWL v1.2); argo: an Argo "
    "Workflow manifest (workflow.yaml).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write (default: export-<to>/ beside the workflow.yaml).",
)
@_image_prefix
@click.option(
    "--storage",
    type=click.Choice(["artifacts", "pvc"]),
    default="artifacts",
    show_default=True,
    help="argo: files as artifacts, or on a ReadWriteMany volume made for the run.",
)
@click.option(
    "--artifact-repository",
    default=None,
    help="argo: [CONFIGMAP#]KEY of the artifact repository (default: the namespace's).",
)
@click.option("--volume-size", default="10Gi", show_default=True, help="argo --storage pvc.")
@click.option("--storage-class", default=None, help="argo --storage pvc: its storage class.")
@click.option(
    "--secret-name", default=None, help="argo: the Secret with the secrets (<workflow>-secrets)."
)
def export_command(
    workflow: Path,
    target: str,
    out: Path | None,
    image_prefix: str,
    storage: str,
    artifact_repository: str | None,
    volume_size: str,
    storage_class: str | None,
    secret_name: str | None,
) -> None:
    """Export WORKFLOW (a workflow.yaml or its directory) for another workflow engine."""
    from insitu.workflows import export_argo, export_cwl, load_workflow

    wf = load_workflow(workflow)
    out = out or wf.directory / f"export-{target}"
    if target == "cwl":
        path = export_cwl(wf, out, image_prefix=image_prefix)
        click.echo(
            f"{path}: {len(wf.nodes)} steps; check it with 'cwltool --validate {path}', run it "
            f"with 'cwltool {path}' (--no-container: here, with this Python's packages)"
        )
        return
    path = export_argo(
        wf,
        out,
        storage=storage,
        artifact_repository=artifact_repository,
        volume_size=volume_size,
        storage_class=storage_class,
        secret_name=secret_name,
        image_prefix=image_prefix,
    )
    click.echo(
        f"{path}: {len(wf.nodes)} tasks, files as {storage}; checked offline against the Argo "
        f"API's models (no cluster used); submit it with 'argo submit {path}'"
    )


@workflow_group.command("build")
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option(
    "--base-image",
    default=None,
    help="Image on this machine to build from (default: the Debian minbase image "
    "scripts/podman.sh makes, localhost/insitu-debian-bookworm-min:1).",
)
@_image_prefix
@click.option(
    "--engine",
    type=click.Choice(["podman", "buildah"]),
    default=None,
    help="Container engine (default: podman, else buildah, whichever is on PATH).",
)
def build_command(
    workflow: Path, base_image: str | None, image_prefix: str, engine: str | None
) -> None:
    """Build a container image per component of WORKFLOW with podman or buildah, offline
    (pinned requirements installed from wheels this Python's pip collects). Exit status 1
    when there is no engine or base image here (and nothing is built)."""
    from insitu.errors import BackendUnavailable, ComputeError
    from insitu.workflows import build_images, load_workflow

    wf = load_workflow(workflow)
    base = {"base_image": base_image} if base_image else {}
    try:
        built = build_images(wf, prefix=image_prefix, engine=engine, **base)
    except (BackendUnavailable, ComputeError) as exc:
        click.secho(str(exc), fg="red", err=True)
        sys.exit(1)
    for b in built:
        click.echo(f"{b.component}: {b.image} ({'built' if b.built else 'already there'})")
    click.echo(f"{sum(b.built for b in built)} of {len(built)} images built")

"""``insitu cells ...``: notebook cells to components.

Exit codes: 0 when no selected cell has an ``E-`` finding, 1 when some cell has one (the
other components are written all the same) or the notebook or a cell cannot be found, 2 for
a usage or settings error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

__all__ = ["cells_group"]


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
def extract_command(
    notebook: Path,
    out: Path | None,
    cells: tuple[str, ...],
    as_json: bool,
    allow_star_imports: bool,
    export_all: bool,
    python: str | None,
    base_image: str | None,
) -> None:
    """Turn NOTEBOOK's code cells into components (component.json, task.py,
    requirements.txt, Dockerfile), one folder each under --out."""
    from insitu.workflows import extract

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
    if not result.ok:
        click.secho(
            "Some cells have errors (E- codes above); their components may not run.",
            fg="red",
            err=True,
        )
        sys.exit(1)

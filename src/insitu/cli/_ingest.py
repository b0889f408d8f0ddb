"""``insitu ingest ...``: run a pipeline, see its state, look at and retry its quarantine.

Exit codes: 0 when every file was ingested (or was a duplicate), 1 when something was
quarantined (the other files are ingested all the same), 2 for a usage or settings error.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.ingest import Outcome, Pipeline

__all__ = ["ingest_group"]


def _pipeline(settings: Settings, name: str) -> Pipeline:
    from insitu.ingest import Pipeline

    return Pipeline(name, settings)


def _line(o: Outcome) -> str:
    what = f"{o.state} {o.code}: {o.message}" if o.code else o.state
    return f"{o.name}  {o.sha256[:12]}  {what}"


@click.group("ingest")
def ingest_group() -> None:
    """Raw instrument files to calibrated, versioned products in the catalog."""


@ingest_group.command("run")
@click.argument("pipeline")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@click.pass_obj
def run_command(settings: Settings, pipeline: str, progress: bool | None) -> None:
    """Ingest what is complete in PIPELINE's inbox, then register the products."""
    from tqdm import tqdm

    with _pipeline(settings, pipeline) as p:
        waiting = len(p.pending())
        shown = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=waiting, unit="file", disable=not shown, desc=pipeline) as bar:

            def step(o: Outcome) -> None:
                bar.update(1)
                if o.state == "quarantined":
                    bar.write(_line(o), file=sys.stderr)

            report = p.run(progress=step)
    for o in report.outcomes:
        click.echo(_line(o))
    click.echo(
        f"{pipeline}: {report.count('ingested')} ingested, "
        f"{report.count('duplicate-ignored')} duplicate, {report.count('quarantined')} "
        "quarantined"
    )
    if not report.ok:
        click.secho(
            f"Some files were quarantined: 'insitu ingest quarantine {pipeline}' shows why.",
            fg="red",
            err=True,
        )
        sys.exit(1)


@ingest_group.command("status")
@click.argument("pipeline")
@click.pass_obj
def status_command(settings: Settings, pipeline: str) -> None:
    """Counts per state, files waiting in the inbox, quarantined items (JSON)."""
    with _pipeline(settings, pipeline) as p:
        click.echo(json.dumps(p.status(), indent=2))


@ingest_group.command("quarantine")
@click.argument("pipeline")
@click.argument("sha256", required=False)
@click.pass_obj
def quarantine_command(settings: Settings, pipeline: str, sha256: str | None) -> None:
    """List quarantined items, or print the report of one (SHA256, or its prefix)."""
    with _pipeline(settings, pipeline) as p:
        if sha256:
            click.echo(json.dumps(p.store.report(sha256), indent=2))
            return
        for item in p.store.items("quarantined"):
            report = p.store.report(item.sha256)
            click.echo(f"{item.sha256}  {item.name}  {item.code}  {report['suggested_action']}")


@ingest_group.command("retry")
@click.argument("pipeline")
@click.argument("sha256")
@click.pass_obj
def retry_command(settings: Settings, pipeline: str, sha256: str) -> None:
    """Ingest quarantined item SHA256 again, once its problem is fixed."""
    with _pipeline(settings, pipeline) as p:
        outcome = p.retry(sha256)
    click.echo(_line(outcome))
    if outcome.state == "quarantined":
        sys.exit(1)

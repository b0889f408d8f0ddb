"""``insitu workflow publish|published|unpublish``: which workflows the data service runs
as server-side jobs (an operator's choice; see :mod:`insitu.workflows.published`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from insitu.cli._workflows import workflow_group
from insitu.settings import Settings

__all__ = ["workflow_publish_command", "workflow_published_command", "workflow_unpublish_command"]


@workflow_group.command("publish")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Name users run it by (default: the workflow's).")
@click.option("--description", default="", help="One line for the list of workflows.")
@click.option(
    "--replace", is_flag=True, help="Publish a new version over a published one of that name."
)
@click.pass_obj
def workflow_publish_command(
    settings: Settings, path: Path, name: str | None, description: str, replace: bool
) -> None:
    """Let the data service run the workflow at PATH (its folder or workflow.yaml) as a
    server-side job: it is checked, copied under the workflows folder and recorded."""
    from insitu.workflows import PublishedWorkflows

    with PublishedWorkflows.from_settings(settings) as published:
        entry = published.publish(path, name, description=description, replace=replace)
    click.echo(
        f"published {entry.name} ({entry.workflow_hash[:12]}) in {entry.directory}; run it "
        f"with POST /api/v1/workflows/{entry.name}/runs or from its page"
    )


@workflow_group.command("published")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def workflow_published_command(settings: Settings, as_json: bool) -> None:
    """List the workflows the data service runs."""
    from insitu.workflows import PublishedWorkflows

    with PublishedWorkflows.from_settings(settings) as published:
        entries = published.list()
    if as_json:
        docs = [e.to_json() | {"directory": str(e.directory)} for e in entries]
        click.echo(json.dumps(docs, indent=2))
        return
    if not entries:
        click.echo("no workflow is published ('insitu workflow publish DIR --name NAME')")
    for e in entries:
        click.echo(
            f"{e.name}  {e.workflow_hash[:12]}  by {e.published_by} on {e.published}  "
            f"{e.directory}" + (f"  {e.description}" if e.description else "")
        )


@workflow_group.command("unpublish")
@click.argument("name")
@click.pass_obj
def workflow_unpublish_command(settings: Settings, name: str) -> None:
    """Stop the data service from running workflow NAME (its folder and runs stay)."""
    from insitu.workflows import PublishedWorkflows

    with PublishedWorkflows.from_settings(settings) as published:
        entry = published.unpublish(name)
    click.echo(f"unpublished {entry.name}; its folder {entry.directory} and its runs stay")

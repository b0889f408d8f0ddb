"""The ``insitu`` command. Builds the settings once and passes them down.

Importing this module loads no numpy, xarray or dask: subcommands import what they need.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any

import click

from insitu import __version__
from insitu.errors import InsituError
from insitu.settings import Settings

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns our errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InsituError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="INSITU_CONFIG",
    help="TOML settings file (default ~/.config/insitu/insitu.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.version_option(__version__, prog_name="insitu")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, verbose: bool) -> None:
    """insitu: catalog, compute and data service next to your archive."""
    from insitu.log import configure_logging

    try:
        settings = Settings.load(config_file)
    except InsituError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    configure_logging("DEBUG" if verbose else settings.log_level)
    ctx.obj = settings


@cli.group("config")
def config_group() -> None:
    """Show the settings in effect."""


@config_group.command("show")
@click.pass_obj
def config_show(settings: Settings) -> None:
    """Print the settings in effect as JSON (passwords redacted)."""
    data = settings.redacted()
    data["catalog"]["uri_in_effect"] = Settings.redacted(
        settings.model_copy(
            update={"catalog": settings.catalog.model_copy(update={"uri": settings.catalog_uri})}
        )
    )["catalog"]["uri"]
    click.echo(json.dumps(data, indent=2, default=str))


def _register() -> None:
    # adds publish, published and unpublish to workflow_group
    from insitu.cli import _workflow_publish  # noqa: F401
    from insitu.cli._access import serve_command, token_group
    from insitu.cli._catalog import catalog_group, demo_command
    from insitu.cli._compute import cluster_group, compute_group
    from insitu.cli._gallery import publish_command
    from insitu.cli._hub import down_command, project_group, up_command, user_group
    from insitu.cli._ingest import ingest_group
    from insitu.cli._lab import lab_command, tunnel_command
    from insitu.cli._workflows import cells_group, workflow_group

    cli.add_command(catalog_group)
    cli.add_command(demo_command)
    cli.add_command(cluster_group)
    cli.add_command(compute_group)
    cli.add_command(serve_command)
    cli.add_command(token_group)
    cli.add_command(up_command)
    cli.add_command(down_command)
    cli.add_command(user_group)
    cli.add_command(project_group)
    cli.add_command(publish_command)
    cli.add_command(lab_command)
    cli.add_command(tunnel_command)
    cli.add_command(ingest_group)
    cli.add_command(cells_group)
    cli.add_command(workflow_group)


_register()


def main() -> None:
    """Entry point of the ``insitu`` console script."""
    try:
        cli(prog_name="insitu")
    finally:
        # The command is done. The interpreter's last garbage collection would go over every
        # object of the libraries it loaded (xarray, Dask, pandas: 0.2-0.3 s of a cold
        # 'insitu compute run') to free memory the system takes back anyway; frozen objects
        # are left out of it. Exit handlers and module clean-up still run.
        gc.freeze()

"""``insitu publish``: put a notebook in the platform's gallery, from a session on the hub."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import click

from insitu.errors import BackendUnavailable, InvalidRequest
from insitu.settings import Settings

__all__ = ["publish_command"]


def _call(method: str, url: str, token: str, data: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/x-ipynb+json")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail") or exc.reason
        except ValueError:
            detail = exc.reason
        raise InvalidRequest(f"The gallery refused it ({exc.code}): {detail}") from exc
    except OSError as exc:
        raise BackendUnavailable(f"The data service does not answer at {url}: {exc}") from exc


@click.command("publish")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--name", help="Name in the gallery (default: the file's name).")
@click.option("--withdraw", "withdraw_name", metavar="NAME", help="Withdraw your notebook NAME.")
@click.pass_obj
def publish_command(
    settings: Settings, notebook: Path | None, name: str | None, withdraw_name: str | None
) -> None:
    """Publish NOTEBOOK in the platform's gallery, for everyone on it to read (again with
    the same name replaces it)."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise InvalidRequest(
            "Publishing needs your hub login: run 'insitu publish' in a terminal or notebook "
            "of your server on the hub (it sends the hub's token of your session)."
        )
    base = f"{settings.service_url}/api/v1/gallery"
    user = os.environ.get("JUPYTERHUB_USER", "")
    if withdraw_name:
        _call("DELETE", f"{base}/{quote(user)}/{quote(withdraw_name)}", token)
        click.echo(f"Withdrew {withdraw_name} from the gallery.")
        return
    if notebook is None:
        raise InvalidRequest("Name the notebook to publish: insitu publish NOTEBOOK.ipynb")
    if not notebook.is_file():
        raise InvalidRequest(f"No notebook {notebook}: give the path of an .ipynb file.")
    target = name or notebook.stem
    answer = json.loads(_call("PUT", f"{base}/{quote(target)}", token, notebook.read_bytes()))
    page = f"{settings.service_url}/gallery/{quote(answer['author'])}/{quote(answer['name'])}"
    click.echo(f"Published {answer['title']!r} as {answer['name']}: {page}")

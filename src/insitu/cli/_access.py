"""``insitu serve`` and ``insitu token``: the data service and its API tokens."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from insitu.errors import BackendUnavailable
from insitu.hub import process_alive
from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.access import TokenStore

__all__ = ["serve_command", "token_group"]


def _state_file(settings: Settings) -> Path:
    return settings.data_dir / "service.json"


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _running(settings: Settings) -> dict[str, Any] | None:
    """The record of a detached service that still answers, else None."""
    path = _state_file(settings)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return state if _healthy(str(state["url"])) else None


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: connections of an earlier server in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: access.host).")
@click.option("--port", type=int, default=None, help="Port (default: access.port).")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Server processes."
)
@click.option("--detach", is_flag=True, help="Run in the background; print the address and return.")
@click.option("--stop", is_flag=True, help="Stop a service started with --detach.")
@click.option("--status", "show_status", is_flag=True, help="Say whether a detached one runs.")
@click.option(
    "--hub",
    "hub_service",
    is_flag=True,
    help="Run as JupyterHub's service 'insitu' (what 'insitu up' does): hub logins, served "
    "under the hub's service prefix.",
)
@click.pass_obj
def serve_command(
    settings: Settings,
    host: str | None,
    port: int | None,
    workers: int,
    detach: bool,
    stop: bool,
    show_status: bool,
    hub_service: bool,
) -> None:
    """Start the data service: HTTP API and web pages, on loopback by default."""
    access = settings.access.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        | ({"hub_login": True} if hub_service else {})
    )
    settings = settings.model_copy(update={"access": access})
    if stop or show_status:
        state = _running(settings)
        if state is None:
            click.echo("No detached insitu service is running.")
            return
        if show_status:
            click.echo(f"insitu service running at {state['url']}/ (pid {state['pid']}).")
            return
        pid = int(state["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30  # it finishes open requests and stops its cluster
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
        _state_file(settings).unlink(missing_ok=True)
        click.echo(f"Stopped the insitu service at {state['url']} (pid {pid}).")
        return
    url = settings.service_url
    if not _port_free(access.host, access.port):
        state = _running(settings)
        if state is not None:
            click.echo(f"insitu service already running at {state['url']}/ (pid {state['pid']}).")
            return
        raise BackendUnavailable(
            f"Port {access.port} on {access.host} is taken by another program. Choose another "
            "with --port (or INSITU_ACCESS__PORT), or stop what listens there."
        )
    if detach:
        _detach(settings, workers)
        return
    import uvicorn

    from insitu.access import build_app, run_processes

    click.echo(f"insitu data service at {url}/ (API docs {url}/api/v1/docs); Ctrl-C stops it.")
    if workers > 1:
        # Several processes need an import string; each rebuilds the settings from the same
        # environment and TOML file.
        os.environ["INSITU_ACCESS__HOST"], os.environ["INSITU_ACCESS__PORT"] = (
            access.host,
            str(access.port),
        )
        if hub_service:
            os.environ["INSITU_ACCESS__HUB_LOGIN"] = "true"
        run_processes(access.host, access.port, workers)
    else:
        uvicorn.run(
            build_app(settings, server_process=True),
            host=access.host,
            port=access.port,
            log_level="warning",
        )


def _detach(settings: Settings, workers: int, timeout: float = 60.0) -> None:
    access = settings.access
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "service.log"
    cmd = [sys.executable, "-m", "insitu.cli", "serve", "--host", access.host]
    cmd += ["--port", str(access.port), "--workers", str(workers)]
    env = dict(os.environ, INSITU_DATA_DIR=str(settings.data_dir))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
    url = settings.service_url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _healthy(url, timeout=1.0):
            _state_file(settings).write_text(json.dumps({"pid": proc.pid, "url": url}))
            click.echo(f"insitu data service at {url}/ (pid {proc.pid}, log {log_path}).")
            click.echo(f"API docs at {url}/api/v1/docs; stop it with 'insitu serve --stop'.")
            return
        time.sleep(0.2)
    proc.kill()
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    raise BackendUnavailable(
        f"The data service did not come up at {url} within {timeout:.0f} s. Last lines of "
        f"{log_path}:\n" + "\n".join(tail)
    )


@click.group("token")
def token_group() -> None:
    """Create, list and revoke API tokens of the data service."""


def _store(settings: Settings) -> TokenStore:
    from insitu.access import TokenStore

    return TokenStore.from_uri(settings.catalog_uri)


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Lifetime(click.ParamType[timedelta | None]):
    """A duration such as 30d, 12h, 90m or 2w; 'never' for none."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta | None:
        if isinstance(value, timedelta) or value is None:
            return value
        text = str(value).strip().lower()
        if text == "never":
            return None
        match = re.fullmatch(r"(\d{1,6})\s*([mhdw])", text)
        if match is None or int(match[1]) == 0:
            self.fail(
                f"{value!r} is not a duration: give a whole number and a unit, m(inutes), "
                "h(ours), d(ays) or w(eeks), e.g. 30d or 12h; or 'never'.",
                param,
                ctx,
            )
        return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


@token_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=("read",),
    show_default=True,
    type=click.Choice(["read", "compute", "workflows"]),
    help="What it may do (repeatable).",
)
@click.option(
    "--collection",
    "collections",
    multiple=True,
    default=("*",),
    show_default=True,
    help="A collection it may use (repeatable; '*' for all).",
)
@click.option(
    "--expires",
    "expires_in",
    type=Lifetime(),
    default="never",
    show_default=True,
    help="How long it works, e.g. 30d, 12h, 2w; 'never' for no expiry.",
)
@click.pass_obj
def token_create(
    settings: Settings,
    name: str,
    scopes: tuple[str, ...],
    collections: tuple[str, ...],
    expires_in: timedelta | None,
) -> None:
    """Create a token called NAME and print its secret (shown only once)."""
    store = _store(settings)
    try:
        token, secret = store.create(
            name, scopes=scopes, collections=collections, expires_in=expires_in
        )
    finally:
        store.close()
    click.echo(secret)
    until = f"expires {_when(token.expires)}" if token.expires else "does not expire"
    click.echo(
        f"Token {token.id} ({name}): scopes {','.join(sorted(token.scopes))}, collections "
        f"{','.join(sorted(token.collections))}, {until}. Keep the secret above: it is not "
        "stored.",
        err=True,
    )


@token_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def token_list(settings: Settings, include_revoked: bool, as_json: bool) -> None:
    """List tokens (never their secrets): when each expires and was last used."""
    store = _store(settings)
    try:
        tokens = store.tokens(include_revoked=include_revoked)
    finally:
        store.close()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "name": t.name,
            "scopes": sorted(t.scopes),
            "collections": sorted(t.collections),
            "created": _when(t.created),
            "expires": _when(t.expires),
            "expired": t.expired(now),
            "last_used": _when(t.last_used),
            "revoked": _when(t.revoked),
        }
        for t in tokens
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No tokens. Create one with 'insitu token create NAME'.")
    for r in rows:
        if r["expires"] is None:
            until = "expires never"
        else:
            until = f"{'EXPIRED' if r['expired'] else 'expires'} {r['expires']}"
        state = f"  REVOKED {r['revoked']}" if r["revoked"] else ""
        click.echo(
            f"{r['id']}  {r['name']}  scopes={','.join(r['scopes'])}  "
            f"collections={','.join(r['collections'])}  created {r['created']}  {until}  "
            f"last used {r['last_used'] or 'never'}{state}"
        )


@token_group.command("revoke")
@click.argument("id_or_name")
@click.pass_obj
def token_revoke(settings: Settings, id_or_name: str) -> None:
    """Revoke a token by id, or every live token with that name; effective at once."""
    store = _store(settings)
    try:
        revoked = store.revoke(id_or_name)
    finally:
        store.close()
    for t in revoked:
        click.echo(f"Revoked token {t.id} ({t.name}).")

"""``insitu serve`` and ``insitu token``: the data service and its API tokens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.access.tokens import TokenStore

__all__ = ["serve_command", "token_group"]


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: access.host).")
@click.option("--port", type=int, default=None, help="Port (default: access.port).")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Server processes."
)
@click.pass_obj
def serve_command(settings: Settings, host: str | None, port: int | None, workers: int) -> None:
    """Start the data service: HTTP API and web pages, on loopback by default."""
    import uvicorn

    from insitu.access import build_app

    access = settings.access.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    settings = settings.model_copy(update={"access": access})
    click.echo(
        f"insitu data service at {settings.service_url}/ (API {settings.service_url}/api/v1/docs)"
    )
    if workers > 1:
        # Several processes need an import string; they rebuild the settings from the
        # same environment and TOML file.
        uvicorn.run(
            "insitu.access.serve:app_from_env",
            factory=True,
            host=access.host,
            port=access.port,
            workers=workers,
            log_level="warning",
        )
    else:
        uvicorn.run(build_app(settings), host=access.host, port=access.port, log_level="warning")


@click.group("token")
def token_group() -> None:
    """Create, list and revoke API tokens of the data service."""


def _store(settings: Settings) -> TokenStore:
    from insitu.access.tokens import TokenStore

    return TokenStore.from_uri(settings.catalog_uri)


@token_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=("read",),
    show_default=True,
    type=click.Choice(["read", "compute"]),
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
@click.pass_obj
def token_create(
    settings: Settings, name: str, scopes: tuple[str, ...], collections: tuple[str, ...]
) -> None:
    """Create a token called NAME and print its secret (shown only once)."""
    store = _store(settings)
    try:
        token, secret = store.create(name, scopes=scopes, collections=collections)
    finally:
        store.close()
    click.echo(secret)
    click.echo(
        f"Token {token.id} ({name}): scopes {','.join(sorted(token.scopes))}, collections "
        f"{','.join(sorted(token.collections))}. Keep the secret above: it is not stored.",
        err=True,
    )


@token_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def token_list(settings: Settings, include_revoked: bool, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    store = _store(settings)
    try:
        tokens = store.tokens(include_revoked=include_revoked)
    finally:
        store.close()
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "name": t.name,
            "scopes": sorted(t.scopes),
            "collections": sorted(t.collections),
            "created": t.created.isoformat(timespec="seconds"),
            "revoked": t.revoked.isoformat(timespec="seconds") if t.revoked else None,
        }
        for t in tokens
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No tokens. Create one with 'insitu token create NAME'.")
    for r in rows:
        state = f" revoked {r['revoked']}" if r["revoked"] else ""
        click.echo(
            f"{r['id']}  {r['name']}  scopes={','.join(r['scopes'])}  "
            f"collections={','.join(r['collections'])}  created {r['created']}{state}"
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

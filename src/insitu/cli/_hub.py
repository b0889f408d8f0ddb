"""``insitu up``, ``insitu down`` and ``insitu user``: the multi-user platform."""

from __future__ import annotations

import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from insitu.errors import InvalidRequest
from insitu.settings import Settings

__all__ = ["down_command", "project_group", "up_command", "user_group"]


def _config_file() -> Path | None:
    value: Path | None = click.get_current_context().find_root().params.get("config_file")
    return value


def _first_admin(settings: Settings) -> str | None:
    """Make the first-run admin when there is no account yet; its password, shown once."""
    from insitu.hub import HubPaths, UserRegistry, ensure_unix_account, isolation

    registry = UserRegistry(HubPaths.of(settings).accounts)
    if registry.accounts():
        return None
    password = secrets.token_urlsafe(12)
    name = settings.hub.admin
    if isolation(settings) == "users":
        ensure_unix_account(name, Path(settings.hub.home_template.format(username=name)))
    registry.add(name, password, admin=True)
    return password


def _index_demo_if_empty(settings: Settings) -> None:
    from insitu.catalog import Catalog
    from insitu.cli._catalog import index_demo

    with Catalog(settings) as cat:
        collections = {c.name: c for c in cat.collections()}
    if not collections:
        click.echo("The catalog is empty: indexing the CMIP6 demo archive.")
        index_demo(settings)
    elif "demo" in collections and not Path(collections["demo"].root).is_dir():
        # Another (deleted) installation's sample data: this one's takes its place.
        click.echo(f"The demo collection's folder {collections['demo'].root} is gone: moving it.")
        index_demo(settings)
    # A demo platform (a new one, or one showing the climate demo) shows the lab's too.
    if (not collections or "demo" in collections) and LAB_DEMO not in collections:
        _lab_demo(settings)
    else:
        from insitu.ingest import install_demo_pipelines

        install_demo_pipelines(settings)  # a lab demo set up by an older version
    if not collections or "demo" in collections:  # it reads the climate demo
        _demo_workflow(settings)


def _demo_workflow(settings: Settings) -> None:
    """Publish the demo workflow (a multi-model analysis of the CMIP6 demo), so that the
    platform's users can run one on the server from its page."""
    from insitu.errors import InsituError
    from insitu.workflows import install_demo_workflow

    try:
        entry = install_demo_workflow(settings)
    except (InsituError, OSError, ImportError) as exc:
        click.echo(f"The demo workflow could not be published ({exc}); the rest works.")
        return
    if entry is not None:
        click.echo(
            f"Published the demo workflow '{entry.name}': its page, under Workflows, runs it."
        )


LAB_DEMO = "lab-demo"


def _lab_demo(settings: Settings) -> None:
    """Beside the climate demo, a lab's: raw TDMS shots and a CSV log ingested as the
    public collection 'lab-demo' (``insitu ingest demo``; a few seconds)."""
    from insitu.catalog import Catalog
    from insitu.ingest import run_demo

    click.echo(f"Ingesting the lab demo (raw TDMS shots and a CSV log) as '{LAB_DEMO}'.")
    run_demo(settings)
    with Catalog(settings) as cat:
        cat.set_public(LAB_DEMO, True)


def _login_help(settings: Settings, password: str | None, mode: str) -> str:
    admin = settings.hub.admin
    lines = [f"insitu is up at {settings.hub_url}/"]
    if settings.hub.authenticator == "insitu":
        if password:
            lines.append(
                f"Log in as {admin!r} with password {password}\n"
                "  (shown this once and stored hashed; keep it now)."
            )
        else:
            lines.append(f"Log in with an account of 'insitu user list' (first admin: {admin!r}).")
        lines.append("Add people with: insitu user add NAME [--admin]")
    else:
        lines.append(f"Log in through the {settings.hub.authenticator!r} authenticator.")
    lines.append(f"Data service through the hub: {settings.hub_url}/services/insitu/")
    if mode == "single":
        lines.append(
            "Single-account mode: every user's notebooks run as this account, with NO "
            "isolation between users (hub.isolation)."
        )
    if settings.hub.host in ("127.0.0.1", "localhost", "::1"):
        lines.append(
            "It listens on loopback only; from your desktop: "
            f"insitu tunnel USER@THIS-HOST (or ssh -L {settings.hub.port}:127.0.0.1:"
            f"{settings.hub.port} USER@THIS-HOST)."
        )
    return "\n".join(lines)


@click.command("up")
@click.option("--detach", is_flag=True, help="Return once everything answers; 'insitu down' stops.")
@click.option("--status", "show_status", is_flag=True, help="Say whether the platform runs.")
@click.option(
    "--timeout", type=float, default=180, show_default=True, help="Seconds to wait for start."
)
@click.pass_obj
def up_command(settings: Settings, detach: bool, show_status: bool, timeout: float) -> None:
    """Start the platform: JupyterHub with the data service and a Dask-Gateway."""
    from insitu import hub

    if show_status:
        state = hub.running(settings)
        if state is None:
            click.echo("The platform is not running.")
            sys.exit(1)
        click.echo(f"The platform runs at {state.url}/ (hub pid {state.pid}, log {state.log}).")
        return
    mode = hub.isolation(settings)
    password = _first_admin(settings)
    _index_demo_if_empty(settings)
    state = hub.start(settings, _config_file())
    click.echo(f"Starting JupyterHub (log {state.log}) ...")
    started = time.monotonic()
    try:
        hub.wait_ready(
            settings,
            state,
            timeout=timeout,
            progress=lambda part: click.echo(
                f"  {part} answers ({time.monotonic() - started:.1f} s)"
            ),
        )
    except BaseException:
        hub.stop(settings)
        raise
    click.echo(_login_help(settings, password, mode))
    if detach:
        click.echo("Stop it with: insitu down")
        return
    click.echo("Ctrl-C stops it.")
    _wait_then_stop(settings, state)


def _wait_then_stop(settings: Settings, state: Any) -> None:
    from insitu import hub

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while hub.running(settings) is not None:
            time.sleep(0.5)
        click.echo(f"JupyterHub exited; see {state.log}.")
    except KeyboardInterrupt:
        click.echo("\nStopping the platform ...")
    finally:
        hub.stop(settings)
        click.echo("Stopped.")


@click.command("down")
@click.pass_obj
def down_command(settings: Settings) -> None:
    """Stop the platform and every process it started."""
    from insitu import hub

    state = hub.stop(settings)
    if state is None:
        click.echo("The platform is not running.")
        return
    click.echo(f"Stopped the platform at {state.url}/ (hub pid {state.pid}).")


@click.group("user")
def user_group() -> None:
    """The platform's accounts (the 'insitu' authenticator)."""


def _password(password_file: Path | None) -> tuple[str, bool]:
    if password_file is None:
        return secrets.token_urlsafe(12), True
    text = password_file.read_text().strip()
    if not text:
        raise InvalidRequest(f"Password file {password_file} is empty.")
    return text, False


@user_group.command("add")
@click.argument("name")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the password from this file (default: generate one and print it once).",
)
@click.option("--admin", is_flag=True, help="A hub administrator.")
@click.pass_obj
def user_add(settings: Settings, name: str, password_file: Path | None, admin: bool) -> None:
    """Add an account (and, where the platform runs as root, its unix account)."""
    from insitu import hub

    hub.check_name(name)
    password, generated = _password(password_file)
    if hub.isolation(settings) == "users":
        entry = hub.ensure_unix_account(
            name, Path(settings.hub.home_template.format(username=name))
        )
        click.echo(f"Unix account {name} (uid {entry.pw_uid}, home {entry.pw_dir}, mode 0700).")
    hub.UserRegistry(hub.HubPaths.of(settings).accounts).add(name, password, admin=admin)
    if hub.running(settings) is not None:
        from insitu.hub import hub_api

        hub_api(settings, "POST", f"users/{name}", {"admin": admin})
    role = "admin" if admin else "user"
    click.echo(f"Added {role} {name}.")
    if generated:
        click.echo(f"Password: {password}  (shown once; stored hashed)")


@user_group.command("list")
@click.pass_obj
def user_list(settings: Settings) -> None:
    """The accounts, with admin flags and whether their server runs."""
    from insitu import hub
    from insitu.hub import hub_api

    servers: dict[str, Any] = {}
    if hub.running(settings) is not None:
        servers = {u["name"]: u for u in hub_api(settings, "GET", "users")}
    for account in hub.UserRegistry(hub.HubPaths.of(settings).accounts).accounts():
        live = servers.get(account.name, {}).get("servers", {})
        click.echo(
            f"{account.name:20s} {'admin' if account.admin else 'user':5s} "
            f"{'server running' if live else ''}".rstrip()
        )


@user_group.command("remove")
@click.argument("name")
@click.option("--delete-home", is_flag=True, help="Also delete the unix account's home folder.")
@click.pass_obj
def user_remove(settings: Settings, name: str, delete_home: bool) -> None:
    """Remove an account: it can no longer log in; its server stops."""
    from insitu import hub
    from insitu.hub import hub_api

    hub.UserRegistry(hub.HubPaths.of(settings).accounts).remove(name)
    if hub.running(settings) is not None:
        hub_api(settings, "DELETE", f"users/{name}")
    store = _grants_store(settings)
    store.ungrant(name, store.granted(name))  # a later account of that name starts afresh
    if hub.isolation(settings) == "users":
        hub.remove_unix_account(name, delete_home=delete_home)
    kept = "" if delete_home else " (its home folder is kept)"
    click.echo(f"Removed {name}{kept}.")


def _grants_store(settings: Settings) -> Any:
    from insitu.access import TokenStore

    return TokenStore.from_uri(settings.catalog_uri)


@user_group.command("grant")
@click.argument("name")
@click.argument("collections", nargs=-1, required=True)
@click.pass_obj
def user_grant(settings: Settings, name: str, collections: tuple[str, ...]) -> None:
    """Let hub user NAME read and compute on restricted COLLECTIONS ('*': all) in the
    data service (public collections need no grant; hub admins have all)."""
    from insitu.catalog import Catalog

    with Catalog(settings) as cat:
        known = {c.name for c in cat.collections()}
    unknown = sorted(set(collections) - known - {"*"})
    if unknown:
        raise InvalidRequest(
            f"No collection {', '.join(map(repr, unknown))}. See 'insitu catalog list'."
        )
    store = _grants_store(settings)
    store.grant(name, collections)
    click.echo(f"{name} may now use: {', '.join(sorted(store.granted(name)))}")


@user_group.command("ungrant")
@click.argument("name")
@click.argument("collections", nargs=-1, required=True)
@click.pass_obj
def user_ungrant(settings: Settings, name: str, collections: tuple[str, ...]) -> None:
    """Take back grants made with 'insitu user grant' (effective at the next request)."""
    store = _grants_store(settings)
    store.ungrant(name, collections)
    left = sorted(store.granted(name))
    click.echo(f"{name} may now use: {', '.join(left) or 'public collections only'}")


@click.group("project")
def project_group() -> None:
    """Project folders that every member can read and write (and a hub group)."""


def _sync_hub_group(settings: Settings, name: str, members: list[str]) -> None:
    """The hub's group ``name`` with exactly ``members``, when the hub runs."""
    from insitu import hub
    from insitu.hub import hub_api

    if hub.running(settings) is None:
        return  # the hub loads the groups when it starts
    groups = {g["name"]: g for g in hub_api(settings, "GET", "groups")}
    if name not in groups:
        hub_api(settings, "POST", f"groups/{name}", {})
        current: set[str] = set()
    else:
        current = set(groups[name].get("users", []))
    if set(members) - current:
        hub_api(settings, "POST", f"groups/{name}/users", {"users": sorted(set(members))})
    if current - set(members):
        hub_api(
            settings, "DELETE", f"groups/{name}/users", {"users": sorted(current - set(members))}
        )


@project_group.command("add")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A member (repeat for more).")
@click.pass_obj
def project_add(settings: Settings, name: str, members: tuple[str, ...]) -> None:
    """Make project NAME (or add members to it): its folder appears as ~/projects/NAME in
    each member's home at their next server start."""
    from insitu.hub import ProjectRegistry

    project = ProjectRegistry(settings).add(name, list(members))
    _sync_hub_group(settings, name, list(project.members))
    click.echo(f"Project {name}: {project.folder} ({', '.join(project.members) or 'no members'}).")


@project_group.command("leave")
@click.argument("name")
@click.option("--member", "members", multiple=True, required=True, help="Who leaves.")
@click.pass_obj
def project_leave(settings: Settings, name: str, members: tuple[str, ...]) -> None:
    """Take members out of project NAME (their files in it stay)."""
    from insitu.hub import ProjectRegistry

    project = ProjectRegistry(settings).remove_members(name, list(members))
    _sync_hub_group(settings, name, list(project.members))
    click.echo(f"Project {name}: {', '.join(project.members) or 'no members'}.")


@project_group.command("list")
@click.pass_obj
def project_list(settings: Settings) -> None:
    """The projects, their folders and members."""
    from insitu.hub import ProjectRegistry

    for p in ProjectRegistry(settings).projects():
        click.echo(f"{p.name:20s} {p.folder}  {', '.join(p.members)}")


@project_group.command("remove")
@click.argument("name")
@click.pass_obj
def project_remove(settings: Settings, name: str) -> None:
    """Forget project NAME and its group; its folder and files are kept."""
    from insitu import hub
    from insitu.hub import ProjectRegistry, hub_api

    project = ProjectRegistry(settings).remove(name)
    if hub.running(settings) is not None:
        hub_api(settings, "DELETE", f"groups/{name}")
    click.echo(f"Removed project {name}; its files stay in {project.folder}.")

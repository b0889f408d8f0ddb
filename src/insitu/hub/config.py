"""JupyterHub's configuration, made from insitu's settings.

``insitu up`` runs ``jupyterhub -f insitu/hub/jupyterhub_config.py``; that file calls
:func:`configure`. Everything is JupyterHub's own: its proxy (configurable-http-proxy), its
spawners and authenticators, its services, roles and sharing. What insitu adds is the wiring:
the data service and a Dask-Gateway as hub services, the environment that lets a notebook
find the catalog, the data service and the user's clusters, and the example notebooks.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from insitu.errors import ConfigError
from insitu.hub.dashboards import CLUSTERS_ENV
from insitu.hub.dashboards import PREFIX as DASHBOARDS
from insitu.hub.paths import HubPaths, Ports, isolation, proxy_command
from insitu.hub.singleuser import prepare_home, singleuser_args
from insitu.settings import Settings

__all__ = ["AUTHENTICATORS", "SPAWNERS", "configure", "notebook_catalog_uri", "user_environment"]

AUTHENTICATORS = {
    "insitu": "insitu.hub.auth.InsituAuthenticator",
    "pam": "jupyterhub.auth.PAMAuthenticator",
    "ldap": "ldapauthenticator.LDAPAuthenticator",
    "oauth": "oauthenticator.generic.GenericOAuthenticator",
}
SPAWNERS = {
    "slurm": "batchspawner.SlurmSpawner",
    "pbs": "batchspawner.PBSSpawner",
    "lsf": "batchspawner.LsfSpawner",
    # On the host's network, as the user's account, the platform mounted (hub/spawner.py).
    "docker": "insitu.hub.spawner.HostNetworkDockerSpawner",
    "kubernetes": "kubespawner.KubeSpawner",
}
PLATFORM_MARK = "INSITU_PLATFORM_ID"
# jupyterhub-singleuser less about 1 s of CPU (of 2.5) at every start: jupyter_events imports
# jsonschema, which builds its checker of the 'iri' formats (35 Earley parsers) at import
# when rfc3987_syntax is installed. No schema of the server uses those formats; without the
# module jsonschema leaves them unchecked (BENCHMARKS.md, Hub).
SINGLEUSER_MAIN = (
    "import sys; sys.modules['rfc3987_syntax'] = None; "
    "from jupyterhub.singleuser import main; sys.exit(main())"
)
EXAMPLES = "examples"
FIRST_NOTEBOOK = "01-cmip6-global-mean.ipynb"


def _bin(name: str) -> str:
    return str(Path(sys.prefix) / "bin" / name)


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        mod = __import__(module, fromlist=[name])
        cls: type = getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Cannot load {path!r} ({exc}). Install the package that provides it into "
            f"{sys.prefix}, or pick another in the hub settings."
        ) from exc
    return cls


def _apply(c: Any, cls: type, options: dict[str, Any]) -> None:
    section = getattr(c, cls.__name__)
    for key, value in options.items():
        setattr(section, key, value)


def notebook_catalog_uri(settings: Settings) -> str:
    """The catalog URL for users' notebooks and Dask workers (never the platform's
    credentials: see ``hub.notebook_catalog_uri``)."""
    if settings.hub.notebook_catalog_uri:
        return settings.hub.notebook_catalog_uri
    uri = settings.catalog_uri
    if uri.startswith("sqlite"):
        return uri
    raise ConfigError(
        "The catalog is not a SQLite file, and users' notebooks must not get the platform's "
        "own database credentials. Create a read-only role (PostgreSQL: CREATE ROLE reader "
        "LOGIN PASSWORD '...'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader) and set "
        "hub.notebook_catalog_uri (INSITU_HUB__NOTEBOOK_CATALOG_URI) to its URL."
    )


def user_environment(settings: Settings, ports: Ports) -> dict[str, str]:
    """What a user's server (and so every kernel) finds in its environment.

    ``insitu.Catalog()`` opens the platform's catalog, links go to the data service through
    the hub, and ``insitu.cluster()`` asks the hub's Dask-Gateway for the user's cluster.
    """
    hub = settings.hub_url
    env = {
        "INSITU_CATALOG__URI": notebook_catalog_uri(settings),
        "INSITU_ACCESS__PUBLIC_URL": f"{hub}/services/insitu",
    }
    # Where batch jobs go: ipyparallel's 'slurm'/'mpi' profiles and insitu.cluster(backend=
    # "slurm") in a notebook submit to the platform's queue (and account).
    jobs = settings.compute.jobqueue
    if jobs.queue:
        env["INSITU_COMPUTE__JOBQUEUE__QUEUE"] = jobs.queue
    if jobs.account:
        env["INSITU_COMPUTE__JOBQUEUE__ACCOUNT"] = jobs.account
    if settings.hub.gateway:
        gateway = f"http://127.0.0.1:{settings.hub.port}/services/dask-gateway"
        tcp = f"gateway://127.0.0.1:{ports.gateway_tcp}"
        env |= {
            "INSITU_COMPUTE__BACKEND": "gateway",
            "INSITU_COMPUTE__GATEWAY_ADDRESS": gateway,
            "INSITU_COMPUTE__GATEWAY_PROXY_ADDRESS": tcp,
            "INSITU_COMPUTE__GATEWAY_AUTH": "jupyterhub",
            # The same for plain dask_gateway and the JupyterLab Dask panel.
            "DASK_GATEWAY__ADDRESS": gateway,
            "DASK_GATEWAY__PROXY_ADDRESS": tcp,
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
            # Dashboard links lead to the user's own server, which proxies the dashboard's
            # socket (dashboards.py); dask_gateway fills in the prefix from the environment.
            "DASK_GATEWAY__PUBLIC_ADDRESS": hub + "{JUPYTERHUB_SERVICE_PREFIX}" + DASHBOARDS,
            CLUSTERS_ENV: str(HubPaths.of(settings).clusters),
            "DASK_DISTRIBUTED__DASHBOARD__LINK": "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status",
            # JupyterLab's Dask panel makes the user's clusters through the gateway.
            "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
            "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
        }
    return env


def _copy_examples(home: Path, uid: int | None, gid: int | None) -> bool:
    """Put the example notebooks in ``home/examples`` when missing; True on a first copy.

    As root in a home its user controls: every step is descriptor-relative and refuses
    links (``create_missing``), so a link planted in place of a folder or file is an error,
    never a write or a chown somewhere else.
    """
    from insitu.hub.profiles import create_missing

    if os.path.lexists(home / EXAMPLES):  # a link the user put there counts as present
        return False
    source = resources.files("insitu.hub") / "notebooks"
    notebooks = {i.name: i.read_bytes() for i in source.iterdir() if i.name.endswith(".ipynb")}
    try:
        for name, data in notebooks.items():
            create_missing(home, (EXAMPLES,), name, data, uid, gid)
    except OSError as exc:  # something the user put there: nothing is written through it
        logging.getLogger(__name__).warning("No examples in %s: %s", home, exc)
        return False
    return True


def _pre_spawn(settings: Settings, spawner: Any) -> None:
    """Before a server starts: the home and, on the first login, the example notebooks."""
    mode = spawner.insitu_isolation
    if mode == "users":
        from insitu.hub.users import ensure_unix_account

        name = spawner.user.name
        entry = ensure_unix_account(name, Path(spawner.insitu_home.format(username=name)))
        home = Path(entry.pw_dir)
        first = _copy_examples(home, entry.pw_uid, entry.pw_gid)
        prepare_home(settings, name, home, entry.pw_uid, entry.pw_gid)
        if hasattr(spawner, "prepare_container"):  # HostNetworkDockerSpawner
            spawner.prepare_container(settings, entry)
    elif hasattr(spawner, "prepare_container"):
        raise ConfigError(
            f"hub.spawner = {settings.hub.spawner!r} runs each user's container as their unix "
            f"account, which needs hub.isolation = 'users' (it is {mode!r}): start the "
            "platform as root."
        )
    else:
        home = Path(spawner.home_dir)
        home.mkdir(parents=True, exist_ok=True)
        first = _copy_examples(home, None, None)
        prepare_home(settings, spawner.user.name, home, None, None)
    if first:
        spawner.default_url = f"/lab/tree/{EXAMPLES}/{FIRST_NOTEBOOK}"
    _record_usage(settings, spawner, start=True)


def _server_key(spawner: Any) -> str:
    return f"server:{spawner.user.name}/{spawner.name or ''}"


def _record_usage(settings: Settings, spawner: Any, *, start: bool) -> None:
    """A user's server started or stopped, for the usage log (never failing the spawn)."""
    from insitu.access import UsageLog

    try:
        usage = UsageLog(HubPaths.of(settings).usage)
        if start:
            cores = float(getattr(spawner, "cpu_limit", None) or 1.0)
            usage.start("server", _server_key(spawner), spawner.user.name, cores)
        else:
            usage.stop(_server_key(spawner))
    except Exception:
        spawner.log.exception("Could not record usage of %s", _server_key(spawner))


def _post_stop(settings: Settings, spawner: Any) -> None:
    _record_usage(settings, spawner, start=False)


def _spawner(c: Any, settings: Settings, paths: HubPaths, ports: Ports, mark: str) -> None:
    hub = settings.hub
    mode = isolation(settings)
    name = hub.spawner
    if name == "local":
        if mode == "users":
            path = "insitu.hub.spawner.PromptLocalProcessSpawner"
        else:
            path = "insitu.hub.spawner.PromptSimpleLocalProcessSpawner"
            c.SimpleLocalProcessSpawner.home_dir_template = str(paths.homes / "{username}")
            if os.geteuid() == 0:
                # One account for everyone: jupyter-server refuses root unless told.
                c.Spawner.args = ["--allow-root"]
    else:
        path = SPAWNERS.get(name, name)
    cls = _import(path)
    c.JupyterHub.spawner_class = cls
    c.Spawner.cmd = [_bin("jupyterhub-singleuser")]
    if name == "local":
        c.Spawner.cmd = [sys.executable, "-c", SINGLEUSER_MAIN]
    elif name == "docker":
        # The image's venv (scripts/podman.sh) comes first on its PATH.
        c.Spawner.cmd = ["python", "-c", SINGLEUSER_MAIN]
    if name in ("local", "docker") and mode == "users":
        # umask 002: members of a project can edit each other's files in its folder
        # (homes stay 0700, every user has a group of their own).
        c.Spawner.cmd = ["/bin/sh", "-c", 'umask 002 && exec "$0" "$@"', *c.Spawner.cmd]
    c.Spawner.args = [
        *c.Spawner.get("args", []),
        f"--HubAuth.cache_max_age={hub.auth_cache_seconds}",
        *singleuser_args(settings),
    ]
    c.Spawner.default_url = "/lab"
    options = dict(hub.spawner_config)
    # 'environment' adds to the platform's; set as a trait it would replace it, losing the
    # catalog, the gateway and the mark 'insitu down' finds processes by.
    extra = {str(k): str(v) for k, v in options.pop("environment", {}).items()}
    c.Spawner.environment = user_environment(settings, ports) | extra | {PLATFORM_MARK: mark}
    c.Spawner.pre_spawn_hook = functools.partial(_pre_spawn, settings)
    c.Spawner.post_stop_hook = functools.partial(_post_stop, settings)
    c.Spawner.start_timeout = 120
    # 20 users starting at once on 2 cores took up to 64 s to answer (BENCHMARKS.md, Hub).
    c.Spawner.http_timeout = 120
    # jupyter-collaboration leaves a non-daemon AnyIO worker thread behind once a shared
    # document was saved (jupyterlab/jupyter-collaboration#161): the server has cleaned up,
    # then waits at interpreter exit until SIGKILL. 15 s, not JupyterHub's 30 + 30 s.
    c.LocalProcessSpawner.interrupt_timeout = 10
    c.LocalProcessSpawner.term_timeout = 5
    if name in ("slurm", "pbs", "lsf"):
        c.BatchSpawnerBase.batchspawner_singleuser_cmd = _bin("batchspawner-singleuser")
    # The hook reads these from the spawner instance.
    cls.insitu_isolation = mode  # type: ignore[attr-defined]
    cls.insitu_home = hub.home_template  # type: ignore[attr-defined]
    _apply(c, cls, options)


def _authenticator(c: Any, settings: Settings, paths: HubPaths) -> None:
    hub = settings.hub
    cls = _import(AUTHENTICATORS.get(hub.authenticator, hub.authenticator))
    c.JupyterHub.authenticator_class = cls
    if hub.authenticator == "insitu":
        from insitu.hub.users import UserRegistry

        c.InsituAuthenticator.accounts_file = str(paths.accounts)
        # The hub knows every account from the start (its API can start their servers
        # before they first log in); the file stays the one that decides at each login.
        accounts = UserRegistry(paths.accounts).accounts()
        c.Authenticator.allowed_users = {a.name for a in accounts}
        c.Authenticator.admin_users = {a.name for a in accounts if a.admin}
        c.Authenticator.any_allow_config = True
        # A removed account's sessions end within a minute, and it never spawns again.
        c.Authenticator.refresh_pre_spawn = True
        c.Authenticator.auth_refresh_age = 60
    _apply(c, cls, hub.authenticator_config)


def _services(c: Any, settings: Settings, paths: HubPaths, ports: Ports, mark: str) -> None:
    hub = settings.hub
    python = sys.executable
    base = {k: v for k, v in os.environ.items() if k.startswith("INSITU_")}
    base |= {PLATFORM_MARK: mark, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    services: list[dict[str, Any]] = [
        {
            "name": "insitu",
            "display": True,
            "info": {"description": "Catalog, data access and server-side operations"},
            "url": f"http://127.0.0.1:{ports.service}",
            "command": [python, "-m", "insitu.cli", "serve", "--hub"],
            "environment": base
            | {
                "INSITU_ACCESS__HOST": "127.0.0.1",
                "INSITU_ACCESS__PORT": str(ports.service),
                "INSITU_ACCESS__PUBLIC_URL": f"{settings.hub_url}/services/insitu",
            },
            "oauth_no_confirm": True,
            # The sharing page acts as the logged-in user on their own server only.
            "oauth_client_allowed_scopes": [
                "shares!user",
                "access:servers!user",
                "read:users:name",
            ],
        },
        {"name": "insitu-admin", "api_token": paths.secret("admin_token")},
    ]
    roles: list[dict[str, Any]] = [
        {
            "name": "user",
            "scopes": ["self", "access:services", "shares!user", "read:users:name"],
        },
        {
            # The token of a user's server (JUPYTERHUB_API_TOKEN in every kernel): JupyterHub's
            # defaults, plus the data service and the gateway, so notebooks reach both.
            "name": "server",
            "scopes": [
                "access:servers!server",
                "users:activity!user",
                "read:users:activity!user",
                "read:users:name!user",
                "read:users:groups!user",
                "access:services!service=insitu",
                "access:services!service=dask-gateway",
            ],
        },
        {
            "name": "insitu-admin",
            "scopes": [
                "admin:users",
                "admin:servers",
                "admin:groups",
                "tokens",
                "shares",
                "access:servers",
                "access:services",
            ],
            "services": ["insitu-admin"],
        },
        {"name": "insitu-service", "scopes": ["read:users", "read:groups"], "services": ["insitu"]},
    ]
    if hub.gateway:
        services.append(
            {
                "name": "dask-gateway",
                "url": f"http://127.0.0.1:{ports.gateway_http}",
                "command": [python, "-m", "dask_gateway_server", "-f", _gateway_config()],
                "environment": base | {"INSITU_HUB_PLATFORM_DIR": str(paths.root)},
                "display": False,
            }
        )
    if hub.idle_timeout:
        services.append(
            {
                "name": "idle-culler",
                "command": [
                    python,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={hub.idle_timeout}",
                    f"--cull-every={max(15, min(300, hub.idle_timeout // 4))}",
                ],
                "environment": {PLATFORM_MARK: mark},
            }
        )
        roles.append(
            {
                "name": "idle-culler",
                "scopes": [
                    "list:users",
                    "read:users:activity",
                    "read:servers",
                    "delete:servers",
                ],
                "services": ["idle-culler"],
            }
        )
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def _gateway_config() -> str:
    return str(resources.files("insitu.hub") / "gateway_config.py")


def configure(c: Any, settings: Settings) -> None:
    """Fill JupyterHub's config object ``c`` from ``settings``."""
    hub = settings.hub
    paths = HubPaths.of(settings)
    paths.ensure()
    ports = Ports.of(settings)
    mark = os.environ.get(PLATFORM_MARK, "")
    c.JupyterHub.ip = hub.host
    c.JupyterHub.port = hub.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = ports.hub_api
    if hub.ssl_cert or hub.ssl_key:
        if not (hub.ssl_cert and hub.ssl_key):
            raise ConfigError("Set both hub.ssl_key and hub.ssl_cert, or neither.")
        c.JupyterHub.ssl_key = hub.ssl_key
        c.JupyterHub.ssl_cert = hub.ssl_cert
    c.ConfigurableHTTPProxy.command = [proxy_command(settings)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports.proxy_api}"
    c.ConfigurableHTTPProxy.auth_token = paths.secret("proxy_token")
    c.ConfigurableHTTPProxy.pid_file = str(paths.root / "proxy.pid")
    c.JupyterHub.db_url = hub.db_url or f"sqlite:///{paths.root / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(paths.root / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(paths.root / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.template_vars = {"announcement_login": _login_note(settings)}
    from insitu.hub.projects import ProjectRegistry

    c.JupyterHub.load_groups = {
        p.name: {"users": list(p.members)} for p in ProjectRegistry(settings).projects()
    }
    _authenticator(c, settings, paths)
    _spawner(c, settings, paths, ports, mark)
    _services(c, settings, paths, ports, mark)


def _login_note(settings: Settings) -> str:
    if isolation(settings) == "single":
        account = "root" if os.geteuid() == 0 else "the same account"
        return (
            "This platform runs in single-account mode: every user's notebooks run as "
            f"{account}, with no isolation between users."
        )
    return "insitu: notebooks next to the data."

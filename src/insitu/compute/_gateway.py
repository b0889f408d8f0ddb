"""Per-user clusters from a Dask-Gateway server.

The gateway decides where schedulers and workers run (local processes, a batch system,
Kubernetes) and who may use them; insitu asks it for a cluster sized by the compute
settings, gives its workers the malloc settings of :data:`WORKER_ENV` when the server lets
users set environment variables, and shuts the cluster down when done. A cluster the
process forgets (it was killed) lives until the server's idle timeout, if it has one.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from insitu.compute.backend import WORKER_ENV, ClusterHandle, ClusterSpec, DaskClusterBackend
from insitu.errors import BackendUnavailable, ConfigError, InsituError, Unauthorized
from insitu.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["GatewayBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SETTINGS_HINT = (
    "compute.gateway_address (INSITU_COMPUTE__GATEWAY_ADDRESS), e.g. http://127.0.0.1:18130 "
    "for the test gateway of scripts/gateway.sh or "
    "https://HUB/services/dask-gateway behind JupyterHub"
)


_lock = threading.Lock()
_runner: Any = None
_live: dict[str, Any] = {}  # name -> GatewayCluster not yet shut down


def _loop() -> Any:
    """The IO loop (in a thread of its own) every dask-gateway object of this process uses.

    The objects run in dask-gateway's asynchronous mode, driven from here with ``sync``:
    in its synchronous mode each ``Gateway`` closes itself again in ``__del__``, which
    raises RuntimeError once its loop has stopped and deadlocks when garbage collection
    runs it on the loop's own thread. Asynchronous objects have no such ``__del__``.
    """
    global _runner
    with _lock:
        if _runner is None:
            from distributed.utils import LoopRunner

            runner = LoopRunner(asynchronous=False)
            runner.start()
            atexit.register(_shutdown_lingering)
            _runner = runner
        return _runner.loop


def _sync(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    from distributed.utils import sync

    result: T = sync(_loop(), func, *args)
    return result


def _shutdown_lingering() -> None:
    """At exit, shut down the clusters this process started and did not stop."""
    for name, cluster in list(_live.items()):
        try:
            _sync(cluster.shutdown)
        except Exception as exc:  # the gateway may be gone already: nothing left to do
            log.warning("could not shut down gateway cluster %s at exit: %s", name, exc)
    _live.clear()


def _secret(value: Any) -> str | None:
    """The plain text of a pydantic ``SecretStr`` (or of a plain string)."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def _auth(options: dict[str, Any]) -> Any:
    """The dask-gateway auth object for the settings; ``None`` leaves it to Dask's config."""
    import dask_gateway

    kind = options.get("auth")
    if kind is None:
        return None
    if kind == "basic":
        return dask_gateway.BasicAuth(
            username=options.get("username") or None, password=_secret(options.get("password"))
        )
    if kind == "jupyterhub":
        try:
            return dask_gateway.JupyterHubAuth(api_token=_secret(options.get("api_token")))
        except ValueError as exc:
            raise ConfigError(
                "compute.gateway_auth is 'jupyterhub' but there is no API token: set "
                "compute.gateway_api_token (INSITU_COMPUTE__GATEWAY_API_TOKEN) or run where "
                "JupyterHub sets $JUPYTERHUB_API_TOKEN (a notebook server)."
            ) from exc
    if kind == "kerberos":
        return dask_gateway.KerberosAuth()
    raise ConfigError(f"compute.gateway_auth is {kind!r}; use 'basic', 'jupyterhub' or 'kerberos'.")


def _memory_option(current: Any, memory_limit: str) -> Any:
    """``memory_limit`` ('4GB') in the form of the server's option: numbers are GiB."""
    from dask.utils import parse_bytes

    if isinstance(current, int | float) and not isinstance(current, bool):
        gib = parse_bytes(memory_limit) / 2**30
        return gib if isinstance(current, float) else max(1, round(gib))
    return memory_limit


def _wanted_options(options: Any, spec: ClusterSpec) -> dict[str, Any]:
    """Cluster options from the spec, then the explicit ones of the settings on top."""
    offered = set(options)
    wanted: dict[str, Any] = {}
    if "worker_cores" in offered:
        wanted["worker_cores"] = spec.threads_per_worker
    if "worker_memory" in offered and spec.memory_limit != "auto":
        wanted["worker_memory"] = _memory_option(options["worker_memory"], spec.memory_limit)
    explicit = dict(spec.options.get("cluster_options") or {})
    if "environment" in offered:
        # glibc reads these at process start; the nanny hands its own environment on to
        # the worker process it spawns, so setting them on the worker command suffices.
        wanted["environment"] = {
            **dict(options["environment"]),
            **WORKER_ENV,
            **dict(explicit.pop("environment", None) or {}),
        }
    else:
        log.info(
            "the gateway offers no 'environment' cluster option: its workers keep Dask's "
            "malloc settings (ask its admin to set c.ClusterConfig.environment to %s)",
            WORKER_ENV,
        )
    unknown = sorted(set(explicit) - offered)
    if unknown:
        raise ConfigError(
            f"compute.gateway_cluster_options names {', '.join(map(repr, unknown))}, which the "
            f"gateway does not offer. It offers: {', '.join(sorted(offered)) or 'nothing'}."
        )
    return {**wanted, **explicit}


class GatewayBackend(DaskClusterBackend):
    """A new cluster on the gateway at ``compute.gateway_address`` (per user, isolated).

    Without ``compute.workers`` the cluster is adaptive: one worker, more while there is
    work, up to the gateway's limit. It is shut down by :meth:`stop`, or at interpreter
    exit if :meth:`stop` was never called.
    """

    name: ClassVar[str] = "gateway"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"address", "proxy_address", "auth", "username", "password", "api_token", "cluster_options"}
    )

    @classmethod
    def options_from_settings(cls, settings: Settings) -> dict[str, Any]:
        """The server, how to log in and the cluster options (``compute.gateway_*``).

        The password and token stay ``SecretStr``: hidden in reprs and logs.
        """
        c = settings.compute
        return {
            "address": c.gateway_address,
            "proxy_address": c.gateway_proxy_address,
            "auth": c.gateway_auth,
            "username": c.gateway_username,
            "password": c.gateway_password,
            "api_token": c.gateway_api_token,
            "cluster_options": c.gateway_cluster_options,
        }

    def start(self, spec: ClusterSpec) -> ClusterHandle:
        """Ask the gateway for a cluster; wait until its scheduler runs.

        Raises :class:`BackendUnavailable` when the gateway cannot be reached or the cluster
        fails, :class:`Unauthorized` when it refuses the credentials, :class:`ConfigError`
        for settings it cannot use.
        """
        self.check_options(spec)
        return ClusterHandle(self.name, self._make(spec))

    def _make(self, spec: ClusterSpec) -> Any:
        address = self._address(spec)
        with _gateway_errors(address, spec, "start a cluster"):
            cluster = _sync(self._start, spec, address)
        _live[cluster.name] = cluster
        log.info("gateway %s started cluster %s", address, cluster.name)
        return cluster

    async def _start(self, spec: ClusterSpec, address: str) -> Any:
        from dask_gateway import Gateway, GatewayCluster

        async with Gateway(
            address,
            proxy_address=spec.options.get("proxy_address"),
            auth=_auth(spec.options),
            asynchronous=True,
        ) as gateway:
            options = _fill_options(await gateway.cluster_options(), spec, address)
        # On failure to start, it stops the cluster on the gateway before raising.
        cluster = await GatewayCluster(
            address=address,
            proxy_address=spec.options.get("proxy_address"),
            auth=_auth(spec.options),
            cluster_options=options,
            asynchronous=True,
        )
        try:
            if spec.workers:
                await cluster.scale(spec.workers)
            else:
                await cluster.adapt(minimum=1)
        except BaseException:
            await cluster.shutdown()
            raise
        return cluster

    def scale(self, handle: ClusterHandle, workers: int) -> None:
        """Ask the gateway for ``workers`` workers (this ends adaptive scaling)."""
        address = handle.cluster.gateway.address
        with _gateway_errors(address, None, f"scale cluster {handle.cluster.name}"):
            _sync(handle.cluster.scale, workers)

    def stop(self, handle: ClusterHandle) -> None:
        """Shut the cluster down on the gateway (its workers and scheduler stop)."""
        cluster = handle.cluster
        _live.pop(cluster.name, None)
        with _gateway_errors(cluster.gateway.address, None, f"stop cluster {cluster.name}"):
            _sync(cluster.shutdown)

    def connect(
        self, spec: ClusterSpec, scheduler_address: str, *, set_as_default: bool = True
    ) -> Client:
        """A client of a running cluster of this gateway, by its ``gateway://`` address.

        The connection needs the cluster's TLS credentials, which the gateway hands to the
        cluster's owner, so this logs in again with the settings' auth.
        """
        from distributed import Client

        address = self._address(spec)
        name = scheduler_address.rstrip("/").rsplit("/", 1)[-1]
        with _gateway_errors(address, spec, f"connect to cluster {name}"):
            report = _sync(self._report, spec, address, name)
        return Client(
            report.scheduler_address,
            security=report.security,
            timeout="10s",
            set_as_default=set_as_default,
        )

    @staticmethod
    async def _report(spec: ClusterSpec, address: str, name: str) -> Any:
        from dask_gateway import Gateway

        async with Gateway(
            address,
            proxy_address=spec.options.get("proxy_address"),
            auth=_auth(spec.options),
            asynchronous=True,
        ) as gateway:
            return await gateway.get_cluster(name)

    @staticmethod
    def _address(spec: ClusterSpec) -> str:
        import dask

        address = spec.options.get("address") or dask.config.get("gateway.address", None)
        if not address:
            raise ConfigError(f"The gateway backend needs {_SETTINGS_HINT}.")
        return str(address)


def _fill_options(options: Any, spec: ClusterSpec, address: str) -> Any:
    """The server's cluster options, filled in from the spec and the settings."""
    for key, value in _wanted_options(options, spec).items():
        try:
            options[key] = value
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"The gateway at {address} does not accept cluster option {key}={value!r}: "
                f"{exc}. Change compute.gateway_cluster_options (or threads_per_worker / "
                "memory_limit, which set worker_cores / worker_memory)."
            ) from exc
    return options


@contextmanager
def _gateway_errors(address: str, spec: ClusterSpec | None, what: str) -> Iterator[None]:
    """Turn dask-gateway's and aiohttp's errors into ours, naming the gateway address."""
    import aiohttp
    from dask_gateway import GatewayClusterError, GatewayServerError

    try:
        yield
    except InsituError:
        raise
    except aiohttp.ClientResponseError as exc:
        if exc.status not in (401, 403):
            raise BackendUnavailable(
                f"The Dask-Gateway server at {address} answered HTTP {exc.status} "
                f"({exc.message}) when asked to {what}. Check {_SETTINGS_HINT}."
            ) from exc
        opts = spec.options if spec else {}
        raise Unauthorized(
            f"The Dask-Gateway server at {address} refused the login (HTTP {exc.status}, "
            f"auth {opts.get('auth') or 'from Dask config'}, "
            f"user {opts.get('username') or 'the login name'}). "
            "Check compute.gateway_auth and compute.gateway_password or "
            "compute.gateway_api_token."
        ) from exc
    except (GatewayClusterError, GatewayServerError) as exc:
        raise BackendUnavailable(
            f"The Dask-Gateway server at {address} failed to {what}: {exc}. Its log says "
            "why (for scripts/gateway.sh: .cache/gateway/gateway.log)."
        ) from exc
    except ValueError as exc:  # dask-gateway's form of HTTP 404 and 422
        raise ConfigError(
            f"The Dask-Gateway server at {address} rejected the request to {what}: {exc}. "
            "Check compute.gateway_cluster_options and, for a running cluster, "
            "'insitu cluster status'."
        ) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise BackendUnavailable(
            f"Cannot reach the Dask-Gateway server at {address} "
            f"({exc.__class__.__name__}: {exc}). Check {_SETTINGS_HINT}, and that the server "
            "runs (the test gateway: scripts/gateway.sh status)."
        ) from exc

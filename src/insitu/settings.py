"""The one settings object, read from init kwargs, ``INSITU_*`` variables and one TOML file.

Priority, highest first: keyword arguments, environment variables (nested keys with
``__``, e.g. ``INSITU_CATALOG__URI``), the TOML file, defaults. The TOML file is
``$INSITU_CONFIG`` if set, else ``~/.config/insitu/insitu.toml`` if it exists.

Build it once at an entry point with :meth:`Settings.load` and pass it down.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from insitu.errors import ConfigError

__all__ = [
    "AccessSettings",
    "CatalogSettings",
    "ComputeSettings",
    "HubSettings",
    "IngestSettings",
    "JobQueueSettings",
    "PipelineSettings",
    "Settings",
    "TemplateSettings",
    "default_config_file",
]

_toml_file: ContextVar[Path | None] = ContextVar("_toml_file", default=None)


def default_config_file() -> Path:
    """The TOML file read when none is named: ``$INSITU_CONFIG`` or the user's config dir."""
    env = os.environ.get("INSITU_CONFIG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser()
    return base / "insitu" / "insitu.toml"


def _default_data_dir() -> Path:
    """``$XDG_DATA_HOME/insitu``; for root, which runs the platform for many users, the
    system's place for a service's state, ``/var/lib/insitu`` (root's home is private, and
    users' notebooks read the catalog from there)."""
    if "XDG_DATA_HOME" not in os.environ and os.geteuid() == 0:
        return Path("/var/lib/insitu")
    base = Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser()
    return base / "insitu"


class TemplateSettings(BaseModel):
    """A user-defined path template (see ``insitu.catalog.templates``)."""

    model_config = ConfigDict(extra="forbid")

    directory: str = Field(
        description="Directory part, e.g. '{project}/{model}/{experiment}/{variable}/{version}'."
    )
    filename: str = Field(
        description="File-name part; '[...]' marks an optional piece, e.g. "
        "'{variable}_{model}_{experiment}[_{time_range}].nc'."
    )
    dataset_facets: list[str] | None = Field(
        default=None,
        description="Facets whose values, joined by dots, form the dataset id "
        "(default: every directory facet).",
    )
    version_facet: str | None = Field(
        default="version", description="Facet holding the dataset version, if any."
    )
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Extra names accepted in searches: alias -> facet."
    )


class CatalogSettings(BaseModel):
    """Settings of the catalog subsystem."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalog store; default: a SQLite file "
        "'catalog.db' in the data directory. PostgreSQL: 'postgresql+psycopg://user@host/db'.",
    )
    scan_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Processes that read file headers during a scan.",
    )
    templates: dict[str, TemplateSettings] = Field(
        default_factory=dict, description="User-defined path templates by name."
    )


class JobQueueSettings(BaseModel):
    """Batch-scheduler workers (SLURM, PBS, LSF, SGE) through dask-jobqueue."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(default=None, description="Queue or partition to submit to.")
    account: str | None = Field(default=None, description="Account or project to charge.")
    cores: int = Field(default=1, ge=1, description="Cores per job (one worker per job).")
    memory: str = Field(default="2GB", description="Memory per job, e.g. '4GB'.")
    walltime: str = Field(default="01:00:00", description="Wall-clock limit per job.")
    interface: str | None = Field(
        default=None, description="Network interface for scheduler and workers, e.g. 'lo'."
    )
    python: str | None = Field(
        default=None, description="Python on the compute nodes (default: this interpreter)."
    )
    job_extra: list[str] = Field(
        default_factory=list, description="Extra scheduler directives, e.g. '--qos=short'."
    )
    log_directory: str | None = Field(
        default=None,
        description="Where the jobs' output files go; it must be reachable from the compute "
        "nodes (default: DATA_DIR/logs/jobqueue; the batch system's default would be the "
        "directory the cluster was started from).",
    )
    credentials_directory: str | None = Field(
        default=None,
        description="Where the workers' TLS certificate and key are written for the jobs "
        "(a directory of the owner's, made 0700, files 0600); it must be reachable from the "
        "compute nodes (default: DATA_DIR/tls).",
    )


class ComputeSettings(BaseModel):
    """Settings of the compute subsystem: where Dask workers run and how big they are."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(
        default="local",
        description="Where work runs: local, slurm, pbs, lsf, sge, ssh, gateway, kubernetes.",
    )
    workers: int | None = Field(
        default=None, ge=1, description="Workers to start (default: one per core for local)."
    )
    threads_per_worker: int = Field(
        default=1, ge=1, description="Threads per worker; 1 avoids threaded HDF5 access."
    )
    memory_limit: str = Field(
        default="auto", description="Memory limit per worker, e.g. '4GB' or 'auto'."
    )
    dashboard_address: str = Field(
        default="127.0.0.1:0", description="Where the Dask dashboard listens (port 0: any)."
    )
    jobqueue: JobQueueSettings = Field(
        default_factory=JobQueueSettings, description="SLURM/PBS/LSF/SGE options."
    )
    ssh_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts for the ssh backend: the first runs the scheduler, all run workers.",
    )
    ssh_connect_options: dict[str, Any] = Field(
        default_factory=dict,
        description="asyncssh connect options for the ssh backend, e.g. "
        "{username = 'me', client_keys = ['~/.ssh/id_ed25519']}.",
    )
    ssh_python: str | None = Field(
        default=None, description="Python on the ssh hosts (default: this interpreter's path)."
    )
    gateway_address: str | None = Field(
        default=None,
        description="Dask-Gateway server address for the gateway backend, e.g. "
        "'http://127.0.0.1:18130' or 'https://hub.example.org/services/dask-gateway' "
        "(default: Dask's 'gateway.address' config).",
    )
    gateway_proxy_address: str | None = Field(
        default=None,
        description="Address of the gateway's scheduler proxy, e.g. 'gateway://host:8786', "
        "when it is not the server address (default: Dask's 'gateway.proxy-address').",
    )
    gateway_auth: Literal["basic", "jupyterhub", "kerberos"] | None = Field(
        default=None,
        description="How to log in to the gateway: 'basic' (user name and password), "
        "'jupyterhub' (a JupyterHub API token) or 'kerberos' (default: Dask's "
        "'gateway.auth.type').",
    )
    gateway_username: str | None = Field(
        default=None, description="User name for 'basic' gateway auth (default: the login name)."
    )
    gateway_password: SecretStr | None = Field(
        default=None, description="Password for 'basic' gateway auth (redacted when shown)."
    )
    gateway_api_token: SecretStr | None = Field(
        default=None,
        description="JupyterHub API token for 'jupyterhub' gateway auth (redacted when shown; "
        "default: $JUPYTERHUB_API_TOKEN).",
    )
    gateway_cluster_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Cluster options for the gateway, e.g. {worker_cores = 2, worker_memory = 4}; "
        "they override the ones derived from threads_per_worker and memory_limit. "
        "The server decides which exist.",
    )
    kubernetes_image: str = Field(
        default="ghcr.io/dask/dask:latest",
        description="Scheduler and worker image for the kubernetes backend; it needs insitu "
        "installed (the same version as here) for insitu's operations to run.",
    )
    kubernetes_namespace: str | None = Field(
        default=None,
        description="Namespace of the kubernetes backend's DaskCluster (default: the "
        "current context's).",
    )
    chunk_bytes: int = Field(
        default=64 * 2**20, ge=2**20, description="Bytes read per step when streaming a file."
    )
    in_process_bytes: int = Field(
        default=2**30,
        ge=0,
        description="'insitu compute' computes a time or field mean of at most this many "
        "stored bytes in its own process, on threads, instead of starting a local cluster "
        "for it (which costs seconds); 0: always a cluster. A running cluster "
        "('insitu cluster up') is used whatever the size.",
    )
    direct_reads: bool = Field(
        default=True,
        description="Read NetCDF-4 chunks directly and inflate them with ISA-L (about twice "
        "as fast as netCDF-C on compressed files; netCDF-C where the layout is another); "
        "false: always read through netCDF-C.",
    )


class AccessSettings(BaseModel):
    """Settings of the data service (``insitu serve``): address, limits, jobs."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address the service listens on.")
    port: int = Field(default=8470, ge=0, le=65535, description="Port the service listens on.")
    public_url: str | None = Field(
        default=None,
        description="URL under which users reach the service (for notebook snippets); "
        "default: http://HOST:PORT.",
    )
    max_slice_bytes: int = Field(
        default=256 * 2**20,
        ge=1024,
        description="Largest subset one request may return (uncompressed bytes); bigger "
        "requests get 413 and should be narrowed or submitted as a job.",
    )
    zarr_chunk_bytes: int = Field(
        default=8 * 2**20,
        ge=4096,
        description="Target size of one chunk of the Zarr view (uncompressed bytes).",
    )
    chunk_cache_bytes: int = Field(
        default=256 * 2**20,
        ge=0,
        description="Decoded data each server process keeps for chunk requests that come "
        "again (bytes; 0: none). Size it to the data read most, e.g. a dataset many users "
        "open: repeated chunk GETs then cost no decoding (BENCHMARKS.md, Zarr view).",
    )
    job_workers: int = Field(
        default=2, ge=1, description="Server-side operations that run at the same time."
    )
    anonymous_compute: bool = Field(
        default=False,
        description="Let requests without a token submit jobs on public collections.",
    )
    job_max_inputs: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Datasets one job may combine; a job or search naming more gets 413.",
    )
    jobs_per_worker: int = Field(
        default=8,
        ge=1,
        description="Jobs that may be queued or running per job worker; past that a "
        "submission gets 503.",
    )
    jobs_per_caller_per_worker: int = Field(
        default=4,
        ge=1,
        description="Of those, how many one token (or all anonymous callers together) may "
        "have; past that its submissions get 429.",
    )
    subset_read_factor: int = Field(
        default=16,
        ge=1,
        description="A subset or quicklook may read this many times max_slice_bytes from "
        "the files (they are read in whole chunks); past that it gets 413.",
    )

    signed_url_seconds: int = Field(
        default=600,
        ge=10,
        le=7 * 86400,
        description="How long a signed link lives (quicklook images and downloads that a "
        "browser opens without a token; POST /api/v1/links may ask for less or more).",
    )

    hub_login: bool = Field(
        default=False,
        description="Served as JupyterHub's service 'insitu' ('insitu up' sets it): hub users "
        "log in through the hub's OAuth, pages live under /services/insitu/.",
    )

    @model_validator(mode="after")
    def _caller_share(self) -> AccessSettings:
        if self.jobs_per_caller_per_worker > self.jobs_per_worker:
            raise ValueError(
                f"access.jobs_per_caller_per_worker ({self.jobs_per_caller_per_worker}) "
                f"cannot exceed access.jobs_per_worker ({self.jobs_per_worker}); lower it "
                "or raise jobs_per_worker."
            )
        return self


class HubSettings(BaseModel):
    """The multi-user platform (``insitu up``): JupyterHub, its proxy and services."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        default="127.0.0.1",
        description="Address the hub's proxy listens on (what browsers reach). Beyond "
        "loopback, put TLS in front (ssl_key/ssl_cert) or reach it through an SSH tunnel.",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the hub's proxy.")
    public_url: str | None = Field(
        default=None,
        description="URL users reach the hub at (default: http://HOST:PORT).",
    )
    internal_ports: int = Field(
        default=8081,
        ge=1,
        le=65530,
        description="First of the loopback ports of the platform's own parts: the hub's "
        "API (this one), the proxy's API (+1), the gateway's proxy (+2), its scheduler "
        "proxy (+3) and its API (+4).",
    )
    ssl_key: str | None = Field(default=None, description="TLS key file for a public address.")
    ssl_cert: str | None = Field(default=None, description="TLS certificate file.")
    db_url: str | None = Field(
        default=None,
        description="JupyterHub's database (default: SQLite in DATA_DIR/hub); PostgreSQL: "
        "'postgresql+psycopg://user@host/jupyterhub'.",
    )
    notebook_catalog_uri: str | None = Field(
        default=None,
        description="The catalog URL users' notebooks get. Default: the platform's own "
        "when it is a SQLite file (users can read it, not write it). With PostgreSQL, set "
        "a read-only role's URL: the platform's own credentials are never handed out.",
    )
    isolation: Literal["auto", "users", "single"] = Field(
        default="auto",
        description="'users': each user's server, kernels and Dask workers run as that "
        "user's own unix account (needs root; 'insitu user add' makes the account). "
        "'single': everything runs as the account that started the platform, with NO "
        "isolation between users (a laptop). 'auto': 'users' when run as root.",
    )
    single_as_root: bool = Field(
        default=False,
        description="Allow 'single' isolation when the platform runs as root: then EVERY "
        "user's notebooks and Dask workers run as root. For throw-away test machines only.",
    )
    home_template: str = Field(
        default="/home/{username}",
        description="Home folder of a user's account ('users' isolation); in 'single' "
        "isolation homes live under DATA_DIR/hub/home.",
    )
    authenticator: str = Field(
        default="insitu",
        description="Who checks logins: 'insitu' (accounts made with 'insitu user add', "
        "passwords stored hashed), 'pam' (the machine's accounts), 'ldap', 'oauth' "
        "(generic OpenID Connect), or a JupyterHub authenticator class path.",
    )
    authenticator_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of that authenticator, e.g. {server_address = 'ldap.example.org'} "
        "for 'ldap' or {oauth_callback_url = ..., client_id = ...} for 'oauth'.",
    )
    spawner: str = Field(
        default="local",
        description="Where users' servers run: 'local' (processes on this machine), "
        "'slurm', 'pbs', 'lsf' (batchspawner), 'docker' (DockerSpawner, also podman), "
        "'kubernetes' (KubeSpawner), or a JupyterHub spawner class path.",
    )
    spawner_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of that spawner, e.g. {req_partition = 'debug'} for 'slurm' "
        "or {image = 'localhost/insitu:1'} for 'docker'.",
    )
    projects_dir: str | None = Field(
        default=None,
        description="Where project folders live ('insitu project add'; default DATA_DIR/projects).",
    )
    idle_timeout: int = Field(
        default=3600,
        ge=0,
        description="Seconds after which an idle user server is stopped (0: never).",
    )
    auth_cache_seconds: int = Field(
        default=30,
        ge=0,
        description="How long a user's server trusts what the hub said of a token: a share "
        "or its revocation takes effect within this time (JupyterHub's default is 300).",
    )
    gateway: bool = Field(
        default=True, description="Run a Dask-Gateway server as the hub service 'dask-gateway'."
    )
    cluster_max_cores: float = Field(
        default_factory=lambda: float(os.cpu_count() or 1) + 1,
        gt=0,
        description="Cores one Dask-Gateway cluster may use, its scheduler's one included "
        "(default: one worker core per machine core, plus the scheduler).",
    )
    cluster_max_memory_gb: float = Field(
        default=8.0, gt=0, description="Memory (GiB) one Dask-Gateway cluster may use."
    )
    user_max_cores: float = Field(
        default_factory=lambda: float(os.cpu_count() or 1) * 2,
        ge=0,
        description="Cores one user may hold across ALL their Dask-Gateway clusters, "
        "schedulers included (0: no limit).",
    )
    user_max_memory_gb: float = Field(
        default=16.0, ge=0, description="Memory (GiB) one user may hold across all clusters."
    )
    cluster_idle_timeout: int = Field(
        default=1800, ge=0, description="Seconds after which an idle Dask cluster is stopped."
    )
    proxy_command: str | None = Field(
        default=None,
        description="configurable-http-proxy executable (default: the one the set-up "
        "installed with npm beside this Python, else the PATH's).",
    )
    admin: str = Field(default="admin", description="Name of the first-run admin account.")


class PipelineSettings(BaseModel):
    """One ingest pipeline: where raw files arrive, how to read them, what to make of them."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Inbox folder the instrument writes raw files to.")
    parser: Literal["tdms", "csv"] = Field(default="tdms", description="Raw file format.")
    pattern: str = Field(
        default="*", description="Glob of the inbox files to take (e.g. '*.tdms')."
    )
    delimiter: str = Field(default=",", description="CSV: the cell delimiter.")
    decimal: str = Field(default=".", description="CSV: the decimal separator.")
    skip_rows: int = Field(default=0, ge=0, description="CSV: preamble rows before the names.")
    units_row: bool = Field(default=False, description="CSV: a row of units follows the names.")
    time_column: str | None = Field(
        default=None, description="CSV: the column of sample times in seconds, if any."
    )
    sample_interval: float | None = Field(
        default=None, gt=0, description="CSV without a time column: seconds between rows."
    )
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="Raw channel ('group/channel' for TDMS, the column for CSV) to logical "
        "signal name; calibrations are chosen by signal.",
    )
    unmapped: Literal["raw-only", "error"] = Field(
        default="raw-only",
        description="A channel the map does not name: stored uncalibrated with a warning "
        "('raw-only'), or the file is quarantined (E_UNMAPPED_CHANNEL).",
    )
    calibrations: str | None = Field(
        default=None,
        description="YAML file of calibration definitions (one document each), imported "
        "into the catalog database each run; definitions are also added with 'insitu "
        "ingest calibration add'.",
    )
    configurations: str | None = Field(
        default=None,
        description="JSON file: a list of configuration snapshots, each with valid_from, "
        "valid_to (UTC, half-open) or shots 'A-B', and its tree; imported into the catalog "
        "database each run ('insitu ingest configuration add' adds them too).",
    )
    testbed: str | None = Field(
        default=None,
        description="Use only the configuration snapshots of this testbed (default: all).",
    )
    nan: dict[str, Literal["allow", "reject"]] = Field(
        default_factory=dict,
        description="NaN policy per signal (or raw channel); '*' for the others (default "
        "allow). A signal holding NaN whose policy is 'reject' quarantines the file (E_NAN).",
    )
    shot_property: str = Field(default="shot_id", description="Root property: the shot id.")
    start_property: str = Field(
        default="acquired_at", description="Root property: acquisition start (UTC)."
    )
    operator_property: str = Field(default="operator", description="Root property: operator.")
    stable_seconds: float = Field(
        default=30.0,
        ge=0,
        description="A file without a manifest is taken once unchanged (size and mtime) "
        "for this long.",
    )
    store: str | None = Field(
        default=None,
        description="Folder of the raw store and quarantine (default DATA_DIR/ingest/<pipeline>).",
    )
    output: str | None = Field(
        default=None, description="Folder of the products (default <store>/products)."
    )
    product_format: Literal["zarr", "netcdf4"] = Field(
        default="zarr",
        description="Products as Zarr stores (format 3, <shot>_v<k>.zarr) or NetCDF-4 files "
        "(<shot>_v<k>.nc); both carry the same attributes and open alike.",
    )
    collection: str | None = Field(
        default=None,
        description="Catalog collection of the products (default: the pipeline's name).",
    )
    attributes: dict[str, str] = Field(
        default_factory=dict,
        description="Global attributes every product carries (title, institution, source, ...).",
    )


class IngestSettings(BaseModel):
    """Ingest settings: the pipelines, by name."""

    model_config = ConfigDict(extra="forbid")

    pipelines: dict[str, PipelineSettings] = Field(
        default_factory=dict, description="Pipelines ([ingest.pipelines.NAME] tables)."
    )
    pipelines_dir: Path | None = Field(
        default=None,
        description="A folder of TOML files (*.toml), each holding [ingest.pipelines.NAME] "
        "tables: pipelines one file each, added to those of the settings file (default: "
        "DATA_DIR/pipelines; the lab demo puts its own there). A name defined twice is an "
        "error.",
    )


class Settings(BaseSettings):
    """All of insitu's settings."""

    model_config = SettingsConfigDict(
        env_prefix="INSITU_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where insitu keeps its own state (catalog database, caches).",
    )
    log_level: str = Field(default="WARNING", description="Logging level of the entry points.")
    catalog: CatalogSettings = Field(
        default_factory=CatalogSettings, description="Catalog settings."
    )
    compute: ComputeSettings = Field(
        default_factory=ComputeSettings, description="Compute settings."
    )
    access: AccessSettings = Field(
        default_factory=AccessSettings, description="Data service settings."
    )
    hub: HubSettings = Field(default_factory=HubSettings, description="Multi-user platform.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="Ingest pipelines.")
    workflows_dir: Path | None = Field(
        default=None,
        description="Folder the web pages find workflows in (each a folder with workflow.yaml "
        "and its runs/, up to 3 levels down); default DATA_DIR/workflows.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_file.get()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Settings:
        """Build the settings; raise :class:`ConfigError` naming the bad key and its source."""
        path = Path(config_file).expanduser() if config_file else default_config_file()
        if config_file and not path.is_file():
            raise ConfigError(f"Config file {path} does not exist. Create it or drop --config.")
        token = _toml_file.set(path if path.is_file() else None)
        try:
            return _with_pipeline_files(cls(**overrides))
        except ValidationError as exc:
            where = (
                f"{path} or INSITU_* environment variables"
                if path.is_file()
                else ("INSITU_* environment variables or arguments")
            )
            lines = [
                f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in exc.errors()
            ]
            raise ConfigError(
                "Invalid settings in "
                + where
                + ":\n"
                + "\n".join(lines)
                + "\nFix these keys (nested env vars use '__', e.g. INSITU_CATALOG__URI)."
            ) from exc
        except Exception as exc:  # a TOML syntax error surfaces here
            if path.is_file():
                raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
            raise
        finally:
            _toml_file.reset(token)

    @property
    def catalog_uri(self) -> str:
        """The catalog store URL, with the SQLite default resolved."""
        if self.catalog.uri:
            return self.catalog.uri
        return f"sqlite:///{self.data_dir / 'catalog.db'}"

    @property
    def service_url(self) -> str:
        """The URL users reach the data service at."""
        if self.access.public_url:
            return self.access.public_url.rstrip("/")
        return f"http://{self.access.host}:{self.access.port}"

    @property
    def hub_url(self) -> str:
        """The URL users reach the hub at."""
        if self.hub.public_url:
            return self.hub.public_url.rstrip("/")
        scheme = "https" if self.hub.ssl_cert else "http"
        return f"{scheme}://{self.hub.host}:{self.hub.port}"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with passwords in URLs replaced by '***'."""
        data = self.model_dump(mode="json")
        uri = data["catalog"].get("uri")
        if uri and "@" in uri and ":" in uri.split("@", 1)[0].split("//", 1)[-1]:
            scheme, rest = uri.split("//", 1)
            creds, host = rest.split("@", 1)
            data["catalog"]["uri"] = f"{scheme}//{creds.split(':', 1)[0]}:***@{host}"
        return data


def _with_pipeline_files(settings: Settings) -> Settings:
    """``settings`` with the pipelines of the files in ``ingest.pipelines_dir`` added."""
    folder = settings.ingest.pipelines_dir or settings.data_dir / "pipelines"
    if not folder.is_dir():
        return settings
    pipelines = dict(settings.ingest.pipelines)
    where = dict.fromkeys(pipelines, "the settings")
    for path in sorted(folder.glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"Cannot read pipeline file {path}: {exc}. Fix or remove it."
            ) from exc
        ingest = doc.pop("ingest", {})
        tables = ingest.pop("pipelines", None) if isinstance(ingest, dict) else None
        if doc or ingest or not isinstance(tables, dict):
            raise ConfigError(
                f"Pipeline file {path} must hold [ingest.pipelines.NAME] tables and nothing "
                "else (other settings belong in the settings file)."
            )
        for name, table in tables.items():
            if name in pipelines:
                raise ConfigError(
                    f"Pipeline {name!r} is defined in {path} and in {where[name]}: "
                    "rename or remove one of them."
                )
            try:
                pipelines[name] = PipelineSettings.model_validate(table)
            except ValidationError as exc:
                bad = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                raise ConfigError(f"Pipeline {name!r} in {path}: {bad}. Fix these keys.") from exc
            where[name] = str(path)
    merged = settings.ingest.model_copy(update={"pipelines": pipelines})
    return settings.model_copy(update={"ingest": merged})

"""``insitu cluster ...`` and ``insitu compute ...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from insitu.cli._catalog import _constraints
from insitu.errors import BackendUnavailable, InvalidRequest
from insitu.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

    from insitu.catalog import Catalog

__all__ = ["cluster_group", "compute_group"]


@click.group("cluster")
def cluster_group() -> None:
    """Start, inspect, scale and stop the Dask cluster that compute runs on."""


@cluster_group.command("up")
@click.option(
    "--backend",
    default=None,
    help="local, slurm, pbs, lsf, sge, ssh, gateway or kubernetes (default: settings).",
)
@click.option("--workers", type=int, default=None, help="Workers to start.")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for the cluster.",
)
@click.pass_obj
def up(settings: Settings, backend: str | None, workers: int | None, timeout: float) -> None:
    """Start a cluster in the background; compute commands then use it."""
    from insitu.compute import get_backend, running_cluster, state_file

    state = running_cluster(settings)
    if state is not None:
        click.echo(
            f"A {state.backend} cluster is already running (pid {state.pid}); "
            f"dashboard {state.dashboard_link}."
        )
        return
    name = backend or settings.compute.backend
    get_backend(name)  # fail now if its package is missing
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "cluster.log"
    cmd = [sys.executable, "-m", "insitu.compute.daemon", "--backend", name]
    if workers:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ, INSITU_DATA_DIR=str(settings.data_dir))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running_cluster(settings)
        if state is not None and state.pid == proc.pid:
            click.echo(f"Started a {name} cluster (pid {state.pid}).")
            click.echo(f"Scheduler: {state.scheduler_address}")
            click.echo(f"Dashboard: {state.dashboard_link}")
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.terminate()
    tail = log_path.read_text(errors="replace")[-2000:]
    state_file(settings).unlink(missing_ok=True)
    raise BackendUnavailable(
        f"The {name} cluster did not come up; its log ({log_path}) ends with:\n{tail}"
    )


def _client(settings: Settings):  # type: ignore[no-untyped-def]
    from insitu.compute import connect, running_cluster

    state = running_cluster(settings)
    if state is None:
        raise BackendUnavailable("No cluster is running. Start one with 'insitu cluster up'.")
    return state, connect(settings, state)


@cluster_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Show the running cluster: backend, workers, threads, memory, dashboard."""
    state, client = _client(settings)
    with client:
        info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    data = {
        "backend": state.backend,
        "pid": state.pid,
        "scheduler": state.scheduler_address,
        "dashboard": state.dashboard_link,
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "memory_bytes": sum(w.get("memory_limit", 0) for w in workers.values()),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>12}: {value}")


@cluster_group.command("scale")
@click.argument("workers", type=click.IntRange(min=0))
@click.option("--wait/--no-wait", default=True, help="Wait until the workers are there.")
@click.option("--timeout", type=float, default=120.0, show_default=True)
@click.pass_obj
def scale(settings: Settings, workers: int, wait: bool, timeout: float) -> None:
    """Ask the running cluster for WORKERS workers."""
    from insitu.compute import scale_file

    _state, client = _client(settings)
    path = scale_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"workers": workers}))
    os.replace(tmp, path)
    with client:
        deadline = time.monotonic() + timeout
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        while wait and n != workers and time.monotonic() < deadline:
            time.sleep(0.3)
            n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    click.echo(f"{n} workers (asked for {workers}).")


@cluster_group.command("down")
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the running cluster and all its workers."""
    from insitu.compute import running_cluster, state_file

    state = running_cluster(settings)
    if state is None:
        click.echo("No cluster is running.")
        return
    os.kill(state.pid, 15)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and state_file(settings).exists():
        time.sleep(0.2)
    click.echo(f"Stopped the {state.backend} cluster.")


class _ComputeGroup(click.Group):
    """``insitu compute OPERATION ...`` is ``insitu compute run OPERATION ...``."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


@click.group("compute", cls=_ComputeGroup)
def compute_group() -> None:
    """Run analysis operations on catalog datasets.

    \b
    insitu compute list
    insitu compute field_mean --search model=MIROC6 variable_id=ta --out result.nc
    insitu compute climatology --dataset ID -p period=season --out clim.nc
    """


@compute_group.command("list")
def list_ops() -> None:
    """List the operations and their parameters."""
    from insitu.compute import OPERATIONS

    for op in OPERATIONS.values():
        params = ", ".join(f"{n}={f.default!r}" for n, f in op.params.model_fields.items())
        click.echo(f"{op.name:<12} {op.summary}" + (f"  [{params}]" if params else ""))


def _params(items: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"Parameter {item!r} is not NAME=VALUE, e.g. freq=YS or q=0.9.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value.split(",") if "," in value else value
    return out


@compute_group.command("run")
@click.argument("operation")
@click.argument("more_terms", nargs=-1, metavar="[FACET=VALUE]...")
@click.option(
    "--search",
    "terms",
    multiple=True,
    metavar="FACET=VALUE",
    help="Datasets to use, as search terms (repeatable; more may follow).",
)
@click.option("--dataset", "dataset_ids", multiple=True, help="A dataset id (repeatable).")
@click.option("--variable", default=None, help="Variable (default: the dataset's own).")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="An operation parameter, e.g. -p period=season (repeatable).",
)
@click.option(
    "--time",
    "time_range",
    default=None,
    metavar="START/END",
    help="Only this time range, e.g. 1980/2010.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the NetCDF result (default: the results cache).",
)
@click.option("--backend", default=None, help="Cluster backend for this run.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Workers for this run (threads, for a small request computed in this process).",
)
@click.option("--no-cache", is_flag=True, help="Compute again even if the result is cached.")
@click.pass_obj
def run_cmd(
    settings: Settings,
    operation: str,
    more_terms: tuple[str, ...],
    terms: tuple[str, ...],
    dataset_ids: tuple[str, ...],
    variable: str | None,
    params: tuple[str, ...],
    time_range: str | None,
    out: Path | None,
    backend: str | None,
    workers: int | None,
    no_cache: bool,
) -> None:
    """Run OPERATION on the datasets a search (or --dataset) names.

    A cached result is delivered at once. Otherwise it computes on the cluster of 'insitu
    cluster up' when one runs; a small time or field mean (up to compute.in_process_bytes
    of files) in this process, on threads; anything else on a cluster started for it.
    """
    from insitu.catalog import Catalog
    from insitu.compute import cached_result, get_operation, run

    get_operation(operation)
    constraints: dict[str, list[str]] = {}
    for term in (*terms, *more_terms):
        for k, v in _constraints(tuple(term.split())).items():
            constraints.setdefault(k, []).extend(v)
    time_slice = None
    if time_range:
        start, _, end = time_range.partition("/")
        time_slice = slice(start or None, end or None)
    with Catalog(settings) as cat:
        ids = list(dataset_ids)
        if constraints:
            ids += cat.search(limit=0, **constraints).all_ids  # type: ignore[arg-type]
        if not ids:
            raise InvalidRequest("No datasets: give --search FACET=VALUE or --dataset ID.")
        click.echo(f"{operation} on {len(ids)} dataset(s)...", err=True)
        given = _params(params)
        # A cached result needs no cluster: starting one would cost seconds.
        result = (
            None
            if no_cache
            else cached_result(
                cat, operation, ids, variable=variable, params=given, time=time_slice, out=out
            )
        )
        if result is None:
            with _workers(settings, backend, workers, cat, operation, ids, time_slice) as client:
                result = run(
                    cat,
                    operation,
                    ids,
                    variable=variable,
                    params=given,
                    time=time_slice,
                    out=out,
                    client=client,
                    cache=not no_cache,
                    progress=sys.stderr.isatty(),
                )
    how = "from the cache" if result.cached else f"in {result.seconds:.1f} s"
    click.echo(f"Wrote {result.path} ({how}).")


@contextmanager
def _workers(
    settings: Settings,
    backend: str | None,
    workers: int | None,
    cat: Catalog,
    operation: str,
    ids: list[str],
    time: slice | None,
) -> Iterator[Client | None]:
    """Where a request computes: where :func:`insitu.compute.cluster` puts it (the running
    cluster, or a new one stopped at the end), except that a small request computes in this
    process, on Dask's threads, rather than on a new local cluster
    (:func:`insitu.compute.in_process`)."""
    import dask.config

    from insitu.compute import cluster, in_process, running_cluster

    new_local = (backend or settings.compute.backend) == "local" and (
        backend is not None or running_cluster(settings) is None
    )
    if new_local and in_process(cat, operation, ids, time=time):
        threads = workers or settings.compute.workers or os.cpu_count() or 1
        click.echo(f"Computing in this process on {threads} threads: a small request.", err=True)
        with dask.config.set(scheduler="threads", num_workers=threads):
            yield None
        return
    with cluster(settings, backend=backend, workers=workers) as client:
        click.echo(f"Dask dashboard: {client.dashboard_link}", err=True)
        yield client

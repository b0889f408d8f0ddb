"""The long-running cluster of ``insitu cluster up``: a process that owns the cluster.

It starts the configured backend, records the scheduler and dashboard addresses in
``<data_dir>/cluster.json``, applies scale requests written to ``cluster-scale.json``,
and stops the cluster (and removes the record) on SIGTERM or SIGINT. A cluster with
credentials of its own (TLS) has its client credentials written to
``<data_dir>/cluster-tls/`` (0700, files 0600) for its owner's later clients, and removed
when it stops.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from insitu.compute.backend import get_backend, write_client_credentials
from insitu.compute.session import (
    credentials_directory,
    scale_file,
    spec_from_settings,
    state_file,
)
from insitu.errors import InsituError
from insitu.settings import Settings

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _remove_credentials(directory: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (directory / name).unlink(missing_ok=True)


def serve(settings: Settings, backend: str, workers: int | None) -> None:
    """Run a cluster until told to stop."""
    impl = get_backend(backend)
    handle = impl.start(spec_from_settings(settings, impl, workers))
    stop = False

    def _stop(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    record = state_file(settings)
    tls = credentials_directory(settings)
    try:
        paths = (
            write_client_credentials(handle.security, tls) if handle.security is not None else None
        )
    except BaseException:
        _remove_credentials(tls)
        impl.stop(handle)
        raise
    _write_json(
        record,
        {
            "pid": os.getpid(),
            "backend": backend,
            "scheduler_address": handle.scheduler_address,
            "dashboard_link": handle.dashboard_link,
            "tls": paths,
        },
    )
    requests = scale_file(settings)
    try:
        while not stop:
            if requests.exists():
                try:
                    n = int(json.loads(requests.read_text())["workers"])
                    impl.scale(handle, n)
                    log.info("scaled to %d workers", n)
                except (ValueError, KeyError, OSError, InsituError) as exc:
                    # A cluster that cannot scale (ssh) says why; it keeps running.
                    log.warning("ignored scale request: %s", exc)
                requests.unlink(missing_ok=True)
            time.sleep(0.2)
    finally:
        record.unlink(missing_ok=True)
        if paths is not None:
            _remove_credentials(tls)
        impl.stop(handle)


def main() -> None:
    """``python -m insitu.compute.daemon --backend NAME [--workers N]``."""
    from insitu.log import configure_logging

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    settings = Settings.load(args.config)
    configure_logging(settings.log_level)
    serve(settings, args.backend or settings.compute.backend, args.workers)


if __name__ == "__main__":
    main()

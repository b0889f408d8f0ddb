r"""Where the seconds of a cold ``insitu compute run`` go: the command, run in a new process
with a timestamp (seconds since that process started) around each of its phases.

    python bench/profile_cold_compute.py compute run time_mean --dataset ID --no-cache \
        --backend local --workers 2 --out /tmp/tm.nc

The arguments are the ``insitu`` command's; its settings come from the environment as
usual (``INSITU_CATALOG__URI``, ``INSITU_DATA_DIR``, ``INSITU_COMPUTE__IN_PROCESS_BYTES``).
Phases: imports, the catalog look-up up to the start of a cluster (or of the computation in
this process), the cluster's start, the workers' preparation (``_prepare_workers``), the lazy
result (opening the dataset: xarray's first import), the computation, the write, the
cluster's stop and the exit (the exit handlers and the interpreter's clean-up: the command runs
in a child process, timed from its start to its end). One line on stderr at the end; the
workers (spawned) run this script again as their main module, which costs them its imports.
"""

from __future__ import annotations

import atexit
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

_START = psutil.Process().create_time()  # in the child: the command's process
_MARKS: dict[str, float] = {}


def _mark(what: str) -> None:
    _MARKS.setdefault(what, time.time() - _START)


def _timed(owner: Any, name: str) -> None:
    """Mark the first call of ``owner.name`` and its return."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _mark(f">{name}")
        try:
            return original(*args, **kwargs)
        finally:
            _mark(f"<{name}")

    setattr(owner, name, wrapper)


def _report() -> None:
    print("marks " + json.dumps(_MARKS), file=sys.stderr, flush=True)


def _table(m: dict[str, float], end: float) -> str:
    def span(a: str, b: str) -> str:
        return f"{m[b] - m[a]:.2f}" if a in m and b in m else "-"

    start = m.get(">_make", m.get(">_request", end))
    return (
        f"total {end:.2f} s | imports {m['imported']:.2f} | look-up {start - m['imported']:.2f}"
        f" | cluster start {span('>_make', '<_make')} | prepare workers "
        f"{span('>_prepare_workers', '<_prepare_workers')} | lazy result "
        f"{span('>_lazy_result', '<_lazy_result')} | compute {span('>_compute', '<_compute')} | "
        f"write {span('>_write_atomic', '<_deliver')} | stop {span('>stop', '<stop')} | "
        f"exit {end - m['done']:.2f}"
    )


def _child() -> None:
    from insitu.cli.main import main as insitu_main
    from insitu.compute import _local, session

    run_module = sys.modules["insitu.compute.run"]  # the package's ``run`` is the function
    _mark("imported")
    _timed(_local.LocalBackend, "_make")
    _timed(_local.LocalBackend, "stop")
    _timed(session, "_prepare_workers")
    for name in ("_request", "_lazy_result", "_compute", "_write_atomic", "_deliver"):
        _timed(run_module, name)
    atexit.register(_report)  # the parent times the rest of the exit
    try:
        insitu_main()
    finally:
        _mark("done")


def main() -> None:
    """Run the command in a child process (this script again) and time its whole life."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", *sys.argv[1:]], stderr=subprocess.PIPE, text=True
    )
    created = psutil.Process(child.pid).create_time()
    _, err = child.communicate()
    end = time.time() - created
    lines = err.splitlines()
    marks = [json.loads(line[6:]) for line in lines if line.startswith("marks ")]
    sys.stderr.write("".join(f"{line}\n" for line in lines if not line.startswith("marks ")))
    if child.returncode or not marks:
        raise SystemExit(f"the command failed (exit status {child.returncode})")
    print(_table(marks[0], end), file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] in ([], ["-h"], ["--help"]):
        print(__doc__)
    elif sys.argv[1:2] == ["--child"]:
        del sys.argv[1]
        _child()
    else:
        main()

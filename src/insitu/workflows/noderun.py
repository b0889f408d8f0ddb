"""One node run by the run contract, the function every backend calls (the local process
pool and Dask alike): write ``inputs.json``, run ``python task.py --inputs inputs.json
--outdir out/`` in the node's work dir with its output in ``log``, read ``out/outputs.json``.
Kept small: Dask workers and pool processes import only this module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NodeJob", "run_node"]


@dataclass(frozen=True)
class NodeJob:
    """What a backend needs to run one node (or one batch of a mapped node's branches)."""

    node: str
    task: str
    workdirs: tuple[str, ...]
    inputs: tuple[dict[str, Any], ...]
    flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    python: str = ""  # '' = the interpreter of the process running the job (a Dask worker's)


def _last_lines(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def run_node(job: NodeJob) -> dict[str, Any]:
    """Run ``task.py`` once per work dir of ``job`` (the run contract); the first failure
    ends the job. Returns exit code, times, log path and the outputs.json of each run."""
    started = time.time()
    results: list[dict[str, Any]] = []
    code = 0
    log = ""
    for workdir, inputs in zip(job.workdirs, job.inputs, strict=True):
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        (work / "inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
        log = str(work / "log")
        with open(log, "wb") as fh:
            code = subprocess.run(
                [
                    job.python or sys.executable,
                    job.task,
                    "--inputs",
                    str(work / "inputs.json"),
                    "--outdir",
                    str(work / "out"),
                    *job.flags,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=work,
                env={**os.environ, **job.env},
                check=False,
            ).returncode
        if code != 0:
            return {
                "exit_code": code,
                "started": started,
                "finished": time.time(),
                "log": log,
                "error": _last_lines(Path(log)),
                "outputs": results,
            }
        outputs = json.loads((work / "out" / "outputs.json").read_text(encoding="utf-8"))
        checks = work / "out" / "checks.json"
        warn = json.loads(checks.read_text()) if checks.is_file() else {}
        results.append({"outputs": outputs, "checks": warn, "outdir": str(work / "out")})
    return {
        "exit_code": 0,
        "started": started,
        "finished": time.time(),
        "log": log,
        "error": None,
        "outputs": results,
    }

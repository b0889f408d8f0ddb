"""Dask's own housekeeping on a local cluster: insitu's quieter worker settings against Dask's
defaults, idle and during time means.

    python bench/bench_idle_cluster.py [--gb 1] [--rounds 2] [--runs 5] [--idle 5]

Two modes of a 2-worker local cluster (one thread per worker, worker processes, loopback),
both with the malloc settings insitu gives its workers (``WORKER_ENV``), so that only Dask's
housekeeping differs:

* ``dask_defaults``: ``distributed.LocalCluster`` with Dask's configuration (each worker
  samples its task thread every 10 ms for the dashboard's profile, ticks its event loop
  every 20 ms, polls its resources every 0.5 s and its memory every 0.1 s; so do the
  scheduler and nannies, which share the same cores);
* ``insitu``: the cluster ``insitu.compute.cluster(backend="local")`` starts, with
  ``WORKER_CONFIG`` (no profile, 1 s ticks, 2 s resource polls, 0.5 s memory checks).

Each round runs every mode in a new process, the order rotating: start the cluster, wait
``--settle`` seconds, read the CPU seconds of the whole process tree (client, scheduler,
nannies, workers) over ``--idle`` seconds of doing nothing, then one untimed time mean and
``--runs`` timed ones (``insitu.compute.run(cat, "time_mean", [id], cache=False)``) over the
compressed variant of the compute benchmark's archive (``compute_archive.py``, generated on
first use), each with Dask's task stream: how far apart the two workers' last tasks end.
Prints a table on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import compute_archive as archive  # noqa: E402
from _common import DATA_DIR, code_info, emit, load_avg, say, tree_cpu  # noqa: E402

MODES = ("dask_defaults", "insitu")


def _defaults_cluster() -> Any:
    from distributed import LocalCluster, Nanny

    from insitu.compute.backend import WORKER_ENV

    class MallocNanny(Nanny):  # WORKER_ENV as insitu's nanny sets it, nothing else
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pre_spawn_env.update(WORKER_ENV)

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # as insitu's (compute.dashboard_address)
        worker_class=MallocNanny,
    )


def child(mode: str, root: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from contextlib import ExitStack

    from distributed import Client, get_task_stream

    from insitu.catalog import Catalog
    from insitu.compute import cluster, run
    from insitu.settings import Settings

    settings = Settings.load(
        catalog={"uri": f"sqlite:///{work / 'catalog.db'}"}, data_dir=str(work / "state")
    )
    cat = Catalog(settings)
    if not any(c.name == "bench" for c in cat.collections()):
        cat.add_collection("bench", root)
        cat.scan("bench", workers=2)
    (hit,) = cat.search(limit=2).results
    with ExitStack() as stack:
        t = time.perf_counter()
        if mode == "insitu":
            client = stack.enter_context(cluster(settings, backend="local", workers=2))
        else:
            client = stack.enter_context(Client(stack.enter_context(_defaults_cluster())))
        start_s = time.perf_counter() - t
        time.sleep(args.settle)
        c, t = tree_cpu(), time.perf_counter()
        time.sleep(args.idle)
        idle_cores = (tree_cpu() - c) / (time.perf_counter() - t)
        out = work / f"time_mean-{mode}.nc"
        run(cat, "time_mean", [hit.dataset_id], client=client, cache=False, out=str(out))
        runs, cpus, apart = [], [], []
        for _ in range(args.runs):
            out.unlink(missing_ok=True)
            c, t = tree_cpu(), time.perf_counter()
            with get_task_stream(client) as stream:
                run(cat, "time_mean", [hit.dataset_id], client=client, cache=False, out=str(out))
            runs.append(time.perf_counter() - t)
            cpus.append(tree_cpu() - c)
            last: dict[str, float] = {}
            for task in stream.data:
                end = max(s["stop"] for s in task["startstops"])
                last[task["worker"]] = max(last.get(task["worker"], 0.0), end)
            apart.append(max(last.values()) - min(last.values()) if len(last) > 1 else 0.0)
    cat.close()
    return {
        "cluster_start_s": start_s,
        "idle_cores": idle_cores,
        "runs_s": runs,
        "cpu_s": cpus,
        "last_tasks_apart_s": apart,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    archive.add_args(ap)
    ap.set_defaults(gb=1.0)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of both modes (2)")
    ap.add_argument("--runs", type=int, default=5, help="timed time means a round (5)")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle measured (5)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the start (3)")
    ap.add_argument("--work", type=Path, default=DATA_DIR / "idle-cluster")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(args.child, args.root, args.work.resolve(), args)))
        return 0

    man = archive.ensure(archive.params_from(args), args.data_dir, args.gen_workers, log=say)
    root = man["variants"]["compressed"]["root"]
    res: dict[str, Any] = {
        "gb": args.gb,
        "files": man["variants"]["compressed"]["n_files"],
        "load_avg_before": load_avg(),
        "code": code_info(),
        "rounds": [],
    }
    passed = [f"--{k}={getattr(args, k)}" for k in ("runs", "idle", "settle", "work")]
    for r in range(args.rounds):
        order = MODES[r % 2 :] + MODES[: r % 2]
        for mode in order:
            cmd = [sys.executable, __file__, "--child", mode, "--root", root, *passed]
            load = load_avg()
            got = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
            row = {"round": r, "mode": mode, "load_avg": load}
            row |= json.loads(got.stdout.splitlines()[-1])
            say(
                f"  round {r} {mode:14} idle {row['idle_cores']:.3f} cores, time mean "
                f"{min(row['runs_s']):.2f}-{max(row['runs_s']):.2f} s, last tasks "
                f"{min(row['last_tasks_apart_s']):.2f}-{max(row['last_tasks_apart_s']):.2f} s apart"
            )
            res["rounds"].append(row)
    res["summary"] = {
        mode: {
            "idle_cores": [x["idle_cores"] for x in res["rounds"] if x["mode"] == mode],
            "median_run_s": statistics.median(
                t for x in res["rounds"] if x["mode"] == mode for t in x["runs_s"]
            ),
            "median_cpu_s": statistics.median(
                t for x in res["rounds"] if x["mode"] == mode for t in x["cpu_s"]
            ),
        }
        for mode in MODES
    }
    res["load_avg_after"] = load_avg()
    say(json.dumps(res["summary"], indent=1))
    emit("idle_cluster", res)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

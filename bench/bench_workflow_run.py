"""Workflows benchmarks B4-B6 (issue 16): running generated workflows.

Workflows come from synthetic notebooks through ``workflow_from_notebook`` (real components,
real task.py files) and run with ``run_workflow``:

* B4: executor overhead per node on trivial tasks (``x{i} = x{i-1} + 1``): a 100-node chain
  (wall / 100 = what one node costs, the task's own interpreter start included) and a
  100-wide fan-out (100 nodes reading one value), with the local executor (a process pool of
  ``--workers``) and the Dask executor (a LocalCluster of as many workers); the bare start
  of ``python task.py`` is measured beside for reference. CPU seconds of this process and
  all its children beside wall time (the machine is shared).
* B5: data passing: a node writes an array (npy) or a DataFrame (parquet) of 100 MB (and
  1 GB with ``--large``), the next reads it and sums it; throughput is the artifact's size
  over the time both nodes took beyond two trivial nodes.
* B6: a warm-cache rerun of an unchanged 50-node chain (every node a cache hit).

    .venv/bin/python bench/bench_workflow_run.py [--workers 2] [--large]

Prints progress on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_avg, median, say
from insitu.workflows import (
    DaskBackend,
    LocalBackend,
    Workflow,
    notebook_from_sources,
    run_workflow,
    workflow_from_notebook,
)

TARGET_OVERHEAD_MS = 150.0
TARGET_WARM_S = 1.0


def cpu_all() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall, CPU of this process and its reaped children, result)."""
    c0, t0 = cpu_all(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, cpu_all() - c0, out


def build(work: Path, name: str, sources: list[str]) -> Workflow:
    nbformat.write(notebook_from_sources(sources), work / f"{name}.ipynb")
    wf, _ = workflow_from_notebook(work / f"{name}.ipynb", work / name, python=sys.executable)
    return wf


def chain(n: int) -> list[str]:
    return ["x0 = 0", *(f"x{i} = x{i - 1} + 1" for i in range(1, n))]


def fanout(n: int) -> list[str]:
    return ["x = 1", *(f"y{i} = x + {i}" for i in range(n))]


def task_start(wf: Workflow, work: Path, repeat: int = 10) -> float:
    """Median wall seconds of ``python task.py`` of the chain's second node, alone."""
    node = sorted(wf.nodes)[1]
    task = wf.component_dir(node) / "task.py"
    inputs = work / "start-inputs.json"
    port = next(iter(wf.nodes[node].ports("inputs")))
    inputs.write_text(f'{{"{port}": {{"kind": "json", "value": 1}}}}')
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        cmd = [sys.executable, str(task), "--inputs", str(inputs), "--outdir", str(work / "o")]
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return median(walls)


def run(wf: Workflow, backend: Any, **kw: Any) -> dict[str, float]:
    wall, cpu, record = timed(lambda: run_workflow(wf, backend, use_cache=False, **kw))
    n = len(record.nodes)
    return {
        "nodes": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "wall_ms_per_node": round(wall / n * 1000, 1),
        "cpu_ms_per_node": round(cpu / n * 1000, 1),
    }


def b4(work: Path, workers: int, client: Any) -> dict[str, Any]:
    ch, fo = build(work, "chain", chain(100)), build(work, "fanout", fanout(100))
    start = task_start(ch, work)
    say(f"B4 bare 'python task.py' (trivial): {start * 1000:.0f} ms")
    out: dict[str, Any] = {"bare_task_start_ms": round(start * 1000, 1)}
    for label, wf in (("chain100", ch), ("fanout100", fo)):
        for ex in ("local", "dask"):
            backend = LocalBackend(workers) if ex == "local" else DaskBackend(client)
            r = run(wf, backend)
            say(
                f"B4 {label} {ex}: wall {r['wall_s']} s ({r['wall_ms_per_node']} ms/node), "
                f"CPU {r['cpu_s']} s"
            )
            out[f"{label}_{ex}"] = r
    return out


def b5(work: Path, large: bool) -> dict[str, Any]:
    trivial = build(work, "trivial2", ["a = 1", "b = a + 1"])
    base = median(
        [
            timed(lambda: run_workflow(trivial, LocalBackend(2), use_cache=False))[0]
            for _ in range(3)
        ]
    )
    out: dict[str, Any] = {"two_trivial_nodes_s": round(base, 3)}
    sizes = [100] + ([1000] if large else [])
    for mb in sizes:
        n = mb * 1_000_000 // 8
        cases = {
            "npy": [
                "import numpy as np",
                f"a = np.random.default_rng(0).random({n})",
                "s = float(a.sum())",
            ],
            "parquet": [  # random values: parquet's compression cannot shrink them
                "import numpy as np\nimport pandas as pd",
                f"a = pd.DataFrame({{'v': np.random.default_rng(0).random({n})}})",
                "s = float(a['v'].sum())",
            ],
        }
        for fmt, sources in cases.items():
            wf = build(work, f"{fmt}{mb}", sources)
            wall, cpu, record = timed(
                lambda w=wf: run_workflow(w, LocalBackend(2), use_cache=False)
            )
            size = sum(o.get("bytes", 0) for r in record.nodes.values() for o in r.outputs.values())
            mbps = size / 1e6 / max(wall - base, 1e-3)
            producer = next(r for r in record.nodes.values() if "a" in r.outputs)
            consumer = next(r for r in record.nodes.values() if "a" in r.inputs)
            say(
                f"B5 {fmt} {mb} MB: wall {wall:.2f} s, CPU {cpu:.2f} s, {mbps:.0f} MB/s "
                f"(writer node {producer.seconds:.2f} s, reader node {consumer.seconds:.2f} s)"
            )
            out[f"{fmt}_{mb}MB"] = {
                "bytes": size,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "MB_per_s": round(mbps, 1),
                "writer_node_s": round(producer.seconds or 0, 3),
                "reader_node_s": round(consumer.seconds or 0, 3),
            }
    return out


def b6(work: Path) -> dict[str, Any]:
    wf = build(work, "chain50", chain(50))
    run_workflow(wf, LocalBackend(2))
    walls, cpus = [], []
    for _ in range(5):
        wall, cpu, record = timed(lambda: run_workflow(wf, LocalBackend(2)))
        assert len(record.cache_hits) == len(wf.nodes)
        walls.append(wall)
        cpus.append(cpu)
    say(f"B6 warm rerun of 50 nodes: wall {median(walls):.3f} s, CPU {median(cpus):.3f} s")
    return {"nodes": 50, "wall_s": round(median(walls), 3), "cpu_s": round(median(cpus), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--large", action="store_true", help="also 1 GB artifacts (B5)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    start_load = load_avg()
    with tempfile.TemporaryDirectory(prefix="bench-wf-") as tmp:
        work = Path(tmp)
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            results: dict[str, Any] = {"B4_overhead": b4(work, args.workers, client)}
        results["B6_warm_cache"] = b6(work)
        results["B5_data_passing"] = b5(work, args.large)
    results.update(
        load_avg_start=start_load,
        load_avg_end=load_avg(),
        workers=args.workers,
        targets={"ms_per_node": TARGET_OVERHEAD_MS, "warm_rerun_50_s": TARGET_WARM_S},
    )
    emit("workflow_run", results)


if __name__ == "__main__":
    main()

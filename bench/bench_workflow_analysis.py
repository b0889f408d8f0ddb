"""Workflows benchmarks B1-B3 (issue 16): analysing notebooks and making components.

Synthetic notebooks as the specification's reference figures used: about 10 lines per
cell, each cell with a function (its default read from an earlier cell), 6 comprehensions
and reads of the two cells before it.

Times are CPU seconds of the benchmark process (the machine is shared; wall time beside).

* B1: full analysis + DAG (``resolve_cells``: every cell analysed, the notebook resolved)
  at 10, 100 and 1,000 cells, per 1,000 source lines; linear scaling is the ratio
  t(1,000 cells) / t(100 cells) (≤ 12 for 10×). Every repeat uses new cell texts, so the
  per-cell cache never answers. Peak RSS of a fresh process analysing 10,000 lines.
* B2: one cell of a 100-cell notebook edited (a constant changed), the notebook analysed
  and resolved again (the other 99 cells come from the cache).
* B3: component generation (``build_component``: task.py, component.json, requirements,
  Dockerfile as text; no files, no image) per component on the 100-cell notebook.

    .venv/bin/python bench/bench_workflow_analysis.py [--repeat 7] [--edits 50]

Prints progress on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_avg, median, say, timed_cpu
from insitu.workflows import Environment, build_component, resolve_cells

TARGET_MS_PER_KLINE = 50.0
TARGET_SCALING = 12.0
TARGET_INCREMENTAL_MS = 5.0
TARGET_RSS_MB = 200.0
TARGET_COMPONENT_MS = 20.0


def cell(i: int, salt: int = 0, constant: int = 10) -> str:
    """Cell ``i``: a function, 6 comprehensions, reads of cells i-1 and i-2 (10 lines)."""
    prev = f"v_{i - 1}" if i >= 1 else "0"
    prev2 = f"v_{i - 2}" if i >= 2 else "1"
    return (
        f"# cell {i} ({salt})\n"
        f"def f_{i}(x, k={prev}):\n"
        f"    return [y * k for y in x]\n"
        f"a_{i} = [j for j in range({constant})]\n"
        f"b_{i} = {{j: j * 2 for j in a_{i}}}\n"
        f"c_{i} = [v for v in b_{i}.values() if v > {prev}]\n"
        f"d_{i} = sum(z for z in c_{i})\n"
        f"e_{i} = {{w for w in a_{i}}}\n"
        f"g_{i} = [[p * q for p in a_{i}] for q in range(3)]\n"
        f"v_{i} = f_{i}(a_{i})[0] + d_{i} + {prev2}\n"
    )


def notebook(n: int, salt: int) -> list[str]:
    return [cell(i, salt) for i in range(n)]


def lines(sources: list[str]) -> int:
    return sum(s.count("\n") for s in sources)


def b1(repeat: int) -> dict[str, object]:
    rows: dict[str, object] = {}
    salt = 0
    per_n: dict[int, float] = {}
    for n in (10, 100, 1000):
        walls, cpus = [], []
        for _ in range(repeat):
            salt += 1
            sources = notebook(n, salt)
            wall, cpu, graph = timed_cpu(lambda s=sources: resolve_cells(s))  # type: ignore[misc]
            assert not graph.diagnostics, graph.diagnostics[:3]
            walls.append(wall)
            cpus.append(cpu)
        nlines = lines(notebook(n, 0))
        t, w = median(cpus), median(walls)
        per_n[n] = t
        rows[f"cells_{n}"] = {
            "lines": nlines,
            "cpu_median_ms": round(t * 1000, 2),
            "cpu_ms_per_1000_lines": round(t * 1000 / nlines * 1000, 2),
            "wall_median_ms": round(w * 1000, 2),
            "wall_ms_per_1000_lines": round(w * 1000 / nlines * 1000, 2),
            "all_cpu_ms": [round(x * 1000, 2) for x in cpus],
        }
        say(
            f"B1 {n} cells ({nlines} lines): CPU {t * 1000:.1f} ms "
            f"({t * 1000 / nlines * 1000:.1f} ms per 1,000 lines), wall {w * 1000:.1f} ms"
        )
    rows["cpu_scaling_1000_over_100"] = round(per_n[1000] / per_n[100], 2)
    rows["cpu_scaling_100_over_10"] = round(per_n[100] / per_n[10], 2)
    rows["peak_rss_mb_10000_lines"] = rss_child(1000)
    return rows


def rss_child(n: int) -> float:
    """Peak RSS (MB) of a fresh interpreter that imports insitu.workflows and analyses an
    ``n``-cell notebook, and of one that only imports (the difference is the analysis)."""
    code = (
        "import sys; sys.path.insert(0, {bench!r}); "
        "from bench_workflow_analysis import notebook; "
        "from insitu.workflows import resolve_cells; "
        "{work}"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent
        "print([int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')][0])"
    )
    bench = str(Path(__file__).resolve().parent)
    out = []
    for work in ("", f"g = resolve_cells(notebook({n}, 1)); "):
        done = subprocess.run(
            [sys.executable, "-c", code.format(bench=bench, work=work)],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(int(done.stdout.strip()) / 1024)
    say(f"B1 peak RSS analysing {n} cells: {out[1]:.0f} MB (import alone {out[0]:.0f} MB)")
    return round(out[1], 1)


def b2(edits: int) -> dict[str, object]:
    base = notebook(100, 0)
    resolve_cells(base)  # every cell in the cache
    walls, cpus = [], []
    for e in range(edits):
        sources = list(base)
        sources[50] = cell(50, 0, constant=11 + e)  # a real code change, new text each time
        wall, cpu, _ = timed_cpu(lambda s=sources: resolve_cells(s))  # type: ignore[misc]
        walls.append(wall)
        cpus.append(cpu)
    warm = [timed_cpu(lambda: resolve_cells(base))[1] for _ in range(edits)]
    t = median(cpus)
    say(
        f"B2 one cell of 100 edited: CPU {t * 1000:.2f} ms, wall {median(walls) * 1000:.2f} ms"
        f" (nothing edited: CPU {median(warm) * 1000:.2f} ms)"
    )
    return {
        "cpu_median_ms": round(t * 1000, 3),
        "wall_median_ms": round(median(walls) * 1000, 3),
        "wall_max_ms": round(max(walls) * 1000, 3),
        "unchanged_cpu_median_ms": round(median(warm) * 1000, 3),
    }


def b3() -> dict[str, object]:
    sources = notebook(100, 0)
    graph = resolve_cells(sources)
    env = Environment(sys.executable, "3.11", {})
    _wall, t, comps = timed_cpu(lambda: [build_component(graph, c.id, env) for c in graph.cells])
    per = t / len(comps)
    say(f"B3 component generation: CPU {per * 1000:.2f} ms per component ({len(comps)})")
    return {"components": len(comps), "cpu_ms_per_component": round(per * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repeats per size (B1)")
    parser.add_argument("--edits", type=int, default=50, help="edits timed (B2)")
    args = parser.parse_args()
    start_load = load_avg()
    results: dict[str, object] = {
        "B1_full_analysis": b1(args.repeat),
        "B2_incremental": b2(args.edits),
        "B3_components": b3(),
        "load_avg_start": start_load,
        "load_avg_end": load_avg(),
        "max_rss_mb_this_process": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "targets": {
            "ms_per_1000_lines": TARGET_MS_PER_KLINE,
            "scaling_1000_over_100": TARGET_SCALING,
            "incremental_ms": TARGET_INCREMENTAL_MS,
            "peak_rss_mb_10000_lines": TARGET_RSS_MB,
            "ms_per_component": TARGET_COMPONENT_MS,
        },
    }
    emit("workflow_analysis", results)


if __name__ == "__main__":
    main()

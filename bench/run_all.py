"""Run the benchmarks one after another, keep each result, and print every target met or not.

    python bench/run_all.py --suite headline    # what `make bench` runs: under 30 min
    python bench/run_all.py --suite full        # every benchmark at its full size (hours)
    python bench/run_all.py                     # the catalog benchmarks (suite "catalog")
    python bench/run_all.py --quick             # catalog, small sizes: a smoke test
    python bench/run_all.py --suite full --only compute_1gb,compute_5gb
    python bench/run_all.py --list              # the steps of each suite and their commands

Each step runs one script of bench/ in its own Python process (so none inherits another's
imports, caches or forkserver). Its last JSON line on stdout is kept, with the command, its
wall and CPU time (the whole process tree it waited for) and the load average before and
after, in ``bench/data/results/<step>.json`` (the latest of each step; a failed step is kept
as failed). At the end :mod:`summary` prints one table of every target, from those files.

The 100,000-file archive of ``rescan``, the 1,000,000-file catalog of ``search`` (which
``service_uncached`` serves too), the compute archives and the synthetic ensemble take
minutes to build, so they are kept under bench/data/ and reused by later runs; ``--fresh``
rebuilds the first two. Exit status: 1 if a step failed, also if a target was missed with
``--strict``; 0 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import summary  # noqa: E402
from _common import DATA_DIR, code_info, machine  # noqa: E402

# Relative to the checkout, where every step runs.
SEARCH_DB = (DATA_DIR / "search" / "catalog-100000-1000000.db").relative_to(BENCH.parent)
SUITES = ("catalog", "headline", "full")


@dataclass(frozen=True)
class Step:
    """One script with its arguments in each suite that runs it (absent: not in that suite)."""

    name: str
    script: str
    suites: dict[str, list[str]]
    quick: list[str] = field(default_factory=list)


def _service(*extra: str) -> list[str]:
    return ["--clients", "50", "--duration", "20", "--server-workers", "2", *extra]


_SCALE = ("--catalog-from", str(SEARCH_DB), "--work", "scale")
_UNCACHED = _service(*_SCALE, "--unrepeated", "30000")
_PEERS_1GB = (
    "ceiling_2p,bare_time_mean_2p,cdo_timmean,cdo_timmean_p2,xarray,xarray_cluster_2p,"
    "insitu_cli_time_mean,insitu_time_mean"
)
_MEMORY_5GB = "bare_time_mean_2p,cdo_timmean,insitu_cli_time_mean,insitu_time_mean"
# The 1,000-dataset set's target is insitu's cost a dataset; its CDO loops (5 minutes under
# load) are in the full suite, the ratio to CDO is measured on the demo set.
_CDO_PEERS = "cdo_loop,cdo_loop_P2,cdo_xargs_P2"

STEPS: list[Step] = [
    # catalog
    Step("parse", "bench_parse.py", {"catalog": [], "headline": [], "full": []},
         ["--files", "50000", "--repeat", "1"]),
    Step("scan", "bench_scan.py",
         {"catalog": [], "headline": ["--records", "12", "--repeat", "3"], "full": []},
         ["--files", "1000", "--records", "12,1200", "--scale-files", "200"]),
    Step("rescan", "bench_rescan.py", {s: ["--reuse-catalog"] for s in SUITES},
         ["--files", "5000", "--repeat", "1", "--reuse-catalog"]),
    Step("search", "bench_search.py", {s: ["--reuse"] for s in SUITES},
         ["--datasets", "10000", "--files", "100000", "--searches", "100", "--text-searches", "20",
          "--reuse"]),
    Step("open", "bench_open.py",
         {"catalog": [], "headline": ["--mf-repeat", "1", "--default-repeat", "0"], "full": []},
         ["--files", "200", "--repeat", "3", "--mf-repeat", "1"]),
    Step("open_long", "bench_open_long.py",
         {"catalog": [], "headline": ["--rounds", "1"], "full": []},
         ["--files", "200", "--first-year", "2200", "--rounds", "1", "--warm", "1"]),
    # data service
    Step("service", "bench_service.py",
         {"headline": _service("--repeat", "1"), "full": _service("--repeat", "3")}),
    Step("service_uncached", "bench_service.py",
         {"headline": [*_UNCACHED, "--repeat", "0"], "full": [*_UNCACHED, "--repeat", "0"]}),
    Step("service_scale_repeated", "bench_service.py",
         {"full": _service(*_SCALE, "--repeat", "0")}),
    Step("pages", "bench_pages.py", {"headline": ["--repeat", "5"], "full": ["--repeat", "7"]}),
    # compute
    Step("compute_1gb", "compute_bench.py",
         {"headline": ["--gb", "1", "--repeat", "2", "--variants", "compressed", "--only",
                       _PEERS_1GB],
          "full": ["--gb", "1", "--repeat", "2", "--variants", "compressed", "--only",
                   _PEERS_1GB + ",xarray_h5netcdf_cluster_2p"]}),
    Step("compute_5gb", "compute_bench.py",
         {"headline": ["--gb", "5", "--repeat", "1", "--variants", "compressed", "--only",
                       _MEMORY_5GB],
          "full": ["--gb", "5", "--repeat", "3"]}),
    Step("small_demo", "bench_small_ensemble.py",
         {"headline": ["--sets", "demo", "--rounds", "2", "--skip", "cdo_loop_P2"],
          "full": ["--sets", "demo", "--rounds", "3"]}),
    Step("small_synthetic", "bench_small_ensemble.py",
         {"headline": ["--sets", "synthetic", "--rounds", "1", "--skip", _CDO_PEERS],
          "full": ["--sets", "synthetic", "--rounds", "3"]}),
    # ingest
    Step("ingest_throughput", "ingest_bench.py",
         {"headline": ["throughput", "--rounds", "1"], "full": ["throughput"]}),
    Step("ingest_memory", "ingest_bench.py",
         {"headline": ["memory", "--big-gb", "2", "--small-gb", "0.25"], "full": ["memory"]}),
    Step("ingest_latency", "ingest_bench.py",
         {"headline": ["latency", "--latency", "3"], "full": ["latency"]}),
    Step("ingest_search", "ingest_bench.py", {"full": ["search"]}),
    Step("shot_search", "bench_shot_search.py", {"headline": [], "full": []}),
    # workflows
    Step("workflow_analysis", "bench_workflow_analysis.py", {"headline": [], "full": []}),
    Step("workflow_run", "bench_workflow_run.py", {"headline": [], "full": ["--large"]}),
    # hub (root only: its users are unix accounts)
    Step("hub", "hub_bench.py",
         {"headline": ["--parts", "spawn", "--variants", "committed", "--cycles", "3",
                       "--later", "1"],
          "full": []}),
    # no pass/fail target: the figures behind decisions (formats: home-made against
    # libraries; a file decoded step by step; Dask's housekeeping; the app's own CPU)
    Step("formats", "bench_formats_libs.py", {"full": ["all", "--rounds", "3"]}),
    Step("decode", "bench_decode.py", {"full": []}),
    Step("idle_cluster", "bench_idle_cluster.py", {"full": []}),
    Step("app_cpu", "bench_app_cpu.py", {"full": []}),
]  # fmt: skip


def command(step: Step, suite: str, args: argparse.Namespace) -> list[str]:
    extra = list(step.quick if args.quick and step.quick else step.suites[suite])
    if args.fresh and step.name == "search":
        extra.remove("--reuse")
    if args.fresh and step.name == "rescan":
        extra[extra.index("--reuse-catalog")] = "--rebuild"
    if step.name == "shot_search" and args.postgres:
        extra += ["--postgres", args.postgres]
    return [step.script, *extra]


def run_step(name: str, argv: list[str]) -> dict[str, Any]:
    """Run ``bench/<argv[0]> argv[1:]``; its stderr goes to ours. The step's record."""
    cmd = [sys.executable, str(BENCH / argv[0]), *argv[1:]]
    shown = " ".join(["python", f"bench/{argv[0]}", *argv[1:]])
    print(f"\n=== {name}: {shown}", file=sys.stderr, flush=True)
    record: dict[str, Any] = {
        "step": name,
        "command": shown,
        "started": _now(),
        "load_before": os.getloadavg()[0],
        "code": code_info(),
    }
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=BENCH.parent)
    record["wall_s"] = time.perf_counter() - t0
    record["cpu_s"] = _children_cpu() - cpu0
    record["load_after"] = os.getloadavg()[0]
    record["finished"] = _now()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        record["failed"] = f"exit {proc.returncode}" + ("" if lines else ", no JSON line")
        print(f"=== {name}: FAILED ({record['failed']})", file=sys.stderr, flush=True)
    else:
        record["result"] = json.loads(lines[-1])
        print(
            f"=== {name}: done in {record['wall_s']:.0f} s ({record['cpu_s']:.0f} s CPU, "
            f"load {record['load_before']:.1f} -> {record['load_after']:.1f})",
            file=sys.stderr,
            flush=True,
        )
    return record


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def selected(suite: str, only: str) -> list[Step]:
    steps = [s for s in STEPS if suite in s.suites]
    if only:
        patterns = only.split(",")
        unknown = [p for p in patterns if not any(fnmatch.fnmatch(s.name, p) for s in steps)]
        if unknown:
            names = ", ".join(s.name for s in steps)
            raise SystemExit(f"no step {', '.join(unknown)} in suite {suite!r}; it has: {names}")
        steps = [s for s in steps if any(fnmatch.fnmatch(s.name, p) for p in patterns)]
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=SUITES, default="catalog")
    ap.add_argument("--only", default="", help="comma-separated steps (shell patterns)")
    ap.add_argument("--quick", action="store_true", help="small sizes where a step has them")
    ap.add_argument(
        "--fresh", action="store_true", help="rebuild the cached archive and catalog first"
    )
    ap.add_argument("--postgres", help="also measure the shot search on this PostgreSQL URI")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--list", action="store_true", help="print the steps and exit")
    args = ap.parse_args(argv)
    steps = selected(args.suite, args.only)
    if args.list:
        for s in steps:
            print(f"{s.name:24} python bench/{' '.join(command(s, args.suite, args))}")
        return 0

    results_dir = summary.RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    started, t0, load0 = _now(), time.perf_counter(), os.getloadavg()
    cpu0 = _children_cpu()
    failed = []
    for step in steps:
        if step.name == "hub" and os.geteuid() != 0:
            print("\n=== hub: not run (needs root: its users are unix accounts)", file=sys.stderr)
            continue
        record = run_step(step.name, command(step, args.suite, args))
        record.update(suite=args.suite, quick=bool(args.quick and step.quick))
        (results_dir / f"{step.name}.json").write_text(json.dumps(record, indent=1))
        if record.get("failed"):
            failed.append(step.name)

    m = machine()
    print(
        f"\ninsitu benchmarks, suite {args.suite}{' (quick sizes)' if args.quick else ''}: "
        f"{len(steps)} steps in {(time.perf_counter() - t0) / 60:.1f} min "
        f"({_children_cpu() - cpu0:.0f} s CPU), {started} to {_now()} UTC, load average "
        f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; {m['nproc']} cores "
        f"({m['cpu']}), Python {m['python']}\n"
    )
    results = summary.load(results_dir)
    print(summary.table(results, this_run=started))
    print(f"(step results: {results_dir}/)")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    mine = {k: v for k, v in results.items() if v.get("started", "") >= started}
    missed = [r for r in summary.rows(mine) if r[3] == "NOT MET"]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())

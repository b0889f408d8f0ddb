"""Every benchmark target in one table: met or not, with the figure measured.

    python bench/summary.py                    # the latest result of every step
    python bench/summary.py --results DIR      # the step results kept in DIR
    python bench/summary.py --since 2026-12-05T04:00   # older results shown as not run

``bench/run_all.py`` writes each step's result (the JSON line its script printed, with the
command, wall and CPU time and load average) to ``bench/data/results/<step>.json`` and
prints this table at its end. The targets are those of the issues that set them (13: formats,
14: service, 15: ingest, 16: workflows, 17: measurement and scale; the catalog's and the
compute engine's from the first sessions), written here once; BENCHMARKS.md reports the
figures. A target whose step did not run says which step would measure it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS_DIR = BENCH / "data" / "results"

Result = dict[str, Any]
# A target's check: from the results of the steps it reads, the figure measured and
# whether it meets the target (None: a figure with no pass or fail, given for context).
Check = Callable[[dict[str, Result]], tuple[str, bool | None]]


@dataclass(frozen=True)
class Target:
    area: str
    text: str
    steps: tuple[str, ...]
    check: Check


def body(step_result: Result) -> Result:
    """What a script printed, without ``_common.emit``'s envelope."""
    out = step_result.get("result", step_result)
    if "results" in out and "benchmark" in out and "variants" not in out:
        return dict(out["results"])
    return dict(out)


def load(directory: Path, since: str | None = None) -> dict[str, Result]:
    """The latest result of every step kept in ``directory`` (older than ``since``: left out)."""
    found: dict[str, Result] = {}
    for path in sorted(directory.glob("*.json")):
        r = json.loads(path.read_text())
        if since and r.get("finished", "") < since:
            continue
        found[path.stem] = r
    return found


# -- the checks -------------------------------------------------------------------------------


def _peers(r: Result) -> dict[str, Any]:
    return dict(body(r)["variants"]["compressed"]["peers"])


def _s(peers: dict[str, Any], name: str) -> float:
    """A compute peer's best time; KeyError when it did not run or failed."""
    p = peers[name]
    if p.get("rc") not in (0, None) or "compute_s" not in p:
        raise KeyError(f"{name} failed")
    return float(p["compute_s"])


def _compute_ratio(peer: str, times: float) -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        p = _peers(res["compute_1gb"])
        warm, other = _s(p, "insitu_time_mean"), _s(p, peer)
        cpu = p[peer]["cpu_s"] / p["insitu_time_mean"]["cpu_s"]
        return (
            f"{other / warm:.2f}x ({other:.2f} / {warm:.2f} s; {cpu:.1f}x the CPU seconds)",
            other / warm >= times,
        )

    return check


def _ceiling(res: dict[str, Result]) -> tuple[str, bool | None]:
    v = body(res["compute_1gb"])["variants"]["compressed"]
    frac = v["ratios"]["insitu"]["time_mean_fraction_of_ceiling"]
    bare = v["ratios"].get("bare", {}).get("time_mean_fraction_of_ceiling")
    extra = f"; the bare 2-process loop {bare:.2f}" if bare else ""
    return f"{frac:.2f} of {v['ratios']['ceiling']}{extra}", frac >= 0.85


def _cold_fixed_cost(res: dict[str, Result]) -> tuple[str, bool | None]:
    p = _peers(res["compute_1gb"])
    cold, warm = _s(p, "insitu_cli_time_mean"), _s(p, "insitu_time_mean")
    return f"{cold - warm:.2f} s (cold command {cold:.2f} s, warm run {warm:.2f} s)", (
        cold - warm < 2.0
    )


def _xarray_cluster(res: dict[str, Result]) -> tuple[str, bool | None]:
    peers = _peers(res["compute_1gb"])
    warm = _s(peers, "insitu_time_mean")
    out = []
    for name in ("xarray_cluster_2p", "xarray_h5netcdf_cluster_2p"):
        p = peers.get(name)
        if p is None:
            continue
        if p.get("rc") not in (0, None):
            out.append(f"{name} failed (rc {p.get('rc')}) after {p.get('wall_s', 0):.0f} s")
        else:
            out.append(f"{name} {p['compute_s']:.2f} s ({p['compute_s'] / warm:.1f}x insitu warm)")
    if not out:
        raise KeyError("xarray_cluster_2p")
    return "; ".join(out), None


def _memory_flat(res: dict[str, Result]) -> tuple[str, bool | None]:
    small, big = _peers(res["compute_1gb"]), _peers(res["compute_5gb"])
    a, b = small["insitu_time_mean"]["peak_rss_mb"], big["insitu_time_mean"]["peak_rss_mb"]
    cdo = big.get("cdo_timmean", {}).get("peak_rss_mb")
    extra = f"; cdo {cdo:.0f} MB" if cdo else ""
    return f"{a:.0f} MB at 1 GB, {b:.0f} MB at 5 GB (warm){extra}", b <= 1.1 * a


def _service(step: str, kind: str, limit: float) -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        loaded = body(res[step])["load"]
        p95 = loaded[kind]["p95"]
        return f"{p95:.1f} ms ({loaded[kind]['per_s']:,.0f} requests/s)", p95 < limit

    return check


def _service_errors(step: str) -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        errors = body(res[step])["load"]["errors"]
        return (str(errors) if errors else "none"), not errors

    return check


def _search(key: str, limit: float, what: str = "miss") -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        p = body(res["search"])[key][what]
        return f"{p['p95_ms']:.1f} ms (p50 {p['p50_ms']:.1f}, CPU p95 {p['cpu_p95_ms']:.1f})", (
            p["p95_ms"] < limit
        )

    return check


def _index_memory(res: dict[str, Result]) -> tuple[str, bool | None]:
    i = body(res["search"])["index"]
    per = i["arrays_bytes_per_dataset"]
    return f"{per:.0f} B a dataset in arrays", per <= 2048


def _index_update(res: dict[str, Result]) -> tuple[str, bool | None]:
    i = body(res["search"])["index"]
    s = i["rebuild_after_change_s"]
    return f"{s:.2f} s (a new process's full build {i['cold']['build_s']:.1f} s)", s < 2.0


def _small(what: str) -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        name = "demo" if what != "per_1000" else "synthetic"
        step = "small_demo" if name == "demo" else "small_synthetic"
        s = body(res[step])[name]
        warm = s["peers"]["insitu_warm"]
        if what == "warm":
            return f"{warm['median_s']:.2f} s median", warm["median_s"] < 2.0
        if what == "cdo":
            loop = s["peers"]["cdo_loop"]["median_s"]
            both = s["peers"].get("cdo_xargs_P2", {}).get("median_s")
            extra = f"; {both / warm['median_s']:.1f}x CDO on both cores" if both else ""
            return f"{loop / warm['median_s']:.1f}x ({loop:.1f} s){extra}", (
                loop / warm["median_s"] >= 4
            )
        ms = warm["median_ms_per_dataset"]
        return f"{ms:.1f} ms at {s['datasets']:,} datasets", ms < 20

    return check


def _open_long(res: dict[str, Result]) -> tuple[str, bool | None]:
    x = body(res["open_long"])
    ours = x["insitu"]
    best = x[x["best_mf_warm"]]["warm_s_median"]
    return (
        f"{x['speedup_warm_vs_best']:.0f}x ({ours['warm_s_median'] * 1e3:.0f} ms vs {best:.1f} s), "
        f"warnings {sum(ours['warnings_per_process'])}",
        bool(x["target_met"]),
    )


def _pages(key: str, limit: float, label: str = "") -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        x = body(res["pages"])
        s = x[key]
        cpu = x.get(f"{key}_cpu_s") or x.get(key.replace("_s", "_cpu_s"))
        extra = f" ({cpu:.2f} s CPU)" if isinstance(cpu, float) else ""
        return f"{s:.2f} s{extra}{label}", s < limit

    return check


def _catalog(step: str) -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        x = body(res[step])
        met = bool(x["target_met"])
        if step == "parse":
            cpu = x.get("parse_group_files_per_cpu_s")
            extra = f" (by CPU time {cpu:,.0f})" if cpu else ""
            return f"{x['parse_group_files_per_s']:,.0f} files/s{extra}", met
        if step == "scan":
            cpu = x.get("cpu_ms_per_file")
            extra = f"; {cpu:.2f} ms CPU a file" if cpu else ""
            n = len(x["all_files_per_s"])
            return f"{x['files_per_s']:,.0f} files/s (median of {n}{extra})", met
        if step == "rescan":
            return f"{x['rescan_s']:.1f} s", met
        if step == "open":
            return (
                f"{x['speedup_vs_mf_fast']:.0f}x ({x['insitu_open_s_median'] * 1e3:.0f} ms vs "
                f"{x['mf_fast_s_median']:.1f} s)",
                met,
            )
        raise KeyError(step)

    return check


def _ingest_throughput(res: dict[str, Result]) -> tuple[str, bool | None]:
    x = body(res["ingest_throughput"])["throughput"]["summary"]
    rates = [row["ingest_mb_s"] for mode in ("cold", "warm") for row in x[mode]]
    sha = [row["ingest_time_over_sha256sum"] for mode in ("cold", "warm") for row in x[mode]]
    return (
        f"{min(rates):.0f}-{max(rates):.0f} MB/s ({min(sha):.1f}-{max(sha):.1f}x sha256sum's time)",
        min(rates) >= 80,
    )


def _ingest_memory(res: dict[str, Result]) -> tuple[str, bool | None]:
    runs = body(res["ingest_memory"])["memory"]["runs"]
    text = ", ".join(f"{r['rss_mb']:.0f} MiB for {r['input_gb']:.2f} GB" for r in runs)
    return text, max(r["rss_mb"] for r in runs) < 1024


def _ingest_latency(res: dict[str, Result]) -> tuple[str, bool | None]:
    x = body(res["ingest_latency"])["latency"]
    limit = x["stable_seconds"] + 5
    worst = max(x[k]["max"] for k in x if isinstance(x[k], dict) and "max" in x[k])
    parts = ", ".join(
        f"{k} median {v['median']:.2f} s"
        for k, v in x.items()
        if isinstance(v, dict) and "median" in v
    )
    return f"{parts} (worst {worst:.2f} s)", worst <= limit


def _ingest_search(res: dict[str, Result]) -> tuple[str, bool | None]:
    x = body(res["ingest_search"])["search"]
    p95 = {k: v["p95"] for k, v in x["warm_ms"].items()}
    return ", ".join(f"{k} {v:.1f} ms" for k, v in p95.items()) + f" ({x['datasets']:,} shots)", (
        max(p95.values()) < 100
    )


def _shot_search(res: dict[str, Result]) -> tuple[str, bool | None]:
    x = body(res["shot_search"])
    worst = {
        db: max(p["p95"] for p in x[db].get("warm_after_vacuum", x[db]["warm"]).values())
        for db in ("sqlite", "postgresql")
        if db in x
    }
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    return ", ".join(f"{names[db]} worst p95 {v:.1f} ms" for db, v in worst.items()), (
        max(worst.values()) < 100
    )


def _workflow(key: str) -> Check:
    def check(res: dict[str, Result]) -> tuple[str, bool | None]:
        if key == "B4":
            x = body(res["workflow_run"])["B4_overhead"]["chain100_local"]
            return f"{x['wall_ms_per_node']:.0f} ms a node ({x['cpu_ms_per_node']:.0f} ms CPU)", (
                x["wall_ms_per_node"] <= 150
            )
        if key == "B6":
            x = body(res["workflow_run"])["B6_warm_cache"]
            return f"{x['wall_s']:.3f} s", x["wall_s"] < 1.0
        a = body(res["workflow_analysis"])
        b1 = a["B1_full_analysis"]
        if key == "B1":
            worst = max(v["cpu_ms_per_1000_lines"] for k, v in b1.items() if k.startswith("cells_"))
            return f"{worst:.1f} ms CPU per 1,000 lines (worst size)", worst <= 50
        if key == "B1 scaling":
            s = b1["cpu_scaling_1000_over_100"]
            return f"{s:.1f}", s <= 12
        if key == "B1 memory":
            return f"{b1['peak_rss_mb_10000_lines']:.0f} MB", b1["peak_rss_mb_10000_lines"] <= 200
        if key == "B2":
            ms = a["B2_incremental"]["cpu_median_ms"]
            return f"{ms:.2f} ms CPU", ms <= 5
        ms = a["B3_components"]["cpu_ms_per_component"]
        return f"{ms:.2f} ms CPU", ms <= 20

    return check


def _hub_spawn(res: dict[str, Result]) -> tuple[str, bool | None]:
    summary = body(res["hub"])["spawn"]["summary"]
    variant = "committed" if "committed" in summary else next(iter(summary))
    s = summary[variant]["all"]
    return f"{s['median']:.2f} s median of {s['n']} spawns ({variant})", s["median"] < 3.0


I17 = "issue 17"
TARGETS: list[Target] = [
    # issue 17: measurement and scale
    Target(I17, "service, uncached searches: search p95 < 50 ms", ("service_uncached",),
           _service("service_uncached", "search", 50)),
    Target(I17, "service, uncached searches: chunk p95 < 100 ms", ("service_uncached",),
           _service("service_uncached", "chunk", 100)),
    Target(I17, "service, uncached searches: no errors", ("service_uncached",),
           _service_errors("service_uncached")),
    Target(I17, "free-text search p95 < 20 ms (1,000,000 files)", ("search",),
           _search("text_search", 20)),
    Target(I17, "search index <= 2 KB a dataset", ("search",), _index_memory),
    Target(I17, "index up to date after a change < 2 s", ("search",), _index_update),
    Target(I17, "insitu compute run: fixed cost of a cold run < 2 s", ("compute_1gb",),
           _cold_fixed_cost),
    Target(I17, "many small datasets: demo (42) warm < 2 s", ("small_demo",), _small("warm")),
    Target(I17, "many small datasets: >= 4x the CDO loop", ("small_demo",), _small("cdo")),
    Target(I17, "many small datasets: < 20 ms a dataset at 42", ("small_demo",), _small("per_42")),
    Target(I17, "many small datasets: < 20 ms a dataset at 1,000", ("small_synthetic",),
           _small("per_1000")),
    Target(I17, "long dataset open: >= 20x open_mfdataset, < 0.3 s warm, no warning",
           ("open_long",), _open_long),
    Target(I17, "5 GB dataset page < 0.5 s warm", ("pages",), _pages("page_warm_s", 0.5)),
    Target(I17, "5 GB dataset map < 0.5 s warm (a time step not drawn before)", ("pages",),
           _pages("map_warm_miss_s", 0.5)),
    Target(I17, "5 GB dataset series < 10 s the first time", ("pages",),
           _pages("series_cold_s", 10)),
    Target(I17, "5 GB dataset series instant after (< 0.1 s)", ("pages",),
           _pages("series_warm_hit_s", 0.1)),
    Target(I17, "time mean peak memory flat from 1 to 5 GB (within 10%)",
           ("compute_1gb", "compute_5gb"), _memory_flat),
    Target(I17, "xarray's 2-process cluster (its documented best), for context",
           ("compute_1gb",), _xarray_cluster),
    # compute engine (first sessions; issue 13 kept them)
    Target("compute", "time mean >= 1.8x cdo timmean (1 GB, compressed)", ("compute_1gb",),
           _compute_ratio("cdo_timmean", 1.8)),
    Target("compute", "time mean >= 3x xarray's defaults", ("compute_1gb",),
           _compute_ratio("xarray", 3.0)),
    Target("compute", "time mean >= 0.85 of the 2-process decode ceiling", ("compute_1gb",),
           _ceiling),
    # catalog (first sessions)
    Target("catalog", "parse + group >= 100,000 files/s", ("parse",), _catalog("parse")),
    Target("catalog", "header scan >= 1,000 files/s on 2 processes", ("scan",), _catalog("scan")),
    Target("catalog", "rescan of 100,000 unchanged files < 10 s", ("rescan",), _catalog("rescan")),
    Target("catalog", "facet search p95 < 20 ms (100,000 datasets)", ("search",),
           _search("facet_search", 20)),
    Target("catalog", "open a 1,000-file dataset >= 20x open_mfdataset", ("open",),
           _catalog("open")),
    # data service (issue 14)
    Target("service", "50 clients, repeated searches: search p95 < 50 ms", ("service",),
           _service("service", "search", 50)),
    Target("service", "50 clients, repeated searches: chunk p95 < 100 ms", ("service",),
           _service("service", "chunk", 100)),
    Target("service", "50 clients: no errors", ("service",), _service_errors("service")),
    # ingest (issue 15)
    Target("ingest", "throughput >= 80 MB/s on 2 cores", ("ingest_throughput",),
           _ingest_throughput),
    Target("ingest", "peak memory < 1 GB, whatever the shot's size", ("ingest_memory",),
           _ingest_memory),
    Target("ingest", "detection latency <= stable_seconds + 5 s", ("ingest_latency",),
           _ingest_latency),
    Target("ingest", "catalog search over 50,000 shots p95 < 100 ms", ("ingest_search",),
           _ingest_search),
    Target("ingest", "shot search (find_shots) p95 < 100 ms", ("shot_search",), _shot_search),
    # hub
    Target("hub", "spawn median < 3 s", ("hub",), _hub_spawn),
    # workflows (issue 16)
    Target("workflows", "B1 analysis <= 50 ms per 1,000 lines", ("workflow_analysis",),
           _workflow("B1")),
    Target("workflows", "B1 scaling t(1,000 cells) / t(100) <= 12", ("workflow_analysis",),
           _workflow("B1 scaling")),
    Target("workflows", "B1 peak RSS <= 200 MB for 10,000 lines", ("workflow_analysis",),
           _workflow("B1 memory")),
    Target("workflows", "B2 re-analysis after one edit <= 5 ms", ("workflow_analysis",),
           _workflow("B2")),
    Target("workflows", "B3 component generation <= 20 ms each", ("workflow_analysis",),
           _workflow("B3")),
    Target("workflows", "B4 local executor <= 150 ms a node", ("workflow_run",), _workflow("B4")),
    Target("workflows", "B6 warm rerun of 50 nodes < 1 s", ("workflow_run",), _workflow("B6")),
]  # fmt: skip


def rows(
    results: dict[str, Result], this_run: str | None = None
) -> list[tuple[str, str, str, str, str]]:
    """(area, target, measured, met, when) for every target; a result that finished before
    ``this_run`` (an ISO time) is marked as an earlier run's."""
    out = []
    for t in TARGETS:
        missing = [s for s in t.steps if s not in results]
        failed = [s for s in t.steps if s in results and results[s].get("failed")]
        if missing or failed:
            why = "failed: " + ", ".join(failed) if failed else "not run: " + ", ".join(missing)
            out.append((t.area, t.text, why, "-", ""))
            continue
        try:
            figure, met = t.check(results)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            out.append((t.area, t.text, f"no figure ({type(exc).__name__}: {exc})", "?", ""))
            continue
        when = "; ".join(_when(results[s], this_run) for s in t.steps)
        out.append((t.area, t.text, figure, {True: "met", False: "NOT MET", None: ""}[met], when))
    return out


def _when(r: Result, this_run: str | None) -> str:
    text = f"{r.get('finished', '?')[:16]} load {r.get('load_before', 0):.1f}"
    text += f" {r.get('suite', '')}" + (" quick" if r.get("quick") else "")
    if this_run and r.get("finished", "") < this_run:
        text += " (earlier run)"
    return text


def table(results: dict[str, Result], this_run: str | None = None) -> str:
    head = ("area", "target", "measured", "met", "step finished (UTC), load before, suite")
    body_rows = rows(results, this_run)
    widths = [max(len(r[i]) for r in [head, *body_rows]) for i in range(len(head))]
    lines = []
    for i, row in enumerate([head, *body_rows]):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    met = sum(r[3] == "met" for r in body_rows)
    missed = sum(r[3] == "NOT MET" for r in body_rows)
    not_run = sum(r[3] in ("-", "?") for r in body_rows)
    lines.append(f"{met} met, {missed} not met, {not_run} not run, failed or without a figure")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS_DIR, help="step results folder")
    ap.add_argument("--since", help="leave out results that finished before this ISO time")
    args = ap.parse_args(argv)
    print(table(load(args.results, args.since)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

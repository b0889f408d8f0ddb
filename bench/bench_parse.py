"""Benchmark 1: parsing CMIP6 DRS paths with the built-in template and grouping them.

Generates N synthetic relative paths in memory (no files), then times
``BUILTIN_TEMPLATES['cmip6'].parse`` over all of them, grouping the results into a dict
keyed by dataset id, and ``insitu.catalog.scan._choose_paths`` (parse + one path per file
identity) on the same paths as walk entries.

    python bench/bench_parse.py [--files 200000] [--repeat 3] [--alias-fraction 0]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    emit,
    median,
    random_masters,
    random_versions,
    say,
    timed,
    timed_cpu,
    year_chunks,
)

TARGET_FILES_PER_S = 100_000


def make_paths(n: int, seed: int = 1) -> list[str]:
    """``n`` CMIP6 DRS relative paths: many models, experiments, members, versions."""
    rng = random.Random(seed)
    paths: list[str] = []
    # Enough masters for n files at a few versions x a few files each.
    masters = random_masters(max(1000, n // 6), rng)
    for m in masters:
        daily = m.table == "day"
        ypf = rng.choice((5, 10, 20) if daily else (10, 20, 50, 100, 500))
        for version in random_versions(rng):
            d = m.directory(version)
            for y0, y1 in year_chunks(m.first_year, m.last_year, ypf):
                tr = f"{y0:04d}0101-{y1:04d}1231" if daily else f"{y0:04d}01-{y1:04d}12"
                paths.append(f"{d}/{m.filename(tr)}")
                if len(paths) == n:
                    return paths
    raise RuntimeError("not enough synthetic masters for the requested file count")


def parse_all(paths: list[str]) -> list[object]:
    from insitu.catalog.templates import BUILTIN_TEMPLATES

    parse = BUILTIN_TEMPLATES["cmip6"].parse
    return [parse(p) for p in paths]


def parse_and_group(paths: list[str]) -> tuple[dict[str, list[str]], int]:
    from insitu.catalog.templates import BUILTIN_TEMPLATES, ParsedPath

    parse = BUILTIN_TEMPLATES["cmip6"].parse
    datasets: dict[str, list[str]] = {}
    bad = 0
    for p in paths:
        parsed = parse(p)
        if isinstance(parsed, ParsedPath):
            datasets.setdefault(parsed.dataset_id, []).append(p)
        else:
            bad += 1
    return datasets, bad


def make_entries(paths: list[str], alias_fraction: float, seed: int = 2) -> list[object]:
    """Walk entries for ``paths``; a fraction also reached through a 'latest' link."""
    from insitu.catalog.walk import Entry

    rng = random.Random(seed)
    entries = []
    for i, p in enumerate(paths):
        entries.append(Entry(p, 20_000, 1_600_000_000_000_000_000, (1, i), False))
        if alias_fraction and rng.random() < alias_fraction:
            head, _version, name = p.rsplit("/", 2)
            entries.append(
                Entry(f"{head}/latest/{name}", 20_000, 1_600_000_000_000_000_000, (1, i), True)
            )
    return entries


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200_000, help="number of paths (200000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (3)")
    ap.add_argument(
        "--alias-fraction",
        type=float,
        default=0.0,
        help="fraction of files also reached by a 'latest' link path (0)",
    )
    args = ap.parse_args(argv)

    from insitu.catalog.scan import _choose_paths
    from insitu.catalog.templates import BUILTIN_TEMPLATES, ParsedPath

    tpl = BUILTIN_TEMPLATES["cmip6"]
    gen_s, paths = timed(lambda: make_paths(args.files))
    n = len(paths)
    say(f"[parse] generated {n} paths in {gen_s:.2f} s; e.g. {paths[0]}")
    first = tpl.parse(paths[0])  # compiles the regex
    assert isinstance(first, ParsedPath), first

    parse_s, group_s, chooser_s, group_cpu = [], [], [], []
    n_datasets = bad = 0
    entries = make_entries(paths, args.alias_fraction)
    for _ in range(args.repeat):
        gc.collect()
        t, parsed = timed(lambda: parse_all(paths))
        parse_s.append(t)
        del parsed
        gc.collect()
        t, c, (groups, bad) = timed_cpu(lambda: parse_and_group(paths))
        group_s.append(t)
        group_cpu.append(c)
        n_datasets = len(groups)
        del groups
        gc.collect()
        t, (chosen, _aliases) = timed(lambda: _choose_paths(entries, tpl))
        chooser_s.append(t)
        assert len(chosen) == n, (len(chosen), n)
        del chosen

    res = {
        "files": n,
        "datasets": n_datasets,
        "bad_paths": bad,
        "repeat": args.repeat,
        "parse_s_median": median(parse_s),
        "parse_files_per_s": n / median(parse_s),
        "parse_files_per_s_best": n / min(parse_s),
        "parse_group_s_median": median(group_s),
        "parse_group_files_per_s": n / median(group_s),
        "parse_group_files_per_s_best": n / min(group_s),
        "parse_group_files_per_cpu_s": n / median(group_cpu),
        "choose_paths_entries": len(entries),
        "choose_paths_s_median": median(chooser_s),
        "choose_paths_files_per_s": len(entries) / median(chooser_s),
        "target_files_per_s": TARGET_FILES_PER_S,
    }
    res["target_met"] = res["parse_group_files_per_s"] >= TARGET_FILES_PER_S
    say(
        f"[parse] parse {res['parse_files_per_s']:,.0f} files/s; parse+group "
        f"{res['parse_group_files_per_s']:,.0f} files/s ({n_datasets} datasets); "
        f"_choose_paths {res['choose_paths_files_per_s']:,.0f} entries/s; "
        f"target {TARGET_FILES_PER_S:,} -> {'met' if res['target_met'] else 'MISSED'}"
    )
    emit("parse", res)
    return res


if __name__ == "__main__":
    main()

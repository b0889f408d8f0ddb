"""Where the time of benchmark 4 goes: cProfile of the free-text searches (memo emptied
before each) and of the full index build's column read, on the catalog bench_search.py made.

    python bench/profile_search.py [--datasets 100000] [--files 1000000] [--top 12]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, say
from bench_search import random_text_queries


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--top", type=int, default=12, help="functions shown (12)")
    args = ap.parse_args(argv)

    from insitu.catalog import Catalog

    db = DATA_DIR / "search" / f"catalog-{args.datasets}-{args.files}.db"
    if not db.exists():
        raise SystemExit(f"{db} does not exist: run bench/bench_search.py first.")
    cat = Catalog(f"sqlite:///{db}")
    cat.search(limit=20)  # builds the index
    queries = random_text_queries(60)

    def searches() -> None:
        for q in queries:
            cat.index()._memo.clear()
            cat.search(**q)

    cpu = time.process_time()
    searches()
    each = (time.process_time() - cpu) / len(queries) * 1e3
    say(f"[profile] {len(queries)} text searches: {each:.1f} ms CPU each")
    for name, code in (("text searches", searches), ("store.index_rows()", cat.store.index_rows)):
        profile = cProfile.Profile()
        profile.runcall(code)
        say(f"[profile] {name}, by own time:")
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(args.top)
    cat.close()


if __name__ == "__main__":
    main()

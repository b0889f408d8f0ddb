#!/usr/bin/env bash
# The dataset page, map and field-mean series of the 5 GB dataset, this tree against
# another checkout (the code before issue 17), interleaved.
#
#   bench/pages_pairs.sh BASE_SRC PAIRS [ARCHIVE_DIR]
#
# BASE_SRC: the src/ folder of the other checkout (git worktree add --detach /tmp/base X;
#   copy this tree's built src/insitu/formats/netcdf/_shuffle*.so into it). Its series
#   answers 413, so its runs stop after the map.
# ARCHIVE_DIR: where compute_archive.py keeps (or makes) the 5 GB archive (default
#   bench/data/compute).
# PY: the Python to run (default .venv/bin/python).
# Each pair runs the base, then this tree (bench/bench_pages.py --repeat 7), and prints one
# JSON line per run: times, and the CPU time of the server's process tree per request (the
# figure that holds on a loaded machine).
set -euo pipefail
cd "$(dirname "$0")/.."
base_src=$1 pairs=$2 archive=${3:-bench/data/compute}
here_src=$(pwd)/src
for i in $(seq 1 "$pairs"); do
  for side in "$base_src" "$here_src"; do
    PYTHONPATH=$side "${PY:-.venv/bin/python}" bench/bench_pages.py --archive-dir "$archive" \
      --repeat 7 2>/dev/null | grep '"benchmark"'
  done
done

#!/usr/bin/env bash
# Zarr view chunk GETs of compressed data, this tree against another checkout, interleaved.
#
#   bench/zarr_view_pairs.sh BASE_SRC BIG_FILES PAIRS [WORK]
#
# BASE_SRC: the src/ folder of the other checkout, e.g. the code before the formats layer:
#   git worktree add --detach /tmp/zv-base 23841c3   # then build its C unshuffle by hand:
#   gcc -O3 -shared -fPIC -I"$(python -c 'import sysconfig;print(sysconfig.get_paths()["include"])')" \
#       -I"$(python -c 'import numpy;print(numpy.get_include())')" \
#       /tmp/zv-base/src/insitu/catalog/_shuffle.c \
#       -o /tmp/zv-base/src/insitu/catalog/_shuffle$(python -c 'import sysconfig;print(sysconfig.get_config_var("EXT_SUFFIX"))')
# BIG_FILES: files of 12 one-record chunks (180x360 float32, zlib + shuffle) in the dataset
#   read: 40 (124 MB decoded: every server-side cache holds it) or 1000 (3.1 GB: none does).
# WORK: a work-folder suffix, so that archives of both sizes stay side by side.
# Each pair runs the base, then this tree: 2 server processes, 8 wrk connections reading
# random chunks for 20 s, no searches; it prints chunk GETs/s, latency and the servers' CPU
# time per chunk GET (the figure that holds on a loaded machine).
set -euo pipefail
cd "$(dirname "$0")/.."
base_src=$1 files=$2 pairs=$3 work=${4:-}
here_src=$(pwd)/src
args=(--compressed --chunks-from big --big-files "$files" --search-share 0 --clients 8
      --duration 20 --server-workers 2 --repeat 0)
[ -n "$work" ] && args+=(--work "$work")
for i in $(seq 1 "$pairs"); do
  for side in "$base_src" "$here_src"; do
    printf '== pair %s %s (load %s)\n' "$i" "$side" "$(cut -d' ' -f1 /proc/loadavg)"
    PYTHONPATH=$side .venv/bin/python bench/bench_service.py "${args[@]}" 2>/dev/null |
      grep '"benchmark"' | .venv/bin/python -c '
import json, sys
r = json.loads(sys.stdin.read())["results"]
c, cpu = r["load"]["chunk"], r["load"]["server_cpu_ms_per_request"]
print("chunk GETs/s %.0f  p50 %.1f ms  p95 %.1f ms  server CPU %.2f ms per GET"
      % (c["per_s"], c["p50"], c["p95"], cpu))'
  done
done

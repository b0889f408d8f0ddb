#!/usr/bin/env bash
# MPI for ipyparallel's MPI engines: mpi4py and an MPICH runtime, both as PyPI wheels in the
# venv (no compiler, no Debian packages). mpi4py's wheel finds MPICH's libmpi.so.12 in the
# venv's lib/ before any system MPI, and the venv's bin/ gets MPICH's Hydra 'mpiexec'.
# Idempotent: installs only when a 2-rank allreduce does not already work.
#   scripts/mpi.sh [VENV]   -> prints the venv's mpiexec path last
#
# Why wheels: the mpi4py wheel needs a library with the soname libmpi.so.12 (MPICH's ABI).
# Debian's mpich (+ libmpich-dev) names it libmpich.so.12, so the wheel then fails with
# "ImportError: libmpi.so.12"; alone, it picks up the Open MPI library that CDO pulls
# in and aborts in MPI_Init; building mpi4py from source takes minutes. The two wheels
# install in about a second, and a site MPI on PATH is still used where the venv has none.
set -euo pipefail
VENV=${1:-.venv}
PY=$VENV/bin/python
MPIEXEC=$VENV/bin/mpiexec
[ -x "$PY" ] || { echo "mpi.sh: no Python at $PY; make the venv first" >&2; exit 1; }

check() {
  [ -x "$MPIEXEC" ] || return 1
  local out
  # Hydra chooses SLURM as its launcher inside a job; outside, it forks locally.
  out=$(env -u SLURM_JOB_ID -u SLURM_JOBID timeout 60 "$MPIEXEC" -n 2 "$PY" -c \
    'from mpi4py import MPI; c = MPI.COMM_WORLD; s = c.allreduce(c.rank + 1); c.rank or print(c.size, s)' \
    2>&1) || { echo "$out" >&2; return 1; }
  [ "$out" = "2 3" ] || { echo "mpi.sh: expected '2 3' from rank 0, got: $out" >&2; return 1; }
}

if ! check 2>/dev/null; then
  echo "mpi.sh: pip install mpi4py mpich into $VENV" >&2
  "$PY" -m pip install -q "mpi4py>=4.0" "mpich>=4.2" >&2
  check || { echo "mpi.sh: mpiexec -n 2 with mpi4py does not work (see above)" >&2; exit 1; }
fi
"$PY" -c 'from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])' >&2
echo "$MPIEXEC"

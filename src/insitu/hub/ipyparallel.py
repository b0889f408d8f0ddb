"""ipyparallel profiles in each user's home: engines local, over SSH, as SLURM jobs, or MPI."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_profiles"]


def write_profiles(home: Path, uid: int | None, gid: int | None) -> None:
    """Write the ipyparallel profiles into ``home/.ipython`` when missing."""

"""Server-side operations as jobs (to be written)."""

from __future__ import annotations

__all__ = ["JobManager"]


class JobManager:
    """Runs compute operations for the service in the background."""

    def close(self) -> None:
        """Stop accepting jobs and release the workers."""

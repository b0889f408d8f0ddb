"""Logging set-up, called only by entry points (the CLI, later the servers)."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "in_notebook", "show_progress"]


def configure_logging(level: str = "INFO") -> None:
    """Send insitu's log records to stderr as plain text at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("insitu")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where progress bars are ipywidgets)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    return getattr(shell.get_ipython(), "kernel", None) is not None


def show_progress(progress: bool | None) -> bool:
    """Whether to show a progress bar: as asked, or by default in a notebook."""
    return in_notebook() if progress is None else progress

"""Logging set-up, called only by entry points (the CLI, later the servers)."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO") -> None:
    """Send insitu's log records to stderr as plain text at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("insitu")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False

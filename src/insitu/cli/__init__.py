"""The ``insitu`` command-line interface."""

from insitu.cli.main import cli, main

__all__ = ["cli", "main"]

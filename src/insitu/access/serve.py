"""An app factory for server processes started by import string (``serve --workers N``)."""

from __future__ import annotations

from fastapi import FastAPI

from insitu.access.app import build_app
from insitu.settings import Settings

__all__ = ["app_from_env"]


def app_from_env() -> FastAPI:
    """The app over the settings of this process's environment and TOML file."""
    return build_app(Settings.load())

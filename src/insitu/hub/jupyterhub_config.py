"""JupyterHub's config file for ``insitu up``: everything comes from insitu's settings."""

from insitu.hub.config import configure
from insitu.settings import Settings

configure(get_config(), Settings.load())  # type: ignore[name-defined]  # noqa: F821

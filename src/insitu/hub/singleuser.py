"""What each user's server starts with: its command-line options and its home's set-up."""

from __future__ import annotations

from pathlib import Path

from insitu.settings import Settings

__all__ = ["prepare_home", "singleuser_args"]


def singleuser_args(settings: Settings) -> list[str]:
    """Extra options of ``jupyterhub-singleuser`` (traitlets ``--Class.trait=value``)."""
    # The user's Dask dashboards, through this server (dashboards.py).
    dashboards = "--ServerApp.jpserver_extensions=insitu.hub.dashboards=True"
    return [dashboards, *_quick_start_args(settings)]


def _quick_start_args(settings: Settings) -> list[str]:
    """Options that take waste out of a user's server start (``bench/hub_bench.py``).

    Every feature stays: JupyterLab, collaboration, server-proxy, the Dask and
    IPython Parallel panels. What goes:

    - jupyter-lsp's server extension: no language server is installed in the platform's
      environment, so at every start it only scanned for one (in a thread that ran while
      the first requests came in), and JupyterLab's LSP features are off by default.
      A site that installs one (``python-lsp-server``) turns it back on with
      ``hub.spawner_config = {args = [...]}`` without this option.
    - JupyterLab's 'pypi' extension manager: users cannot install into the platform's
      environment, so the manager that offers it (an HTTP client to PyPI made at every
      start) becomes the read-only one, which lists what is installed.
    """
    return [
        "--ServerApp.jpserver_extensions=jupyter_lsp=False",
        "--LabApp.extension_manager=readonly",
    ]


def prepare_home(
    settings: Settings, user: str, home: Path, uid: int | None, gid: int | None
) -> None:
    """Set up a user's home before their server starts (owned by uid/gid when given)."""
    from insitu.hub.profiles import write_profiles
    from insitu.hub.projects import link_projects

    write_profiles(home, uid, gid)
    link_projects(settings, user, home, uid, gid)
    _link_gallery(settings, home, uid, gid)


def _link_gallery(settings: Settings, home: Path, uid: int | None, gid: int | None) -> None:
    """``~/gallery``: the published notebooks, readable by all, written by the service."""
    import os

    gallery = settings.data_dir / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    os.chmod(gallery, 0o755)
    link = home / "gallery"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(gallery)
        if uid is not None and gid is not None:
            os.lchown(link, uid, gid)

"""What each user's server starts with: its command-line options and its home's set-up."""

from __future__ import annotations

from pathlib import Path

from insitu.settings import Settings

__all__ = ["prepare_home", "singleuser_args"]


def singleuser_args(settings: Settings) -> list[str]:
    """Extra options of ``jupyterhub-singleuser`` (traitlets ``--Class.trait=value``)."""
    return []


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

"""Every example configuration in docs/hub-examples builds a JupyterHub configuration whose
spawner and authenticator exist and know every option the example sets."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from traitlets.config import Config

from insitu.hub.config import AUTHENTICATORS, SPAWNERS, configure
from insitu.settings import Settings


def _load(path: str) -> type:
    module, _, name = path.rpartition(".")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


EXAMPLES = sorted((Path(__file__).parents[2] / "docs" / "hub-examples").glob("*.toml"))


def test_there_is_an_example_for_every_kind_of_scale_out() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"postgresql", "slurm", "pbs", "lsf", "docker", "kubernetes"} <= names
    assert {"pam", "ldap", "oidc", "tls"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_builds_a_hub_configuration(example: Path, tmp_path: Path) -> None:
    settings = Settings.load(example, data_dir=tmp_path)
    c = Config()
    configure(c, settings)
    spawner = c.JupyterHub.spawner_class
    authenticator = c.JupyterHub.authenticator_class
    if settings.hub.spawner != "local":
        assert spawner is _load(SPAWNERS[settings.hub.spawner])
    if settings.hub.authenticator != "insitu":
        assert authenticator is _load(AUTHENTICATORS[settings.hub.authenticator])
    for cls, options in (
        (spawner, settings.hub.spawner_config),
        (authenticator, settings.hub.authenticator_config),
    ):
        known = set(cls.class_trait_names(config=True))
        unknown = set(options) - known - {"environment"}
        assert not unknown, f"{example.name}: {cls.__name__} has no option {sorted(unknown)}"
        section = getattr(c, cls.__name__)
        for key, value in options.items():
            if key != "environment":
                assert section[key] == value
    if "environment" in settings.hub.spawner_config:
        env = c.Spawner.environment
        assert env.items() >= settings.hub.spawner_config["environment"].items()
        assert "INSITU_CATALOG__URI" in env  # added to the platform's, not replacing it

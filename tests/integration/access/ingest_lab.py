"""The lab the ingest tests of the data service share: the lab demo ingested
(:func:`insitu.ingest.run_demo`), its pipelines added to the settings as an operator adds
``pipelines.toml``, and a pipeline ``secret`` like ``lab-demo`` writing its own collection
(``secret``, restricted) from its own inbox, empty until a test drops shots into it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insitu.ingest import DemoReport, run_demo
from insitu.settings import Settings

__all__ = ["IngestLab", "ingest_lab"]


@dataclass(frozen=True)
class IngestLab:
    """The settings with the demo's pipelines and ``secret``, the demo's report (its lab
    folder is ``demo.lab``) and the restricted pipeline's inbox."""

    settings: Settings
    demo: DemoReport
    secret_inbox: Path


def ingest_lab(tmp: Path) -> IngestLab:
    """The lab demo ingested under ``tmp`` (a catalog there too) and the settings to go on."""
    catalog = {"uri": f"sqlite:///{tmp / 'catalog.db'}"}
    demo = run_demo(Settings(data_dir=tmp / "data", catalog=catalog))
    assert demo.ok, demo.outcomes
    pipelines: dict[str, Any] = tomllib.loads((demo.lab / "pipelines.toml").read_text())["ingest"][
        "pipelines"
    ]
    inbox = tmp / "secret-inbox"
    inbox.mkdir()
    pipelines["secret"] = {
        **pipelines["lab-demo"],
        "source": str(inbox),
        "output": str(tmp / "secret-products"),
        "collection": "secret",
    }
    settings = Settings(data_dir=tmp / "data", catalog=catalog, ingest={"pipelines": pipelines})
    return IngestLab(settings, demo, inbox)

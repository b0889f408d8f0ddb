"""What ``insitu up`` puts in the catalog: on a new platform the CMIP6 demo and the lab's
ingested shots, both public, and a published demo workflow over the CMIP6 demo; where an
earlier, deleted installation left the demo collection, it is moved to this installation's
sample data, as ``insitu demo`` does; an operator's own catalog is left alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from insitu.catalog import Catalog
from insitu.cli._hub import _index_demo_if_empty
from insitu.settings import Settings
from insitu.workflows import (
    DEMO_CELLS,
    DEMO_WORKFLOW,
    ComponentCatalog,
    LocalBackend,
    PublishedWorkflows,
    run_workflow,
)


def test_a_demo_collection_whose_folder_is_gone_is_moved(tmp_path: Path, demo_root: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    old = tmp_path / "old-venv-sample-data"
    old.mkdir()
    with Catalog(settings) as cat:
        cat.add_collection("demo", old, template="cmip6", public=True)
    old.rmdir()  # the earlier checkout and its venv were deleted
    _index_demo_if_empty(settings)
    with Catalog(settings) as cat:
        assert Path(cat.collection("demo").root) == demo_root.resolve()
        assert cat.stats()["demo"].datasets > 0


def test_a_new_platform_shows_the_climate_and_the_lab_demo(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _index_demo_if_empty(settings)
    with Catalog(settings) as cat:
        public = {c.name for c in cat.collections() if c.public}
        assert public == {"demo", "lab-demo"}
        shots = cat.search(collection="lab-demo").all_ids
        assert "3001.v1" in shots
        assert cat.open_dataset("3001.v1")["coil_field"].attrs["units"] == "T"
    _index_demo_if_empty(settings)  # again: nothing new
    with Catalog(settings) as cat:
        assert cat.search(collection="lab-demo").all_ids == shots


def test_an_operators_own_catalog_gets_no_demo(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    archive = tmp_path / "archive"
    archive.mkdir()
    with Catalog(settings) as cat:
        cat.add_collection("site", archive, template="cmip6")
    _index_demo_if_empty(settings)
    with Catalog(settings) as cat:
        assert [c.name for c in cat.collections()] == ["site"]


def test_a_new_platform_publishes_the_demo_workflow_which_gives_the_notebooks_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _index_demo_if_empty(settings)
    with PublishedWorkflows.from_settings(settings) as published:
        entry, wf = published.load(DEMO_WORKFLOW)
    assert entry.published_by == "insitu up (demo)"
    with ComponentCatalog.from_settings(settings) as components:
        assert components.known([n.hash for n in wf.nodes.values()]) == {
            n.hash for n in wf.nodes.values()
        }
    env = {"INSITU_DATA_DIR": str(settings.data_dir), "INSITU_CATALOG__URI": settings.catalog_uri}
    record = run_workflow(wf, LocalBackend(2), env=env, params={"param_end": "1994"})
    outputs = {k: v for r in record.nodes.values() for k, v in r.outputs.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {}
    for cell in DEMO_CELLS[:-1]:
        exec(cell.replace("param_end = '1999'", "param_end = '1994'"), namespace)
    assert outputs["anomaly"]["value"] == pytest.approx(namespace["anomaly"])
    assert outputs["spread"]["value"] == pytest.approx(namespace["spread"])
    assert sorted(namespace["anomaly"]) == ["AWI-CM-1-1-MR", "BCC-ESM1", "CanESM5"]
    _index_demo_if_empty(settings)  # again: published once
    with PublishedWorkflows.from_settings(settings) as published:
        assert [e.name for e in published.list()] == [DEMO_WORKFLOW]

"""The component catalog in the catalog database: components extracted from a real notebook
are registered (``cells extract --register``, ``cells register``), found by text, port
name, port type and dependency (``cells search``), shown with their versions, and bad
input is refused with a message saying what to do. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from insitu.cli.main import cli
from insitu.errors import InvalidRequest, NotFound
from insitu.workflows import ComponentCatalog, extract, notebook_from_sources
from insitu.workflows.registry import FTS_TABLE

CELLS = [
    "param_year = 1990\nparam_scale = 2.5",
    "import numpy as np\n# Load the temperature field\n"
    "# A synthetic grid of surface temperatures.\n"
    "field = np.arange(12.0).reshape(3, 4) + param_year",
    "# Anomalies against the mean\nanomaly = (field - field.mean()) * param_scale",
    "import json\n# Summary as JSON text\nsummary = json.dumps({'max': float(anomaly.max())})",
    "print(summary)",
]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nbformat.write(notebook_from_sources(cells, ids=[f"c{i}" for i in range(len(cells))]), path)
    return path


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["cells", *args], env=env)


@pytest.fixture
def env(store_uri: str, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "insitu.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[catalog]\nuri = "{store_uri}"\n')
    return {"INSITU_CONFIG": str(config)}


def names(found: list[object]) -> list[str]:
    return sorted(e.name for e in found)  # type: ignore[attr-defined]


def test_register_and_search_by_text_port_type_and_dependency(
    env: dict[str, str], store_uri: str, tmp_path: Path
) -> None:
    nb = write_notebook(tmp_path / "analysis.ipynb", CELLS)
    out = tmp_path / "components"
    done = invoke(env, "extract", str(nb), "--out", str(out), "--register")
    assert done.exit_code == 0, done.output
    assert done.output.count(": registered (") == 4  # field, anomaly, summary, the print
    again = invoke(env, "register", str(out))
    assert again.exit_code == 0, again.output
    assert again.output.count("already registered") == 4

    with ComponentCatalog(store_uri) as catalog:
        assert catalog.count() == 4
        # text: a word of the title, of the description, of the code; a word's beginning;
        # every word must match; stemming ('anomalies' finds 'anomaly')
        assert names(catalog.search("temperature")) == ["field"]
        assert names(catalog.search("synthetic grid")) == ["field"]
        assert names(catalog.search("dumps")) == ["summary"]
        assert names(catalog.search("anomal")) == ["anomaly", "summary"]
        assert names(catalog.search("anomalies mean")) == ["anomaly"]
        assert names(catalog.search("means")) == ["anomaly"]
        assert len(catalog.search("analysis")) == 4  # notebook
        assert catalog.search("nowhere") == []
        # port name (input, output or parameter), port type, both on one port
        assert names(catalog.search(port="anomaly")) == ["anomaly", "summary"]
        assert names(catalog.search(port="param_scale")) == ["anomaly"]
        assert names(catalog.search(type="float")) == ["anomaly"]
        assert names(catalog.search(type="int")) == ["field"]
        assert names(catalog.search(port="param_year", type="int")) == ["field"]
        assert catalog.search(port="param_year", type="float") == []
        # dependency, by its normalized distribution name
        assert names(catalog.search(uses="NumPy")) == ["field"]
        assert catalog.search(uses="pandas") == []
        # criteria together
        assert names(catalog.search("temperature", uses="numpy", port="field")) == ["field"]
        assert catalog.search("json", uses="numpy") == []

    listed = invoke(env, "search", "--port", "anomaly", "--json")
    assert listed.exit_code == 0, listed.output
    docs = json.loads(listed.output)
    assert sorted(d["name"] for d in docs) == ["anomaly", "summary"]
    summary = next(d for d in docs if d["name"] == "summary")
    assert summary["source_notebook"].endswith("analysis.ipynb") and summary["cell_id"] == "c3"
    assert "json.dumps" in summary["source"] and "class _InsituTask" not in summary["source"]
    assert [i["name"] for i in summary["inputs"]] == ["anomaly"]
    text = invoke(env, "search", "temperature", "--uses", "numpy")
    assert text.exit_code == 0 and "field" in text.output and "uses numpy" in text.output
    none = invoke(env, "search", "nowhere")
    assert none.exit_code == 0 and "No component matches" in none.output


def test_show_gives_a_component_and_its_versions(
    env: dict[str, str], store_uri: str, tmp_path: Path
) -> None:
    out = tmp_path / "components"
    first = extract(write_notebook(tmp_path / "a.ipynb", CELLS), out)
    edited = [*CELLS[:2], CELLS[2].replace("* param_scale", "* param_scale * 2"), *CELLS[3:]]
    second = extract(write_notebook(tmp_path / "a.ipynb", edited), out)
    old = next(c for c in first.components if c.name == "anomaly")
    new = next(c for c in second.components if c.name == "anomaly")
    assert old.hash != new.hash and new.metadata["previous_version"] == old.hash
    assert invoke(env, "register", str(out)).exit_code == 0

    shown = invoke(env, "show", new.hash[:10], "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["hash"] == new.hash and doc["previous_version"] == old.hash
    assert set(doc["versions"]) == {old.hash, new.hash}
    assert "param_scale * 2" in doc["source"]
    plain = invoke(env, "show", new.hash[:8])
    assert plain.exit_code == 0 and f"{new.hash[:8]} <- {old.hash[:8]}" in plain.output

    with ComponentCatalog(store_uri) as catalog:
        assert catalog.get(old.hash).name == "anomaly"
        with pytest.raises(NotFound, match="No component 'ffff'"):
            catalog.get("ffff")
        with pytest.raises(InvalidRequest, match="not a component hash"):
            catalog.get("xyz")


def test_bad_input_is_refused_naming_it(
    env: dict[str, str], store_uri: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = invoke(env, "register", str(empty))
    assert missing.exit_code != 0 and f"No component at {empty}" in missing.output
    bad = tmp_path / "bad" / "x-00000000"
    bad.mkdir(parents=True)
    (bad / "component.json").write_text(json.dumps({"schema": "other/1", "name": "x"}))
    refused = invoke(env, "register", str(bad))
    assert refused.exit_code != 0 and "not a component of schema" in refused.output
    assert "'other/1'" in refused.output
    usage = invoke(env, "extract", str(tmp_path / "n.ipynb"), "--register")
    assert usage.exit_code == 2 and "--register needs --out" in usage.output
    with ComponentCatalog(store_uri) as catalog:
        assert catalog.count() == 0
        with pytest.raises(InvalidRequest, match="no word to look for"):
            catalog.search("--")


def test_a_workflow_from_a_notebook_registers_its_components(
    env: dict[str, str], store_uri: str, tmp_path: Path
) -> None:
    nb = write_notebook(tmp_path / "analysis.ipynb", CELLS)
    wf = tmp_path / "wf"
    done = CliRunner().invoke(
        cli, ["workflow", "from-notebook", str(nb), "--out", str(wf), "--register"], env=env
    )
    assert done.exit_code == 0, done.output
    assert done.output.count(": registered (") == 4
    with ComponentCatalog(store_uri) as catalog:
        (found,) = catalog.search("temperature")
        assert Path(found.directory).parent == (wf / "components").resolve()


def test_without_fts5_the_text_search_falls_back_to_like(tmp_path: Path) -> None:
    """A SQLite built without FTS5 gets no FTS table from the migration: every word of the
    text must then occur in the component's text (no stemming, no ranking)."""
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    with ComponentCatalog(uri) as catalog:
        assert catalog.fts
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {FTS_TABLE}")
    engine.dispose()
    out = tmp_path / "components"
    extract(write_notebook(tmp_path / "analysis.ipynb", CELLS), out)
    with ComponentCatalog(uri) as catalog:
        assert not catalog.fts
        catalog.register(out)
        assert names(catalog.search("temperature")) == ["field"]
        assert names(catalog.search("TEMPER grid")) == ["field"]
        assert names(catalog.search("anomal")) == ["anomaly", "summary"]
        assert catalog.search("means") == []  # no stemming (FTS5 finds "mean")
        assert names(catalog.search("mean", port="anomaly")) == ["anomaly"]

from __future__ import annotations

from pathlib import Path

import pytest

from insitu.errors import ConfigError
from insitu.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in (
        "INSITU_CONFIG",
        "INSITU_DATA_DIR",
        "INSITU_CATALOG__URI",
        "INSITU_CATALOG__SCAN_WORKERS",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))


def test_defaults(tmp_path: Path) -> None:
    s = Settings.load()
    assert s.data_dir == tmp_path / "share" / "insitu"
    assert s.catalog_uri == f"sqlite:///{tmp_path / 'share' / 'insitu' / 'catalog.db'}"


def test_env_beats_toml_and_kwargs_beat_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "i.toml"
    cfg.write_text('data_dir = "/from/toml"\n[catalog]\nscan_workers = 3\nuri = "sqlite:///t.db"\n')
    s = Settings.load(cfg)
    assert (str(s.data_dir), s.catalog.scan_workers, s.catalog_uri) == (
        "/from/toml",
        3,
        "sqlite:///t.db",
    )
    monkeypatch.setenv("INSITU_DATA_DIR", "/from/env")
    monkeypatch.setenv("INSITU_CATALOG__SCAN_WORKERS", "5")
    s = Settings.load(cfg)
    assert (str(s.data_dir), s.catalog.scan_workers) == ("/from/env", 5)
    assert str(Settings.load(cfg, data_dir="/from/kw").data_dir) == "/from/kw"


def test_insitu_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text("log_level = 'DEBUG'\n")
    monkeypatch.setenv("INSITU_CONFIG", str(cfg))
    assert Settings.load().log_level == "DEBUG"


def test_invalid_values_name_key_and_source(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[catalog]\nscan_workers = 0\n")
    with pytest.raises(ConfigError, match=r"catalog\.scan_workers") as err:
        Settings.load(cfg)
    assert str(cfg) in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[catalog\n")
    with pytest.raises(ConfigError, match="Cannot read config file"):
        Settings.load(broken)


def test_redacted_hides_passwords() -> None:
    s = Settings.load(catalog={"uri": "postgresql+psycopg://me:secret@db:5432/cat"})
    assert s.redacted()["catalog"]["uri"] == "postgresql+psycopg://me:***@db:5432/cat"


def test_a_caller_share_bigger_than_the_queue_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "jobs.toml"
    cfg.write_text("[access]\njobs_per_worker = 2\njobs_per_caller_per_worker = 3\n")
    with pytest.raises(ConfigError, match=r"jobs_per_caller_per_worker \(3\)") as err:
        Settings.load(cfg)
    assert "jobs_per_worker (2)" in str(err.value)


PIPELINE = """
[ingest.pipelines.{name}]
source = "/lab/inbox"
parser = "tdms"
output = "/lab/products"
collection = "lab"
"""


def test_pipelines_one_file_each_in_the_pipelines_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "pipelines"
    folder.mkdir(parents=True)
    (folder / "a.toml").write_text(PIPELINE.format(name="shots"))
    (folder / "b.toml").write_text(PIPELINE.format(name="logs"))
    config = tmp_path / "insitu.toml"
    config.write_text(PIPELINE.format(name="main"))
    s = Settings.load(config, data_dir=tmp_path / "data")
    assert sorted(s.ingest.pipelines) == ["logs", "main", "shots"]
    assert s.ingest.pipelines["shots"].source == "/lab/inbox"

    # A folder named in the settings instead of DATA_DIR/pipelines.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "c.toml").write_text(PIPELINE.format(name="third"))
    s = Settings.load(data_dir=tmp_path / "data", ingest={"pipelines_dir": other})
    assert sorted(s.ingest.pipelines) == ["third"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PIPELINE.format(name="main"), "is defined in"),  # also in the settings file
        ('[catalog]\nuri = "sqlite://"\n', "must hold [ingest.pipelines.NAME] tables"),
        ("[ingest.pipelines.x]\nsource = 3\n", "Pipeline 'x' in"),
        ("[ingest.pipelines.x\n", "Cannot read pipeline file"),
    ],
)
def test_a_bad_pipeline_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    folder = tmp_path / "data" / "pipelines"
    folder.mkdir(parents=True)
    (folder / "bad.toml").write_text(text)
    config = tmp_path / "insitu.toml"
    config.write_text(PIPELINE.format(name="main"))
    with pytest.raises(ConfigError, match=r"bad\.toml") as err:
        Settings.load(config, data_dir=tmp_path / "data")
    assert message in str(err.value)

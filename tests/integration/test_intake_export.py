"""The intake-esm export opens in the real intake-esm and answers searches as insitu does.

intake-esm opens files on Dask's threads by default; the export's assets are kerchunk
references read by the Zarr engine, so its defaults work (netCDF-C crashed on threads). The
tests use intake-esm's defaults, and one runs exactly what ``insitu catalog export`` prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import intake
import pytest
import xarray as xr

from insitu.catalog import Catalog

INSITU = [sys.executable, "-m", "insitu.cli"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Catalog]:
    cat = Catalog(f"sqlite:///{tmp_path_factory.mktemp('intake') / 'c.db'}")
    cat.add_collection("demo", demo_root)
    cat.scan(workers=2)
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def esm(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> object:
    path = catalog.export_intake_esm("demo", tmp_path_factory.mktemp("export"))
    assert path.name == "demo.json" and path.with_suffix(".csv").is_file()
    return intake.open_esm_datastore(str(path))


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"source_id": "MIROC6"},
        {"source_id": "MIROC6", "variable_id": "ta"},
        {"table_id": "day", "institution_id": ["NCAR", "CAS"]},
        {"grid_label": "gr1"},
    ],
)
def test_same_answers(catalog: Catalog, esm: object, query: dict[str, object]) -> None:
    mine = catalog.search(limit=10_000, **query)  # type: ignore[arg-type]
    theirs = esm.search(**query) if query else esm  # type: ignore[attr-defined]
    assert sorted(set(theirs.df["dataset_id"])) == mine.dataset_ids
    n_files = sum(r.n_files for r in mine)
    assert len(theirs.df) == n_files
    assert theirs.nunique()["source_id"] == len(mine.facet_counts["source_id"])
    assert all(Path(p).is_file() for p in theirs.df["path"])  # the files themselves


def test_intake_opens_the_same_data(catalog: Catalog, esm: object) -> None:
    """intake-esm's defaults (Dask's threaded scheduler) open what insitu opens."""
    sub = esm.search(source_id="MIROC6", table_id="Amon")  # type: ignore[attr-defined]
    (opened,) = sub.to_dataset_dict(progressbar=False).values()
    mine = catalog.search(source_id="MIROC6", table_id="Amon").to_xarray()
    assert isinstance(mine, xr.Dataset)
    xr.testing.assert_equal(
        opened["ta"].squeeze(drop=True).reset_coords(drop=True), mine["ta"].reset_coords(drop=True)
    )


def test_intake_opens_every_dataset(catalog: Catalog, esm: object) -> None:
    """The whole catalog at once, many files on Dask's threads, values as insitu reads them."""
    opened = esm.to_dataset_dict(progressbar=False)  # type: ignore[attr-defined]
    assert len(opened) == catalog.stats()["demo"].datasets > 70
    for key, ds in opened.items():
        rows = esm[key].df  # type: ignore[index]
        (dataset_id,) = set(rows["dataset_id"])
        (var,) = set(rows["variable_id"])
        mine = catalog.open_dataset(dataset_id)
        theirs = ds[var].squeeze(drop=True).reset_coords(drop=True)
        xr.testing.assert_equal(theirs, mine[var].reset_coords(drop=True))


def test_printed_instructions_run(tmp_path: Path) -> None:
    """What ``insitu catalog export`` prints, copied into a script, run three times as is,
    then the search from the bug report (it crashed the process 3 runs of 3)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {"INSITU_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    export = ["catalog", "export", "demo", "--format", "intake-esm", "--out", str(tmp_path)]
    for args in (["demo"], export):
        out = subprocess.run(
            [*INSITU, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
    printed = out.stdout.split("Open it with:\n", 1)[1]
    lines = [line.removeprefix("    ") for line in printed.splitlines()]
    script = tmp_path / "user.py"
    script.write_text(
        "\n".join(lines)
        + "\nprint('printed search:', len(datasets))"
        + '\nd = cat.search(source_id="MIROC6", table_id="Amon").to_dataset_dict()'
        + "\nprint('MIROC6 Amon:', [dict(v.sizes) for v in d.values()])\n"
    )
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
        assert "printed search: 0" not in run.stdout
        assert "MIROC6 Amon: [{'time': 780, 'plev': 2" in run.stdout, run.stdout

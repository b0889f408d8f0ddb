"""Generate a synthetic ensemble of many small CMIP6 datasets (the small-datasets benchmark).

    python bench/small_ensemble.py                  # 1,000 datasets of one file each
    python bench/small_ensemble.py --datasets 200   # fewer

Writes under ``bench/data/small/<slug>/`` (git-ignored; the slug names the count and shape,
e.g. ``tas-1000x60-32x64``) a CMIP6 tree of ``--datasets`` ``Amon`` ``tas`` datasets, each
one model and member of ``--models`` models (``SYN-000`` ...), one file each::

    CMIP6/CMIP/SIB/SYN-007/historical/r12i1p1f1/Amon/tas/gn/v20200101/
        tas_Amon_SYN-007_historical_r12i1p1f1_gn_200001-200412.nc

Each file is ``bench/_common.py``'s ``write_cmip6_file``: float32 ``tas`` (time, lat, lon)
as CMOR writes it (shuffle, deflate level 1, one record per chunk), ``_FillValue`` 1e20,
lat/lon with bounds, time with bounds in 'days since 1850-01-01'. The models use three
calendars in turn (noleap, 360_day, standard), as real ensembles do; all share one grid.
About 330 kB per file at the defaults (60 records of 32 x 64; the noise compresses
little). Idempotent: a manifest names the parameters; a second run with the same ones
does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import say, write_cmip6_file  # noqa: E402

DEFAULT_DIR = BENCH / "data" / "small"
CALENDARS = ("noleap", "360_day", "standard")
_DAYS = {"noleap": 365.0, "360_day": 360.0, "standard": 365.25}


def slug(datasets: int, records: int, nlat: int, nlon: int) -> str:
    return f"tas-{datasets}x{records}-{nlat}x{nlon}"


def generate(
    root: Path, datasets: int, models: int, records: int, nlat: int, nlon: int
) -> list[Path]:
    """Write the ensemble under ``root`` (skipped if its manifest matches); its files."""
    params = {
        "datasets": datasets,
        "models": models,
        "records": records,
        "nlat": nlat,
        "nlon": nlon,
        "version": 1,
    }
    manifest = root / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("params") == params:
        return [root / p for p in json.loads(manifest.read_text())["files"]]
    files = []
    for i in range(datasets):
        model, member = f"SYN-{i % models:03d}", f"r{i // models + 1}i1p1f1"
        calendar = CALENDARS[i % models % len(CALENDARS)]
        # Mid-month times from 2000-01 in the model's own calendar, counted from 1850.
        start = 150 * _DAYS[calendar]
        times = [start + (k + 0.5) * _DAYS[calendar] / 12 for k in range(records)]
        last = 2000 + (records - 1) // 12
        rel = (
            f"CMIP6/CMIP/SIB/{model}/historical/{member}/Amon/tas/gn/v20200101/"
            f"tas_Amon_{model}_historical_{member}_gn_200001-{last}{(records - 1) % 12 + 1:02d}.nc"
        )
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_cmip6_file(
            tmp,
            model=model,
            member=member,
            times=times,
            calendar=calendar,
            nlat=nlat,
            nlon=nlon,
            seed=i,
            compressed=True,
        )
        os.replace(tmp, path)
        files.append(rel)
        if (i + 1) % 200 == 0:
            say(f"  {i + 1}/{datasets} datasets written")
    manifest.write_text(json.dumps({"params": params, "files": files}))
    return [root / p for p in files]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=int, default=1000, help="datasets (1000)")
    ap.add_argument("--models", type=int, default=50, help="models; members fill the rest (50)")
    ap.add_argument("--records", type=int, default=60, help="monthly records per file (60)")
    ap.add_argument("--grid", default="32x64", help="lat x lon points (32x64)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    a = ap.parse_args(argv)
    nlat, nlon = (int(x) for x in a.grid.split("x"))
    root = a.data_dir / slug(a.datasets, a.records, nlat, nlon)
    files = generate(root, a.datasets, a.models, a.records, nlat, nlon)
    size = sum(f.stat().st_size for f in files)
    say(f"{len(files)} files, {size / 1e6:.1f} MB under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

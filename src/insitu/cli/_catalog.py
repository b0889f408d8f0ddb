"""``insitu catalog ...`` and ``insitu demo``."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from insitu.errors import CollectionExists, InvalidQuery
from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.catalog import Catalog, CollectionStats

__all__ = ["catalog_group", "demo_archive_root", "demo_command", "index_demo"]


def _open(settings: Settings) -> Catalog:
    from insitu.catalog import Catalog

    return Catalog(settings)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


@click.group("catalog")
def catalog_group() -> None:
    """Register archives, scan them, search and export the catalog."""


@catalog_group.command("add")
@click.argument("name")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--template",
    default="cmip6",
    show_default=True,
    help="Path template: cmip6, cmip5, grib or one defined in the settings file.",
)
@click.option("--public", is_flag=True, help="Readable without a token in the data service.")
@click.option("--scan/--no-scan", default=False, help="Scan the collection right away.")
@click.pass_obj
def add(settings: Settings, name: str, root: Path, template: str, public: bool, scan: bool) -> None:
    """Register the archive at ROOT as collection NAME."""
    with _open(settings) as cat:
        coll = cat.add_collection(name, root, template=template, public=public)
        click.echo(f"Added collection {coll.name} ({coll.template}) at {coll.root}.")
        if scan:
            for report in cat.scan([name], progress=sys.stderr.isatty()):
                click.echo(report.line())
        else:
            click.echo(f"Next: insitu catalog scan {name}")


@catalog_group.command("remove")
@click.argument("name")
@click.pass_obj
def remove(settings: Settings, name: str) -> None:
    """Forget collection NAME (its files are not touched)."""
    with _open(settings) as cat:
        cat.remove_collection(name)
        click.echo(f"Removed collection {name} from the catalog.")


@catalog_group.command("public")
@click.argument("name")
@click.option("--off", is_flag=True, help="Make it private again.")
@click.pass_obj
def public_cmd(settings: Settings, name: str, off: bool) -> None:
    """Make collection NAME readable without a token (or, with --off, not)."""
    with _open(settings) as cat:
        cat.set_public(name, not off)
        click.echo(f"Collection {name} is now {'private' if off else 'public'}.")


@catalog_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_cmd(settings: Settings, as_json: bool) -> None:
    """List collections with their counts."""
    with _open(settings) as cat:
        stats = cat.stats()
        colls = cat.collections()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": c.name,
                        "root": c.root,
                        "template": c.template,
                        "public": c.public,
                        **dataclasses.asdict(stats[c.name]),
                    }
                    for c in colls
                ],
                indent=2,
            )
        )
        return
    if not colls:
        click.echo("No collections yet. Add one with: insitu catalog add NAME ROOT")
        return
    rows = [
        [
            c.name,
            c.template,
            str(stats[c.name].datasets),
            str(stats[c.name].files),
            str(stats[c.name].problems),
            _size(stats[c.name].size),
            c.root,
        ]
        for c in colls
    ]
    click.echo(_table(rows, ["name", "template", "datasets", "files", "problems", "size", "root"]))


@catalog_group.command("scan")
@click.argument("names", nargs=-1)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Header-reading processes (default: settings, all cores).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar (default: when stderr is a terminal).",
)
@click.pass_obj
def scan(
    settings: Settings, names: tuple[str, ...], workers: int | None, progress: bool | None
) -> None:
    """Scan collections NAMES (all if none): new files are read, vanished ones dropped."""
    show = sys.stderr.isatty() if progress is None else progress
    with _open(settings) as cat:
        for report in cat.scan(list(names) or None, workers=workers, progress=show):
            click.echo(report.line())
            if report.problems:
                click.echo(f"  see them with: insitu catalog problems {report.collection}")


def _constraints(args: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key or not value:
            raise InvalidQuery(
                f"Search term {arg!r} is not FACET=VALUE. Example: source_id=MIROC6 "
                "variable_id=ta,tas (a comma gives several values; * and ? are wildcards)."
            )
        out.setdefault(key.strip(), []).extend(v.strip() for v in value.split(",") if v.strip())
    return out


@catalog_group.command("search")
@click.argument("terms", nargs=-1)
@click.option(
    "-q",
    "--text",
    default=None,
    help="Free text: words (or their beginnings) in ids, variable names, attributes.",
)
@click.option(
    "--time",
    "time_range",
    default=None,
    metavar="START/END",
    help="Overlap with a time range, e.g. 1990/1999-06 (either side may be empty).",
)
@click.option("--bbox", default=None, metavar="W,S,E,N", help="Overlap with a lon/lat box.")
@click.option("--collection", default=None, help="Only this collection.")
@click.option("--all-versions", is_flag=True, help="Include datasets that are not the latest.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--sort",
    default="dataset_id",
    show_default=True,
    help="dataset_id, version, size, n_files, time_start or time_end; '-' descends.",
)
@click.option("--facets", "show_facets", is_flag=True, help="Print facet value counts too.")
@click.option("--json", "as_json", is_flag=True, help='Print {"total": N, "results": [...]}.')
@click.pass_obj
def search(
    settings: Settings,
    terms: tuple[str, ...],
    text: str | None,
    time_range: str | None,
    bbox: str | None,
    collection: str | None,
    all_versions: bool,
    limit: int,
    offset: int,
    sort: str,
    show_facets: bool,
    as_json: bool,
) -> None:
    """Search datasets: TERMS are FACET=VALUE (e.g. source_id=MIROC6 variable_id=ta)."""
    time = None
    if time_range is not None:
        start, sep, end = time_range.partition("/")
        if not sep:
            start, end = time_range, time_range
        time = (start or None, end or None)
    with _open(settings) as cat:
        result = cat.search(
            text,
            time=time,
            bbox=bbox,
            collection=collection,
            latest=not all_versions,
            limit=limit,
            offset=offset,
            sort=sort,
            **_constraints(terms),
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    rows = [
        [
            r.dataset_id,
            str(r.n_files),
            _size(r.size),
            f"{(r.time_start or '')[:10]} .. {(r.time_end or '')[:10]}" if r.time_start else "-",
        ]
        for r in result
    ]
    if rows:
        click.echo(_table(rows, ["dataset", "files", "size", "time"]))
    shown = f"{offset + 1}-{offset + len(rows)}" if rows else "none"
    click.echo(f"{result.total} datasets match; showing {shown}.")
    if show_facets:
        for facet, counts in result.facet_counts.items():
            values = ", ".join(f"{v} ({n})" for v, n in list(counts.items())[:15])
            more = f", ... {len(counts) - 15} more" if len(counts) > 15 else ""
            click.echo(f"  {facet}: {values}{more}")


@catalog_group.command("show")
@click.argument("dataset_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(settings: Settings, dataset_id: str, as_json: bool) -> None:
    """Show one dataset: facets, variables, time coverage and files."""
    with _open(settings) as cat:
        record = cat.dataset(dataset_id)
        files = cat.files(dataset_id)
    data: dict[str, Any] = record.summary()
    data["files"] = [
        {"path": f.path, "size": f.size, "time_start": f.time_start, "time_end": f.time_end}
        for f in files
    ]
    data["variables"] = [
        {
            "name": v.name,
            "dims": list(v.dims),
            "units": v.attrs.get("units"),
            "long_name": v.attrs.get("long_name"),
        }
        for v in record.variables
    ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{record.dataset_id}  ({'latest' if record.latest else 'not latest'})")
    for k, v in data["facets"].items():
        click.echo(f"  {k}: {v}")
    click.echo(f"  time: {record.time_start} .. {record.time_end} ({record.calendar})")
    click.echo("  variables:")
    for v in data["variables"]:
        click.echo(
            f"    {v['name']}({', '.join(v['dims'])}) [{v['units'] or ''}] "
            f"{v['long_name'] or ''}".rstrip()
        )
    click.echo(f"  files ({len(files)}, {_size(record.size)}):")
    for f in files:
        click.echo(f"    {f.path}")


@catalog_group.command("problems")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def problems(settings: Settings, name: str | None, as_json: bool) -> None:
    """List files that could not be indexed (or were, with a warning), with reasons."""
    with _open(settings) as cat:
        found = cat.problems(name)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "collection": f.collection,
                        "path": f.path,
                        "status": f.status.value,
                        "reason": f.reason,
                    }
                    for f in found
                ],
                indent=2,
            )
        )
        return
    errors = [f for f in found if not f.ok]
    notes = [f for f in found if f.ok]
    for f in errors:
        click.echo(f"{f.status.value:<13} {f.collection}/{f.path}\n              {f.reason}")
    if notes:
        click.echo(
            f"{len(notes)} files indexed with a note (e.g. {notes[0].path}: "
            f"{notes[0].reason}); --json lists them all."
        )
    click.echo(f"{len(errors)} problems.")


@catalog_group.command("export")
@click.argument("name")
@click.option(
    "--format", "fmt", type=click.Choice(["intake-esm"]), default="intake-esm", show_default=True
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write into.",
)
@click.option("--all-versions", is_flag=True, help="List every version, not only the latest.")
@click.pass_obj
def export(settings: Settings, name: str, fmt: str, out_dir: Path, all_versions: bool) -> None:
    """Export collection NAME as an intake-esm catalog (JSON + CSV + kerchunk references).

    Its assets are Zarr views of the files (kerchunk references), so intake-esm opens them
    on Dask's threads with its defaults; netCDF-C is not thread-safe.
    """
    with _open(settings) as cat:
        path = cat.export_intake_esm(name, out_dir, latest=not all_versions)
    click.echo(f"Wrote {path}, {path.with_suffix('.csv')} and {path.stem}.references/.")
    with path.with_suffix(".csv").open(newline="") as fh:
        first = next(csv.DictReader(fh), None)
    variable = json.loads(path.read_text())["aggregation_control"]["variable_column_name"]
    search = f"{variable}={first[variable]!r}" if first else ""
    click.echo(
        "Open it with:\n"
        "    import intake\n"
        f"    cat = intake.open_esm_datastore({str(path)!r})\n"
        f"    datasets = cat.search({search}).to_dataset_dict()"
    )


def demo_archive_root() -> Path:
    """Root of the CMIP6 sample archive shipped by ``esmvaltool-sample-data``.

    Found without importing the package, whose ``__init__`` imports iris.
    """
    spec = importlib.util.find_spec("esmvaltool_sample_data")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidQuery(
            "The demo archive package is not installed. Run: pip install 'insitu[demo]' "
            "(or 'make up', which does it)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "timeseries"


def index_demo(settings: Settings, name: str = "demo") -> CollectionStats:
    """Add (or move) the demo collection and scan it; its counts."""
    root = demo_archive_root()
    with _open(settings) as cat:
        try:
            cat.add_collection(name, root, template="cmip6", public=True)
            click.echo(f"Added collection {name} at {root}.")
        except CollectionExists:
            old = cat.collection(name).root
            if Path(old) != root.resolve():  # another installation's copy, maybe deleted
                cat.remove_collection(name)
                cat.add_collection(name, root, template="cmip6", public=True)
                click.echo(f"Moved collection {name} from {old} to {root}.")
        for report in cat.scan([name], progress=sys.stderr.isatty()):
            click.echo(report.line())
        return cat.stats()[name]


@click.command("demo")
@click.option("--name", default="demo", show_default=True, help="Collection name.")
@click.pass_obj
def demo_command(settings: Settings, name: str) -> None:
    """Index the CMIP6 demo archive and print what to try next."""
    stats = index_demo(settings, name)
    url = settings.service_url
    click.echo(f"""
The demo archive is indexed: {stats.datasets} datasets in {stats.files} files ({_size(stats.size)}),
catalog at {settings.catalog_uri}.

Try:
  insitu catalog list
  insitu catalog search source_id=MIROC6 variable_id=ta
  insitu catalog search table_id=Amon --time 2000/2005 --facets
  insitu catalog search model='CESM2*' --json
  insitu catalog show CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311
  insitu catalog export {name} --out /tmp/{name}-intake
  insitu compute field_mean --search table_id=Amon --out /tmp/{name}-global-mean.nc

In Python:
  import insitu
  cat = insitu.Catalog()
  ds = cat.search(model="MIROC6", table_id="Amon").to_xarray()

The web catalog and HTTP API ('make up' starts them; or 'insitu serve'):
  {url}/  (search, facets, dataset pages with quicklooks)
  {url}/api/v1/docs  (the API: search, Zarr view, subsets, jobs)
  insitu token create alice --scope read --scope compute   # a token for private collections

From a notebook anywhere (plain xarray over the Zarr view of a dataset):
  import fsspec, xarray as xr
  ds_id = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
  ds = xr.open_zarr(fsspec.get_mapper(f"{url}/api/v1/zarr/{{ds_id}}"), consolidated=True)
""")

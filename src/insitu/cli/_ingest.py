"""``insitu ingest ...``: run or watch a pipeline, reprocess after a calibration change, see
its state, look at and retry its quarantine, the lab demo, and the calibration definitions
and configuration snapshots of the catalog database (``calibration``, ``configuration``).

Exit codes: 0 when every file was ingested (or was a duplicate), 1 when something was
quarantined (the other files are ingested all the same) or could not be reprocessed, 2 for
a usage or settings error. ``watch`` exits 0 when stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.ingest import Outcome, Pipeline, Registry

__all__ = ["ingest_group"]


def _pipeline(settings: Settings, name: str) -> Pipeline:
    from insitu.ingest import Pipeline

    return Pipeline(name, settings)


def _line(o: Outcome) -> str:
    what = f"{o.state} {o.code}: {o.message}" if o.code else o.state
    return f"{o.name}  {o.sha256[:12]}  {what}"


@click.group("ingest")
def ingest_group() -> None:
    """Raw instrument files to calibrated, versioned products in the catalog."""


@ingest_group.command("run")
@click.argument("pipeline")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@click.pass_obj
def run_command(settings: Settings, pipeline: str, progress: bool | None) -> None:
    """Ingest what is complete in PIPELINE's inbox, then register the products."""
    from tqdm import tqdm

    with _pipeline(settings, pipeline) as p:
        waiting = len(p.pending())
        shown = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=waiting, unit="file", disable=not shown, desc=pipeline) as bar:

            def step(o: Outcome) -> None:
                bar.update(1)
                if o.state == "quarantined":
                    bar.write(_line(o), file=sys.stderr)

            report = p.run(progress=step)
    for o in report.outcomes:
        click.echo(_line(o))
    click.echo(
        f"{pipeline}: {report.count('ingested')} ingested, "
        f"{report.count('duplicate-ignored')} duplicate, {report.count('quarantined')} "
        "quarantined"
    )
    if not report.ok:
        click.secho(
            f"Some files were quarantined: 'insitu ingest quarantine {pipeline}' shows why.",
            fg="red",
            err=True,
        )
        sys.exit(1)


@ingest_group.command("status")
@click.argument("pipeline")
@click.pass_obj
def status_command(settings: Settings, pipeline: str) -> None:
    """Counts per state, files waiting in the inbox, quarantined items (JSON)."""
    with _pipeline(settings, pipeline) as p:
        click.echo(json.dumps(p.status(), indent=2))


@ingest_group.command("quarantine")
@click.argument("pipeline")
@click.argument("sha256", required=False)
@click.pass_obj
def quarantine_command(settings: Settings, pipeline: str, sha256: str | None) -> None:
    """List quarantined items, or print the report of one (SHA256, or its prefix)."""
    with _pipeline(settings, pipeline) as p:
        if sha256:
            click.echo(json.dumps(p.store.report(sha256), indent=2))
            return
        for item in p.store.items("quarantined"):
            report = p.store.report(item.sha256)
            click.echo(f"{item.sha256}  {item.name}  {item.code}  {report['suggested_action']}")


@ingest_group.command("retry")
@click.argument("pipeline")
@click.argument("sha256")
@click.pass_obj
def retry_command(settings: Settings, pipeline: str, sha256: str) -> None:
    """Ingest quarantined item SHA256 again, once its problem is fixed."""
    with _pipeline(settings, pipeline) as p:
        outcome = p.retry(sha256)
    click.echo(_line(outcome))
    if outcome.state == "quarantined":
        sys.exit(1)


@ingest_group.command("watch")
@click.argument("pipeline")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=None,
    help="Seconds between looks at the inbox (default: stable_seconds/4, at most 1).",
)
@click.pass_obj
def watch_command(settings: Settings, pipeline: str, interval: float | None) -> None:
    """Keep ingesting PIPELINE's files as they become complete, until SIGINT or SIGTERM.

    A file is taken once its manifest exists or it has not changed for stable_seconds.
    On a signal the file being processed is finished and registered, then the watch
    exits 0; a second signal abandons it (its raw copy is kept and the next run or watch
    resumes it; nothing partial is visible).
    """
    from insitu.ingest import poll_interval

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    with _pipeline(settings, pipeline) as p:
        every = interval or poll_interval(p.spec.stable_seconds)
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            click.echo(
                f"{pipeline}: watching {p.inbox} (complete with a manifest or after "
                f"{p.spec.stable_seconds:g} s unchanged; looking every {every:g} s). "
                "SIGINT or SIGTERM stops."
            )
            report = p.watch(stop, progress=lambda o: click.echo(_line(o)), interval=every)
        except KeyboardInterrupt:
            click.secho(
                f"{pipeline}: stopped in the middle of a file; the next run resumes it.",
                err=True,
            )
            sys.exit(130)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo(
        f"{pipeline}: stopped; {report.count('ingested')} ingested, "
        f"{report.count('duplicate-ignored')} duplicate, {report.count('quarantined')} "
        "quarantined"
    )


@ingest_group.command("reprocess")
@click.argument("pipeline")
@click.option(
    "--calibration",
    "calibration",
    metavar="ID@VERSION",
    default=None,
    help="Only shots acquired in this calibration's validity with a signal it calibrates "
    "(default: every shot whose calibrations or configuration changed).",
)
@click.pass_obj
def reprocess_command(settings: Settings, pipeline: str, calibration: str | None) -> None:
    """Write a new version of the shots a calibration change affects; the catalog's latest
    version moves to it and the old version stays readable. Running it again does nothing.
    """
    with _pipeline(settings, pipeline) as p:
        report = p.reprocess(calibration)
    for o in report.outcomes:
        if o.state != "unchanged":
            click.echo(_line(o))
    click.echo(
        f"{pipeline}: {report.count('reprocessed')} reprocessed, "
        f"{report.count('unchanged')} unchanged, {report.count('failed')} failed"
    )
    if not report.ok:
        sys.exit(1)


@ingest_group.command("demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Set up the lab demo in the data directory (raw TDMS shots and a CSV log,
    calibrations, a configuration snapshot), ingest it as the collection 'lab-demo'.
    Running it again does nothing new."""
    from insitu.ingest import run_demo

    report = run_demo(settings)
    for o in report.outcomes:
        click.echo(_line(o))
    click.echo(f"""
The lab demo is ingested: {report.products} products in the collection 'lab-demo' \
({report.new} new) in {report.seconds:.1f} s.
Lab folder: {report.lab} (inbox/, calibrations.yaml, configurations.json, pipelines.toml)

Try:
  insitu catalog search --collection lab-demo
  insitu catalog search --collection lab-demo shot_id=3002
  python -c "import insitu; print(insitu.open_dataset('3002.v1'))"

Its pipelines are defined in the pipelines folder (ingest.pipelines_dir, by default
DATA_DIR/pipelines) or your settings file; to run them yourself:
  insitu ingest watch lab-demo      # drop .tdms files (with a manifest) into the inbox
  insitu ingest reprocess lab-demo  # after editing calibrations.yaml
""")
    if not report.ok:
        sys.exit(1)


def _registry(settings: Settings) -> Registry:
    from insitu.ingest import Registry

    return Registry(settings.catalog_uri, "")


@ingest_group.group("calibration")
def calibration_group() -> None:
    """Calibration definitions in the catalog database (versioned, checked when added)."""


@calibration_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def calibration_add(settings: Settings, file: str) -> None:
    """Store the definitions of FILE (YAML, one document each), all or none.

    Each is checked (kind, finite coefficients, a lookup table's x strictly increasing,
    units that parse and convert), then with what is stored: the active definitions of a
    signal may neither overlap nor leave a gap, a stored version never changes, versions
    increase. A refused file stores nothing.
    """
    from insitu.ingest import add_calibrations

    registry = _registry(settings)
    try:
        done = add_calibrations(registry, file)
    finally:
        registry.close()
    for c, state in done:
        click.echo(f"{state:9}  {c.id}@{c.version}  {c.sha256[:12]}")


@calibration_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON, one object per definition.")
@click.pass_obj
def calibration_list(settings: Settings, as_json: bool) -> None:
    """Stored definitions: id@version, signal, kind, validity, superseded or active."""
    from insitu.ingest import calibration_rows

    registry = _registry(settings)
    try:
        rows = calibration_rows(registry)
    finally:
        registry.close()
    superseded = {(r["id"], r["supersedes"]) for r in rows if r["supersedes"] is not None}
    out = [
        {
            "id": r["id"],
            "version": r["version"],
            "signal": r["signal"],
            "kind": r["kind"],
            "valid_from": r["valid_from"],
            "valid_to": r["valid_to"],
            "active": (r["id"], r["version"]) not in superseded,
            "sha256": r["sha256"],
            "author": r["author"],
            "source": r["source"] or "cli",
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("No calibrations yet: 'insitu ingest calibration add FILE.yaml' adds them.")
    for r in out:
        state = "active" if r["active"] else "superseded"
        click.echo(
            f"{r['id']}@{r['version']}  {r['kind']:10}  [{r['valid_from']}, "
            f"{r['valid_to'] or 'open'})  {state}  {r['sha256'][:12]}  {r['source']}"
        )


@calibration_group.command("show")
@click.argument("ref", metavar="ID[@VERSION]")
@click.pass_obj
def calibration_show(settings: Settings, ref: str) -> None:
    """The stored document of definition ID at VERSION (default: its newest), as JSON."""
    from insitu.errors import InvalidRequest, NotFound
    from insitu.ingest import calibration_rows

    cal_id, _, version = ref.partition("@") if "@" in ref else (ref, "", "")
    if version and not version.isdigit():
        raise InvalidRequest(f"{ref!r}: the version after '@' is not a whole number (ID@3).")
    registry = _registry(settings)
    try:
        rows = calibration_rows(registry, cal_id)
    finally:
        registry.close()
    if version:
        rows = [r for r in rows if r["version"] == int(version)]
    if not rows:
        raise NotFound(
            f"No calibration {ref!r} in the catalog database; 'insitu ingest calibration "
            "list' shows them."
        )
    r = rows[-1]
    meta = {k: r[k] for k in ("sha256", "author", "source")}
    meta["created"] = r["created"].isoformat() if r["created"] else None
    click.echo(json.dumps({**json.loads(r["document"]), "_stored": meta}, indent=2))


@ingest_group.group("configuration")
def configuration_group() -> None:
    """Configuration snapshots in the catalog database (identified by their hash)."""


@configuration_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--valid-from", default=None, metavar="TIME", help="UTC, ISO 8601.")
@click.option("--valid-to", default=None, metavar="TIME", help="UTC (default: open-ended).")
@click.option("--shots", default=None, metavar="A-B", help="Instead: shots A to B.")
@click.option("--testbed", default=None, help="Default: the tree's 'testbed' value.")
@click.option("--author", default=None)
@click.pass_obj
def configuration_add(
    settings: Settings,
    file: str,
    valid_from: str | None,
    valid_to: str | None,
    shots: str | None,
    testbed: str | None,
    author: str | None,
) -> None:
    """Store the snapshot tree of FILE (JSON or YAML: testbed -> subsystems ->
    diagnostics), valid in [--valid-from, --valid-to) or for --shots A-B. Its id is the
    sha256 of its canonical JSON. An open-ended snapshot of the same testbed that starts
    earlier is ended where this one starts; another overlap is refused."""
    from insitu.ingest import add_configuration

    registry = _registry(settings)
    try:
        snap, state, ended = add_configuration(
            registry,
            file,
            valid_from=valid_from,
            valid_to=valid_to,
            shots=shots,
            testbed=testbed,
            author=author,
        )
    finally:
        registry.close()
    for other in ended:
        click.echo(f"ended      {other.configuration_id[:12]} at {valid_from}")
    click.echo(f"{state:9}  {snap.configuration_id}  {snap.validity()}")


@configuration_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON, one object per validity.")
@click.pass_obj
def configuration_list(settings: Settings, as_json: bool) -> None:
    """Stored snapshots: id, testbed, validity, components present."""
    from insitu.ingest import snapshots

    registry = _registry(settings)
    try:
        found = snapshots(registry)
    finally:
        registry.close()
    if as_json:
        out = [s.to_json() for s in found]
        for o in out:
            del o["tree"]
        click.echo(json.dumps(out, indent=2))
        return
    if not found:
        click.echo("No configuration snapshots yet: 'insitu ingest configuration add' adds them.")
    for s in found:
        parts = ", ".join(s.to_json()["components"])
        click.echo(f"{s.configuration_id[:12]}  {s.testbed or '-'}  {s.validity()}  {parts}")


@configuration_group.command("show")
@click.argument("ref", metavar="ID")
@click.pass_obj
def configuration_show(settings: Settings, ref: str) -> None:
    """Snapshot ID (or a unique prefix): its tree and validities, as JSON."""
    from insitu.ingest import one_snapshot

    registry = _registry(settings)
    try:
        found = one_snapshot(registry, ref)
    finally:
        registry.close()
    out = found[0].to_json()
    out["validity"] = [
        {k: v for k, v in s.to_json().items() if k in ("valid_from", "valid_to", "shots")}
        for s in found
    ]
    for key in ("valid_from", "valid_to", "shots"):
        del out[key]
    click.echo(json.dumps(out, indent=2))

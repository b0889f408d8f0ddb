"""``insitu ingest watch`` as a real process: files are taken only once complete (a manifest,
or unchanged for stable_seconds), their calibrated products reach the catalog within a
bounded latency, and SIGTERM stops it cleanly (the file being processed is finished)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

from insitu.catalog import Catalog
from insitu.settings import Settings
from tests.integration.test_ingest_pipeline import (
    GROUP,
    _env,
    make_lab,
    make_settings,
    write_shot,
)

STABLE = 2.0  # stable_seconds of the watched pipeline: polled every 0.5 s


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    return make_lab(tmp_path)


class Watcher:
    """``insitu ingest watch lab`` in a subprocess, its output lines in a queue."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "insitu.cli", "ingest", "watch", "lab"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.output)
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout} s: {''.join(self.output)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watcher(lab: dict[str, Path]) -> Iterator[tuple[Watcher, Settings]]:
    settings = make_settings(lab, stable_seconds=STABLE)
    w = Watcher({**os.environ, **_env(lab, settings)})
    try:
        w.wait_for("watching")
        yield w, settings
    finally:
        w.stop()


def registered(settings: Settings, shot: str, timeout: float = 60) -> tuple[float, Any]:
    """When (time.time()) shot ``shot`` is found in the catalog, and its dataset."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Catalog(settings) as catalog:
            try:
                found = catalog.search(collection="lab", shot_id=shot)
            except LookupError:  # the collection is not there yet
                found = None
            if found is not None and found.total:
                return time.time(), catalog.open_dataset(found.results[0].dataset_id).load()
        time.sleep(0.05)
    raise AssertionError(f"shot {shot} not registered within {timeout} s")


def calibrated(raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The test pipeline's calibrations, written out independently."""
    x = raw["Lang_I"]
    v = np.clip(raw["Coil_B"], -10, 10)
    return 0.5 + 0.02 * x + 0.001 * x * x, np.where(v < 0, v * 0.2, v * 0.3)


def write_slowly(path: Path, shot: str, pieces: int, n: int, pause: float) -> dict[str, Any]:
    """A TDMS shot written as an acquisition does: a segment of ``n`` samples per channel
    every ``pause`` seconds. Checks the file is still in the inbox before each append."""
    rng = np.random.default_rng(5)
    values = {"Lang_I": rng.normal(0, 3, n * pieces), "Coil_B": rng.uniform(-12, 12, n * pieces)}
    wf = {"wf_increment": 1e-6, "wf_start_offset": 0.0, "unit_string": "V"}
    root = {"shot_id": shot, "acquired_at": "2026-03-02T12:00:00Z", "operator": "carol"}
    for i in range(pieces):
        if i:
            time.sleep(pause)
            assert path.exists(), f"taken while still growing (after {i} of {pieces} pieces)"
        part = slice(i * n, (i + 1) * n)
        with TdmsWriter(str(path), mode="a" if i else "w") as writer:
            objects: list[Any] = [RootObject(root), GroupObject(GROUP)] if i == 0 else []
            writer.write_segment(
                objects
                + [
                    ChannelObject(GROUP, k, v[part], properties=wf if i == 0 else {})
                    for k, v in values.items()
                ]
            )
    return {"values": values, "mtime": path.stat().st_mtime}


def test_watch_takes_complete_files_and_stops_on_sigterm(
    watcher: tuple[Watcher, Settings], lab: dict[str, Path]
) -> None:
    w, settings = watcher
    inbox = lab["inbox"]

    # With a manifest: its mtime is in the future, so only the manifest can make it complete.
    path = inbox / "m.tdms"
    manifest = inbox / "m.tdms.manifest.json"
    raw_m = write_shot(path, "1001", manifest=True)
    manifest.rename(inbox / "held")  # the writer has not finished yet
    os.utime(path, (time.time() + 3600, time.time() + 3600))
    time.sleep(3 * STABLE / 4)
    assert path.exists()  # not complete: no manifest, never stable
    (inbox / "held").rename(manifest)
    manifest_at = time.time()
    seen_m, ds_m = registered(settings, "1001")
    want_i, want_b = calibrated(raw_m)
    assert np.allclose(ds_m["langmuir_current"].values, want_i, rtol=1e-12, atol=1e-12)
    assert np.allclose(ds_m["coil_field"].values, want_b, rtol=1e-12, atol=1e-12)

    # Growing for 3 s in 11 pieces, each less than stable_seconds after the last.
    grown = write_slowly(inbox / "g.tdms", "1002", pieces=11, n=20_000, pause=0.3)
    stable_at = grown["mtime"] + STABLE
    seen_g, ds_g = registered(settings, "1002")
    assert seen_g >= stable_at - 0.05  # not before it was stable
    want_i, want_b = calibrated(grown["values"])
    assert ds_g["langmuir_current"].shape == (220_000,)  # every piece, not the first ones
    assert np.allclose(ds_g["langmuir_current"].values, want_i, rtol=1e-12, atol=1e-12)
    assert np.allclose(ds_g["coil_field"].values, want_b, rtol=1e-12, atol=1e-12)
    assert not any(inbox.iterdir())

    latency_m, latency_g = seen_m - manifest_at, seen_g - stable_at
    print(
        f"\ndetection latency (complete -> product registered): manifest {latency_m:.2f} s, "
        f"size/mtime stable {latency_g:.2f} s (stable_seconds={STABLE:g}, poll {STABLE / 4:g} s)"
    )
    assert latency_m <= 5 and latency_g <= 5  # spec 5.7: <= stable_seconds + 5 s

    sent = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=15) == 0, "".join(w.output)
    took = time.monotonic() - sent
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took < 5
    assert "2 ingested" in "".join(w.output)


def test_sigterm_while_processing_finishes_the_file_first(
    watcher: tuple[Watcher, Settings], lab: dict[str, Path]
) -> None:
    w, settings = watcher
    write_shot(lab["inbox"] / "big.tdms", "1003", n=2_000_000, manifest=True)
    tmp = settings.data_dir / "ingest/lab/tmp"
    deadline = time.monotonic() + 60
    while not (tmp.is_dir() and any(tmp.iterdir())):  # writing its product
        assert time.monotonic() < deadline and w.proc.poll() is None, "".join(w.output)
        time.sleep(0.002)
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=60) == 0, "".join(w.output)
    assert not any(tmp.iterdir())  # no partial product left
    assert not any(lab["inbox"].iterdir())
    with Catalog(settings) as catalog:  # finished and registered before it stopped
        found = catalog.search(collection="lab", shot_id="1003")
        assert found.total == 1
        ds = catalog.open_dataset(found.results[0].dataset_id)
        assert ds["langmuir_current"].shape == (2_000_000,)

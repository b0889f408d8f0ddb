"""The TDMS reader's direct reads (``preadv`` of the runs of a contiguously stored channel)
give exactly npTDMS's raw values, across segment and chunk boundaries, for channels absent
from some segments and segments of several chunks; other layouts are read by npTDMS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nptdms import ChannelObject, GroupObject, RootObject, TdmsFile, TdmsWriter

from insitu.formats import TdmsReader


def _write(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    parts: dict[str, list[np.ndarray]] = {"f": [], "i": [], "u": [], "s": []}
    with TdmsWriter(str(path)) as writer:
        for k, n in enumerate((1000, 2500, 7, 4000)):
            f = rng.normal(0, 1, n)
            i = rng.integers(-30000, 30000, n, dtype=np.int16)
            objects: list[Any] = (
                [RootObject({"shot_id": "1"}), GroupObject("DAQ")] if k == 0 else []
            )
            objects += [ChannelObject("DAQ", "f", f), ChannelObject("DAQ", "i", i)]
            parts["f"].append(f)
            parts["i"].append(i)
            if k != 1:  # a channel missing from one segment
                u = rng.integers(0, 2**31, n // 2 + 1, dtype=np.uint32)
                objects.append(ChannelObject("DAQ", "u", u))
                parts["u"].append(u)
            if k < 2:
                s = np.array([f"v{j}" for j in range(3)])
                objects.append(ChannelObject("DAQ", "s", s))
                parts["s"].append(s)
            writer.write_segment(objects)
    return {k: np.concatenate(v) for k, v in parts.items()}


@pytest.fixture
def shot(tmp_path: Path) -> tuple[str, dict[str, np.ndarray]]:
    path = tmp_path / "shot.tdms"
    return str(path), _write(path)


def test_direct_reads_equal_nptdms_s(shot: tuple[str, dict[str, np.ndarray]]) -> None:
    path, want = shot
    rng = np.random.default_rng(0)
    with TdmsReader().open_channels(path) as cf, TdmsFile.open(path) as tdms:
        for name in ("f", "i", "u"):
            ch = cf.channels[name]
            assert ch.read_flat.__qualname__.startswith("_direct_reader"), name
            lib = tdms["DAQ"][name]
            n = len(want[name])
            ranges = [(0, n), (0, 1), (n - 1, n), (999, 1001), (3490, 3510), (5, n + 10)]
            ranges += [tuple(sorted(rng.integers(0, n, 2))) for _ in range(30)]
            for lo, hi in ranges:
                got = ch.read_flat(int(lo), int(hi))
                expected = lib.read_data(int(lo), max(0, min(hi, n) - lo), scaled=False)
                assert got.dtype == expected.dtype == want[name].dtype, name
                assert np.array_equal(got, expected), (name, lo, hi)
                assert np.array_equal(got, want[name][lo:hi]), (name, lo, hi)
        # strings are read by npTDMS
        assert not cf.channels["s"].read_flat.__qualname__.startswith("_direct_reader")
        assert list(cf.channels["s"].read_flat(0, 6)) == list(want["s"])


def test_a_file_cut_after_opening_is_incomplete(shot: tuple[str, dict[str, np.ndarray]]) -> None:
    from insitu.errors import IncompleteFile

    path, want = shot
    with TdmsReader().open_channels(path) as cf:
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        with pytest.raises(IncompleteFile):
            cf.channels["f"].read_flat(0, len(want["f"]))

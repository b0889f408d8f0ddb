"""The TDMS and CSV readers pass the format reader contract, on files written here (TDMS by
npTDMS's TdmsWriter), and say so when a file is cut short or is not what it claims."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter, types

from insitu import formats
from insitu.errors import DataError, IncompleteFile
from insitu.formats import (
    CsvDialect,
    CsvReader,
    TdmsReader,
)
from insitu.testing import FormatReaderTests
from insitu.testing.format_reader import SAMPLE

_PACKING = ("scale_factor", "add_offset")


def _layout(name: str) -> dict[str, Any]:
    var = SAMPLE.variables[name]
    props: dict[str, Any] = {
        "insitu_dims": " ".join(var.dims),
        "insitu_shape": " ".join(str(n) for n in var.values.shape),
    }
    typed = {k: "float32" for k in var.attrs if k in _PACKING}
    if typed:
        props["insitu_types"] = json.dumps(typed)
    return props


def write_tdms_sample(path: Path) -> str:
    """SAMPLE as a TDMS file: one group, one channel per variable."""
    objects: list[Any] = [RootObject(dict(SAMPLE.attrs)), GroupObject("sample")]
    for name, var in SAMPLE.variables.items():
        props: dict[str, Any] = {**var.attrs, **_layout(name)}
        for key in _PACKING:
            if key in props:
                props[key] = types.SingleFloat(props[key])
        objects.append(ChannelObject("sample", name, var.values.ravel(), properties=props))
    with TdmsWriter(str(path)) as writer:
        writer.write_segment(objects)
    return str(path)


def write_csv_sample(path: Path) -> str:
    """SAMPLE as an annotated CSV file: one column per variable, shorter ones end early."""
    lines = [f"# :{k} = {json.dumps(v)}" for k, v in SAMPLE.attrs.items()]
    columns = []
    for name, var in SAMPLE.variables.items():
        props = {**var.attrs, **_layout(name), "insitu_dtype": var.values.dtype.name}
        lines += [f"# {name}:{k} = {json.dumps(v)}" for k, v in props.items()]
        columns.append([str(v) for v in var.values.ravel()])
    lines.append(",".join(SAMPLE.variables))
    for i in range(max(len(c) for c in columns)):
        lines.append(",".join(c[i] if i < len(c) else "" for c in columns))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class TestTdmsReader(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> TdmsReader:
        return TdmsReader()

    @pytest.fixture
    def sample(self, tmp_path: Path) -> str:
        return write_tdms_sample(tmp_path / "sample.tdms")


class TestCsvReader(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> CsvReader:
        return CsvReader()

    @pytest.fixture
    def sample(self, tmp_path: Path) -> str:
        return write_csv_sample(tmp_path / "sample.csv")


def _shot(path: Path, n: int = 1000) -> str:
    with TdmsWriter(str(path)) as writer:
        writer.write_segment(
            [
                RootObject({"shot_id": "1"}),
                GroupObject("DAQ"),
                ChannelObject("DAQ", "a", np.arange(n, dtype="f8")),
                ChannelObject(
                    "DAQ", "b", np.arange(n, dtype="i2"), {"NI_Scale[0]_Linear_Slope": 2.0}
                ),
            ]
        )
    return str(path)


def test_tdms_values_are_raw_and_ni_scaling_stays_an_attribute(tmp_path: Path) -> None:
    path = _shot(tmp_path / "s.tdms")
    reader = TdmsReader()
    assert np.array_equal(reader.read(path, "b"), np.arange(1000, dtype="i2"))
    with reader.header(path) as header:
        b = next(v for v in header.variables if v.name == "b")
        assert b.attrs["NI_Scale[0]_Linear_Slope"] == 2.0
        assert header.dims == {"DAQ": 1000}


def test_a_truncated_tdms_file_is_incomplete_not_shorter(tmp_path: Path) -> None:
    path = Path(_shot(tmp_path / "s.tdms"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IncompleteFile, match="incomplete"):
        TdmsReader().read(str(path), "b")


def test_an_empty_or_foreign_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "e.tdms"
    empty.write_bytes(b"")
    with pytest.raises(IncompleteFile):
        TdmsReader().read(str(empty), "a")
    foreign = tmp_path / "f.tdms"
    foreign.write_bytes(b"hello, this is no TDMS file")
    with pytest.raises(DataError, match="not a TDMS"):
        TdmsReader().read(str(foreign), "a")


def test_csv_dialect_decimal_comma_and_units_row(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("logger v2\nt;p\ns;mbar\n0,0;1013,25\n0,5;1012,75\n")
    reader = CsvReader(CsvDialect(delimiter=";", decimal=",", skip_rows=1, units_row=True))
    assert np.array_equal(reader.read(str(path), "p"), [1013.25, 1012.75])
    with reader.header(str(path)) as header:
        assert [v.attrs["units"] for v in header.variables] == ["s", "mbar"]
    assert formats.reader_for(str(path)).name == "csv"


def test_csv_that_does_not_fit_its_dialect_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("t;p\n0,0;1013,25\n")
    with pytest.raises(DataError, match="line 2"):
        CsvReader().read(str(path), "t;p")

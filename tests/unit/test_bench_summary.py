"""The table `make bench` ends with (bench/summary.py): every target met, not met, or not run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_summary", BENCH / "summary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def _write(folder: Path, step: str, record: dict[str, object]) -> None:
    record = {"step": step, "finished": "2026-12-05T05:00:00", "load_before": 1.0, **record}
    (folder / f"{step}.json").write_text(json.dumps(record))


def _service(search_p95: float, chunk_p95: float, errors: dict[str, int]) -> dict[str, object]:
    load = {
        "search": {"p95": search_p95, "per_s": 400.0},
        "chunk": {"p95": chunk_p95, "per_s": 2000.0},
        "errors": errors,
    }
    return {"benchmark": "service", "results": {"load": load}}


def _row(rows: list[tuple[str, str, str, str, str]], text: str) -> tuple[str, str, str, str, str]:
    (row,) = [r for r in rows if r[1] == text]
    return row


def test_each_target_is_met_not_met_or_not_run(tmp_path: Path) -> None:
    summary = _summary()
    _write(tmp_path, "service_uncached", {"result": _service(77.0, 16.0, {})})
    _write(tmp_path, "service", {"result": _service(30.0, 120.0, {"chunk 500": 2})})
    rows = summary.rows(summary.load(tmp_path))

    search = _row(rows, "service, uncached searches: search p95 < 50 ms")
    assert (search[2], search[3]) == ("77.0 ms (400 requests/s)", "NOT MET")
    assert _row(rows, "service, uncached searches: chunk p95 < 100 ms")[3] == "met"
    assert _row(rows, "50 clients, repeated searches: chunk p95 < 100 ms")[3] == "NOT MET"
    errors = _row(rows, "50 clients: no errors")
    assert (errors[2], errors[3]) == ("{'chunk 500': 2}", "NOT MET")
    hub = _row(rows, "spawn median < 3 s")
    assert (hub[2], hub[3]) == ("not run: hub", "-")
    assert len(rows) == len(summary.TARGETS)


def test_a_failed_step_is_not_reported_from_an_earlier_result(tmp_path: Path) -> None:
    summary = _summary()
    _write(tmp_path, "service", {"failed": "exit 1, no JSON line"})
    _write(tmp_path, "service_uncached", {"result": {"benchmark": "service", "results": {}}})
    rows = summary.rows(summary.load(tmp_path))

    assert _row(rows, "50 clients: no errors")[2:4] == ("failed: service", "-")
    broken = _row(rows, "service, uncached searches: no errors")
    assert broken[2].startswith("no figure (KeyError") and broken[3] == "?"


def test_results_older_than_since_are_left_out(tmp_path: Path) -> None:
    summary = _summary()
    _write(tmp_path, "service", {"result": _service(30.0, 20.0, {})})

    assert summary.load(tmp_path, since="2026-12-05T06:00") == {}
    assert set(summary.load(tmp_path, since="2026-12-05T04:00")) == {"service"}

"""Fuzzing the selection parameters of subsets and quicklooks on real datasets.

The service-wide fuzz test draws dataset ids at random, so its requests stop at the 404;
here the id is pinned to real datasets (a gregorian monthly one and a 360-day daily one)
so that every generated value of every parameter reaches the parsing and selecting code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.access.conftest import MIROC_AMON_TA

_DATASETS = (
    MIROC_AMON_TA,
    "CMIP6.CMIP.NIMS-KMA.KACE-1-0-G.historical.r1i1p1f1.day.ta.gr.v20191220",
)
_EXAMPLES = 40


def _fuzzer(operation: Any, dataset_id: str) -> Callable[[], None]:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.path_parameters = {"dataset_id": dataset_id}
        case.call_and_validate(checks=[not_a_server_error])

    return fuzz


def test_no_selection_makes_the_service_fail(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    fuzzed = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.endswith(("/subset", "/map.png", "/series.png")):
            continue
        for dataset_id in _DATASETS:
            fuzzed += 1
            try:
                _fuzzer(operation, dataset_id)()
            except Exception as exc:  # report every failing operation, not only the first
                failures.append(f"{operation.path} on {dataset_id}: {exc}")
    assert fuzzed == 3 * len(_DATASETS)
    assert not failures, "\n\n".join(failures)

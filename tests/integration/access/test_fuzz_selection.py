"""Fuzzing the selection parameters of subsets and quicklooks on real datasets.

The service-wide fuzz test draws dataset ids at random, so its requests stop at the 404;
here the id is pinned to real datasets (a gregorian monthly one and a 360-day daily one)
so that every generated value of every parameter reaches the parsing and selecting code.
"""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI

from tests.integration.access.conftest import MIROC_AMON_TA
from tests.integration.access.test_fuzz import fuzzer

_DATASETS = (
    MIROC_AMON_TA,
    "CMIP6.CMIP.NIMS-KMA.KACE-1-0-G.historical.r1i1p1f1.day.ta.gr.v20191220",
)


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
                fuzzer(operation, path_parameters={"dataset_id": dataset_id})()
            except Exception as exc:  # report every failing operation, not only the first
                failures.append(f"{operation.path} on {dataset_id}: {exc}")
    assert fuzzed == 3 * len(_DATASETS)
    assert not failures, "\n\n".join(failures)

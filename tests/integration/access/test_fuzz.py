"""Fuzzing: schemathesis sends what the OpenAPI spec allows, and odd values it does not;
no request may make the service fail with a 5xx.

Every API operation in the spec gets a bounded number of generated requests
(``EXAMPLES``), with a token that may read and compute everything, so that the deep
paths are reached. An operation added later is fuzzed without anyone adding it here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.access.conftest import AccessEnv, bearer

EXAMPLES = 40


def fuzzer(
    operation: Any,
    *,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> Callable[[], None]:
    """A Hypothesis test sending ``EXAMPLES`` generated requests to one operation."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        if path_parameters is not None:
            case.path_parameters = dict(path_parameters)
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    return fuzz


def test_no_generated_request_makes_the_service_fail(app: FastAPI, access_env: AccessEnv) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    headers = bearer(access_env.secrets.everything)
    failures: list[str] = []
    seen = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        seen += 1
        try:
            fuzzer(operation, headers=headers)()
        except Exception as exc:  # report every failing operation, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert seen >= 4
    assert not failures, "\n\n".join(failures)

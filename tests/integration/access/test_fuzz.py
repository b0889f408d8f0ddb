"""Fuzzing: schemathesis sends what the OpenAPI spec allows, and odd values it does not;
no request may make the service fail with a 5xx.

Every API operation in the spec gets a bounded number of generated requests
(``_EXAMPLES``), with a token that may read and compute everything, so that the deep
paths are reached. An operation added later is fuzzed without anyone adding it here.
"""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.access.conftest import AccessEnv, bearer

_EXAMPLES = 40


def test_no_generated_request_makes_the_service_fail(app: FastAPI, access_env: AccessEnv) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    headers = bearer(access_env.secrets.everything)
    failures: list[str] = []
    seen = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        seen += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as exc:  # report every failing operation, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert seen >= 4
    assert not failures, "\n\n".join(failures)

"""``GET /api/v1/shots``: the shot search of the data service over the lab demo (public) and
a restricted pipeline of its own collection: every filter, paging, a 400 naming each bad
parameter, the access rules of collections, and answers from the catalog database alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from insitu.ingest import Pipeline
from insitu.settings import Settings
from tests.integration.access.conftest import bearer
from tests.integration.access.ingest_lab import ingest_lab
from tests.integration.test_ingest_pipeline import write_shot

DEMO_SHOTS = ["3003", "3002", "3001", "vacuum-20260302"]  # newest acquisition first


@dataclass(frozen=True)
class Lab:
    settings: Settings
    client: TestClient
    admin: dict[str, str]
    lab_only: dict[str, str]
    products: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ingest = ingest_lab(tmp_path_factory.mktemp("shots-api"))
    settings, demo, secret_inbox = ingest.settings, ingest.demo, ingest.secret_inbox
    write_shot(secret_inbox / "shot_4001.tdms", "4001", manifest=True)
    with Pipeline("secret", settings) as pipeline:
        assert {o.state for o in pipeline.run().outcomes} == {"ingested"}
    catalog = Catalog(settings)
    catalog.set_public("lab-demo", True)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    admin = tokens.create("admin", scopes=["read"])[1]
    lab_only = tokens.create("lab-reader", collections=["lab-demo"])[1]
    app = build_app(settings, catalog=catalog, tokens=tokens)
    with TestClient(app) as client:
        yield Lab(settings, client, bearer(admin), bearer(lab_only), demo.lab / "products")
    tokens.close()
    catalog.close()


def shots(lab: Lab, query: str = "", headers: dict[str, str] | None = None) -> list[str]:
    answer = lab.client.get(f"/api/v1/shots{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] >= len(body["shots"])
    return [s["shot"] for s in body["shots"]]


def test_filters(lab: Lab) -> None:
    assert shots(lab) == DEMO_SHOTS
    assert shots(lab, "?campaign=demo-campaign") == DEMO_SHOTS
    assert shots(lab, "?campaign=other") == []
    assert shots(lab, "?from=2026-03-02T10:00:00Z&to=2026-03-02T12:00:00Z") == ["3002"]
    assert shots(lab, "?has_signal=coil_field") == ["3003", "3002", "3001"]
    assert shots(lab, "?has_signal=coil_field,neutral_pressure") == ["3003", "3002", "3001"]
    assert shots(lab, "?has_signal=coil_field&has_signal=nothing") == []
    assert shots(lab, "?config.component=probe-A") == DEMO_SHOTS
    assert shots(lab, "?config.component=probe-Z") == []
    # Coil peaks of 6, 8 and 9.5 V through the demo's table: about 0.26, 0.35 and 0.43 T.
    assert shots(lab, "?where=coil_field_max>0.3") == ["3003", "3002"]
    assert shots(lab, "?where=coil_field_max>0.3,coil_field_max<0.4") == ["3002"]
    assert shots(lab, "?where=neutral_pressure_min>=0&has_signal=langmuir_current") == [
        "3003",
        "3002",
        "3001",
    ]


def test_a_record_and_paging(lab: Lab) -> None:
    body = lab.client.get("/api/v1/shots?page[limit]=2").json()
    assert (body["total"], body["offset"], body["limit"]) == (4, 0, 2)
    assert [s["shot"] for s in body["shots"]] == DEMO_SHOTS[:2]
    nxt = lab.client.get(body["links"]["next"]).json()
    assert [s["shot"] for s in nxt["shots"]] == DEMO_SHOTS[2:] and "next" not in nxt["links"]
    (record,) = lab.client.get("/api/v1/shots?where=coil_field_max>0.4").json()["shots"]
    assert (record["shot"], record["version"], record["collection"]) == ("3003", 1, "lab-demo")
    assert record["operator"] == "bob" and record["acquired_at"] == "2026-03-02T14:00:00Z"
    assert record["calibrations"]["coil_field"]["id"] == "coil_field/coil-1"
    assert set(record["summary"]) == {"langmuir_current", "coil_field", "neutral_pressure"}
    assert "path" not in record  # no server path in answers
    opened = lab.client.get(record["links"]["dataset"])
    assert opened.status_code == 200, opened.text


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("where=b_max>>0.1", "b_max>>0.1"),
        ("where=coil_field_median>1", "coil_field_median>1"),
        ("from=yesterday", "yesterday"),
        ("from=2026-03-03&to=2026-03-01", "2026-03-01"),
        ("page[limit]=5000", "5000"),
        ("page[limit]=-1", "-1"),
        ("page[offset]=x", "'x'"),
        ("has_signals=coil_field", "has_signals"),
        ("latest=maybe", "maybe"),
        ("has_signal=", "has_signal"),
        ("campaign=a&campaign=b", "campaign"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(lab: Lab, query: str, named: str) -> None:
    answer = lab.client.get(f"/api/v1/shots?{query}")
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]["message"]


def test_shots_of_a_restricted_collection_are_absent_unless_granted(lab: Lab) -> None:
    assert "4001" not in shots(lab)
    assert "4001" not in shots(lab, headers=lab.lab_only)
    # 4001 was acquired at 10:00, between 3001 (09:00) and 3002 (10:30); no campaign.
    admin = shots(lab, "?has_signal=coil_field", headers=lab.admin)
    assert admin == ["3003", "3002", "4001", "3001"]
    assert shots(lab, "?campaign=demo-campaign", headers=lab.admin) == DEMO_SHOTS


def test_answered_from_the_catalog_database_alone(lab: Lab) -> None:
    hidden = lab.products.with_name("products-hidden")
    lab.products.rename(hidden)  # no product can be opened
    try:
        assert shots(lab, "?where=coil_field_max>0.3") == ["3003", "3002"]
    finally:
        hidden.rename(lab.products)

"""The ingest web pages over real pipelines: the lab demo (``run_demo``, made public as
``insitu up`` makes it) with a file quarantined, and a restricted pipeline of its own
collection. Pipelines list their shots and quarantine, a shot page its metadata, provenance
and a quicklook per signal whose plotted values are the calibrated data (checked against
the raw TDMS channels read with npTDMS and the demo's polynomial written out), each under
the access rules of the other pages."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from nptdms import TdmsFile
from PIL import Image

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from insitu.ingest import Pipeline
from insitu.settings import Settings
from tests.integration.access.conftest import bearer
from tests.integration.access.ingest_lab import ingest_lab
from tests.integration.test_ingest_pipeline import write_shot

QUARANTINED = "shot_3999.tdms"


@dataclass(frozen=True)
class Lab:
    settings: Settings
    client: TestClient
    admin: dict[str, str]  # headers of a token that reads every collection
    lab_only: dict[str, str]  # headers of a token that reads lab-demo only
    raw: dict[str, Path]  # the demo's raw TDMS files by shot id
    secret_sha: str  # sha256 of the restricted pipeline's quarantined file


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    made = ingest_lab(tmp_path_factory.mktemp("ingest-pages"))
    assert made.demo.new == 4
    settings, lab_folder, secret_inbox = made.settings, made.demo.lab, made.secret_inbox
    # A shot without its operator, in each: quarantined with E_SCHEMA naming the property.
    write_shot(lab_folder / "inbox" / QUARANTINED, "3999", root={"operator": None}, manifest=True)
    write_shot(secret_inbox / "shot_4001.tdms", "4001", manifest=True)
    write_shot(secret_inbox / "shot_4999.tdms", "4999", root={"operator": None}, manifest=True)
    secret_sha = hashlib.sha256((secret_inbox / "shot_4999.tdms").read_bytes()).hexdigest()
    for name, want in (("lab-demo", {"quarantined"}), ("secret", {"ingested", "quarantined"})):
        with Pipeline(name, settings) as pipeline:
            assert {o.state for o in pipeline.run().outcomes} == want
    catalog = Catalog(settings)
    catalog.set_public("lab-demo", True)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    admin = tokens.create("admin", scopes=["read", "compute"])[1]
    lab_only = tokens.create("lab-reader", collections=["lab-demo"])[1]
    raw = {
        str(TdmsFile.read(p).properties["shot_id"]): p
        for p in (settings.data_dir / "ingest/lab-demo/raw").glob("*/*.tdms")
    }
    app = build_app(settings, catalog=catalog, tokens=tokens)
    with TestClient(app) as client:
        yield Lab(settings, client, bearer(admin), bearer(lab_only), raw, secret_sha)
    tokens.close()
    catalog.close()


def text(html: str) -> str:
    """The page's text, tags removed and spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def alike(a: str, name_a: str, b: str, name_b: str) -> bool:
    """Two error pages say the same, but for the names asked for and the request ids."""

    def plain(html: str, name: str) -> str:
        return re.sub(r"[Rr]equest id \w+", "", text(html)).replace(name, "X")

    return plain(a, name_a) == plain(b, name_b)


def row(html: str, table: str, first_cell: str) -> str:
    """The text of the row of table ``#table`` whose first cell holds ``first_cell``."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    rows = [text(r) for r in body.split("<tr>")[2:]]
    found = [r for r in rows if r.strip().startswith(first_cell)]
    assert found, f"no row {first_cell!r} in #{table}: {rows}"
    return found[0]


def test_ingest_page_lists_the_pipelines_the_caller_may_see(lab: Lab) -> None:
    anonymous = lab.client.get("/ingest")
    assert anonymous.status_code == 200
    assert 'href="/ingest"' in lab.client.get("/").text  # in the site's navigation
    # Pipeline, collection, ingested, quarantined, in progress, waiting, last activity.
    assert re.fullmatch(
        r" lab-demo lab-demo 3 1 0 0 \d{4}-\d\d-\d\dT[\d:]+Z ",
        row(anonymous.text, "pipelines", "lab-demo "),
    )
    assert row(anonymous.text, "pipelines", "lab-demo-log").startswith(" lab-demo-log lab-demo 1 0")
    assert "secret" not in anonymous.text
    assert "secret" not in lab.client.get("/ingest", headers=lab.lab_only).text
    admin = lab.client.get("/ingest", headers=lab.admin)
    assert row(admin.text, "pipelines", "secret").startswith(" secret secret 1 1 0 0 ")


def test_pipeline_page_lists_recent_shots_and_the_quarantine_with_reasons(lab: Lab) -> None:
    page = lab.client.get("/ingest/lab-demo")
    assert page.status_code == 200
    shots = page.text.split('id="shots"', 1)[1].split("</table>", 1)[0]
    # Newest acquisition first, each linked to its shot page.
    assert re.findall(r'href="/shots/([^"]+)"', shots) == ["3003.v1", "3002.v1", "3001.v1"]
    for shot, operator, acquired in (
        ("3001", "alice", "09:00"),
        ("3002", "alice", "10:30"),
        ("3003", "bob", "14:00"),
    ):
        assert re.fullmatch(
            rf" {shot} v1 latest {operator} 2026-03-02T{acquired}:00Z shot_{shot}.tdms \S+Z ",
            row(page.text, "shots", shot),
        )
    quarantined = row(page.text, "quarantine", QUARANTINED)
    assert "E_SCHEMA" in quarantined and "at validate" in quarantined
    assert "root property 'operator' is missing." in quarantined  # the reason
    assert "Have the acquisition write 'operator'" in quarantined  # the suggested fix
    assert re.search(r"\d{4}-\d\d-\d\dT[\d:]+Z", quarantined)  # when
    assert "3999" not in text(page.text.split('id="shots"', 1)[1].split("</table>")[0])


def test_restricted_pipeline_is_missing_to_anonymous_callers_and_shown_to_admins(
    lab: Lab,
) -> None:
    restricted = lab.client.get("/ingest/secret")
    unknown = lab.client.get("/ingest/nothing")
    assert restricted.status_code == unknown.status_code == 404
    assert alike(restricted.text, "secret", unknown.text, "nothing")
    assert lab.client.get("/ingest/secret", headers=lab.lab_only).status_code == 403
    page = lab.client.get("/ingest/secret", headers=lab.admin)
    assert page.status_code == 200
    assert 'href="/shots/4001.v1"' in page.text
    quarantined = row(page.text, "quarantine", "shot_4999.tdms")
    assert "E_SCHEMA" in quarantined and "'operator' is missing" in quarantined
    assert f'title="sha256 {lab.secret_sha}"' in page.text


def test_shot_page_shows_metadata_calibrations_versions_and_provenance(lab: Lab) -> None:
    page = lab.client.get("/shots/3002.v1")
    assert page.status_code == 200
    shown = text(page.text.split('id="shot-metadata"', 1)[1].split("</dl>", 1)[0])
    raw_sha = hashlib.sha256(lab.raw["3002"].read_bytes()).hexdigest()
    for pair in (
        "Shot 3002",
        "Operator alice",
        "Acquired 2026-03-02T10:30:00Z",
        f"Raw sha256 {raw_sha}",
        "Pipeline lab-demo",
        "Product version 1",
    ):
        assert pair in shown
    assert re.search(r"Configuration [0-9a-f]{64} ", shown)
    current = calibrated(lab.raw["3002"], "Lang_I")  # summary values of the shot record
    stats = " ".join(f"{v:.4g}" for v in (current.min(), current.mean(), current.max()))
    assert row(page.text, "signals", "langmuir_current") == (
        " langmuir_current Langmuir probe ion saturation current mA PXI M6251/Lang_I (V) "
        f"langmuir_current/probe-A 1 100000 {stats} -0.1 1e-05 "
    )
    assert " coil_field/coil-1 1 " in row(page.text, "signals", "coil_field")
    assert "v1 (this page) latest" in text(page.text.split('id="versions"', 1)[1])
    # Provenance: the raw file, the calibrations, the configuration and the product used
    # and made by the run, on behalf of the operator and the software.
    entities = text(page.text.split('id="prov-entities"', 1)[1].split("</table>", 1)[0])
    assert f"raw:{raw_sha} raw file format = tdms" in entities
    assert "calibration:" in entities and "id = langmuir_current/probe-A; version = 1" in entities
    assert re.search(r"configuration:[0-9a-f]{64} configuration", entities)
    assert re.search(r"product:[0-9a-f]{64} product shot_id = 3002", entities)
    activity = row(page.text, "prov-activities", "run:lab-demo:")
    assert "pipeline = lab-demo" in activity
    agents = text(page.text.split('id="prov-agents"', 1)[1].split("</table>", 1)[0])
    assert "operator:alice prov:Person" in agents and "prov:SoftwareAgent" in agents
    assert f"used raw:{raw_sha}" in text(page.text)
    assert "&#34;wasGeneratedBy&#34;" in page.text.split('id="prov-json"', 1)[1]  # the raw JSON


def calibrated(raw: Path, channel: str) -> np.ndarray:
    """The demo's Langmuir polynomial on the raw volts, written out (not insitu's code)."""
    volts = TdmsFile.read(raw)["PXI M6251"][channel].read_data(scaled=False)
    return np.asarray(0.05 + 2.0 * volts + 0.01 * volts**2)


def test_signal_quicklook_plots_the_calibrated_values(lab: Lab) -> None:
    page = lab.client.get("/shots/3001.v1")
    images = re.findall(r'<img class="quicklook" src="([^"]+)"', page.text)
    assert [re.search(r"variable=(\w+)", src).group(1) for src in images] == [  # type: ignore[union-attr]
        "langmuir_current",
        "coil_field",
        "neutral_pressure",
    ]
    src = images[0].replace("&amp;", "&")
    png = lab.client.get(src)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (800, 380)
    want = calibrated(lab.raw["3001"], "Lang_I")
    described = image.info["Description"]
    assert described.startswith("langmuir_current: 100000 samples, min/max of 1000 bins of 100; ")
    low, high = (float(v) for v in re.findall(r"(?:min|max) (\S+?)(?:,|$)", described))
    assert low == pytest.approx(want.min(), rel=1e-12)
    assert high == pytest.approx(want.max(), rel=1e-12)
    again = lab.client.get(src, headers={"If-None-Match": png.headers["etag"]})
    assert again.status_code == 304


def test_signal_line_bins_are_the_minimum_and_maximum_of_the_calibrated_samples(
    lab: Lab,
) -> None:
    from insitu.access.quicklook import signal_line

    ds = Catalog(lab.settings).open_dataset("3003.v1")
    line = signal_line(ds, "langmuir_current")
    want = calibrated(lab.raw["3003"], "Lang_I").reshape(1000, 100)
    np.testing.assert_allclose(line.lo, want.min(axis=1), rtol=1e-12)
    np.testing.assert_allclose(line.hi, want.max(axis=1), rtol=1e-12)
    # Bin centres on the time axis from the offset (-0.1 s) and interval (10 us).
    np.testing.assert_allclose(line.x[:2], [-0.1 + 49.5e-5, -0.1 + 149.5e-5])
    assert line.time_label == "time since acquisition start [s]"


def test_restricted_shot_is_missing_to_anonymous_callers_and_signed_for_tokens(lab: Lab) -> None:
    restricted = lab.client.get("/shots/4001.v1")
    unknown = lab.client.get("/shots/4002.v1")
    assert restricted.status_code == unknown.status_code == 404
    assert alike(restricted.text, "4001", unknown.text, "4002")
    quicklook = "/api/v1/datasets/4001.v1/quicklook/series.png?variable=langmuir_current"
    assert lab.client.get(quicklook).status_code == 404
    assert lab.client.get("/shots/4001.v1", headers=lab.lab_only).status_code == 403
    page = lab.client.get("/shots/4001.v1", headers=lab.admin)
    assert page.status_code == 200
    src = re.findall(r'<img class="quicklook" src="([^"]+)"', page.text)[0].replace("&amp;", "&")
    assert "signature=" in src  # the browser loads it without the token
    png = lab.client.get(src)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_products_are_found_by_search_and_open_as_shot_pages(lab: Lab) -> None:
    page = lab.client.get("/search", params={"collection": "lab-demo"})
    assert page.status_code == 200
    facets = text(page.text.split('aria-labelledby="facets-h"', 1)[1].split("</aside>", 1)[0])
    assert "shot_id 3001 (1) 3002 (1) 3003 (1) vacuum-20260302 (1)" in facets
    assert 'href="/datasets/3001.v1"' in page.text
    found = lab.client.get("/search", params={"collection": "lab-demo", "shot_id": "3003"})
    assert "<strong>1</strong> dataset matches" in found.text
    opened = lab.client.get("/datasets/3003.v1", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/shots/3003.v1"
    assert lab.client.get("/datasets/3003.v1").url.path == "/shots/3003.v1"


def test_a_series_of_a_grid_still_needs_a_place(lab: Lab, tmp_path: Path) -> None:
    """Without a place only a one-dimensional variable is drawn; a gridded one is refused
    with what to give."""
    import xarray as xr

    root = tmp_path / "grid" / "g" / "v1"
    root.mkdir(parents=True)
    xr.Dataset(
        {"tas": (("time", "lat", "lon"), np.zeros((2, 2, 3)), {"units": "K"})},
        coords={
            "time": ("time", [0.0, 1.0], {"units": "days since 2000-01-01"}),
            "lat": [-45.0, 45.0],
            "lon": [0.0, 120.0, 240.0],
        },
    ).to_netcdf(root / "g_v1.nc")
    catalog = Catalog(lab.settings)
    catalog.add_collection("grid", tmp_path / "grid", template="shots", public=True)
    catalog.scan("grid", progress=False)
    answer = lab.client.get("/api/v1/datasets/g.v1/quicklook/series.png?variable=tas")
    assert answer.status_code == 400, answer.text
    assert "needs a place, lat=Y&lon=X" in answer.json()["error"]["message"]
    half = lab.client.get("/api/v1/datasets/g.v1/quicklook/series.png?variable=tas&lat=3")
    assert half.status_code == 400
    assert "needs both coordinates, lat=Y&lon=X" in half.json()["error"]["message"]


def shot_results(html: str) -> list[str]:
    """The shots a shot search page lists, in its order."""
    if 'id="shot-results"' not in html:
        return []
    table = html.split('id="shot-results"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<th scope="row"><a href="/shots/([^"]+)"', table)


def test_shot_search_page_finds_shots_by_campaign_time_and_summary_values(lab: Lab) -> None:
    everything = lab.client.get("/shots")
    assert everything.status_code == 200
    lab_demo = ["3003.v1", "3002.v1", "3001.v1", "vacuum-20260302.v1"]  # newest first
    assert shot_results(everything.text) == lab_demo  # not the restricted 4001
    assert "4001.v1" in shot_results(lab.client.get("/shots", headers=lab.admin).text)
    assert shot_results(lab.client.get("/shots?campaign=demo-campaign").text) == lab_demo
    after = lab.client.get("/shots", params={"from": "2026-03-02T10:00:00Z", "to": ""})
    assert shot_results(after.text) == ["3003.v1", "3002.v1"]
    # The demo's coil peaks at 6, 8 and 9.5 V: 0.258, 0.354 and 0.426 T through its table.
    strong = lab.client.get("/shots", params={"where": "coil_field_max>0.3"})
    assert shot_results(strong.text) == ["3003.v1", "3002.v1"]
    assert 'value="coil_field_max&gt;0.3"' in strong.text  # the form keeps what was asked
    row_text = row(strong.text, "shot-results", "3003")
    assert re.fullmatch(
        r" 3003 v1 latest lab-demo demo-campaign bob 2026-03-02T14:00:00Z "
        r"langmuir_current, coil_field, neutral_pressure ",
        row_text,
    ), row_text
    log = lab.client.get("/shots", params={"pipeline": "lab-demo-log"})
    assert shot_results(log.text) == ["vacuum-20260302.v1"]
    bad = lab.client.get("/shots", params={"where": "coil_field_max>>1"})
    assert bad.status_code == 400
    assert "'coil_field_max>>1' is not SIGNAL_STAT OP NUMBER" in text(bad.text)
    unknown = lab.client.get("/shots", params={"operator": "alice"})
    assert unknown.status_code == 400 and "Unknown field 'operator'" in text(unknown.text)
    assert 'href="/shots"' in lab.client.get("/ingest").text


def test_a_signal_over_the_read_limit_gets_413(lab: Lab) -> None:
    access = lab.settings.access.model_copy(
        update={"max_slice_bytes": 100_000, "subset_read_factor": 2}
    )
    settings = lab.settings.model_copy(update={"access": access})
    with TestClient(build_app(settings)) as client:
        answer = client.get(
            "/api/v1/datasets/3001.v1/quicklook/series.png?variable=langmuir_current"
        )
    assert answer.status_code == 413
    assert (
        "Signal 'langmuir_current' of dataset '3001.v1' is 0.8 MiB, more than the 0.2 MiB"
        in (answer.json()["error"]["message"])
    )

from __future__ import annotations

import pytest

from insitu.catalog.templates import (
    BUILTIN_TEMPLATES,
    ParsedPath,
    Template,
    get_template,
    version_key,
)
from insitu.errors import TemplateError
from insitu.settings import TemplateSettings

CMIP6 = BUILTIN_TEMPLATES["cmip6"]
CMIP5 = BUILTIN_TEMPLATES["cmip5"]
P6 = (
    "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn/v20190311/"
    "ta_Amon_MIROC6_historical_r1i1p1f1_gn_195001-195912.nc"
)


def test_cmip6_path() -> None:
    p = CMIP6.parse(P6)
    assert isinstance(p, ParsedPath)
    assert p.dataset_id == "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
    assert p.master_id == "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn"
    assert p.version == "v20190311"
    assert p.facets["source_id"] == "MIROC6"
    assert p.facets["time_range"] == "195001-195912"


def test_cmip6_time_invariant_and_sub_experiment() -> None:
    p = CMIP6.parse(
        "CMIP6/DCPP/MOHC/HadGEM3/dcppA-hindcast/s1960-r1i1p1f2/fx/orog/gn/v1/"
        "orog_fx_HadGEM3_dcppA-hindcast_s1960-r1i1p1f2_gn.nc"
    )
    assert isinstance(p, ParsedPath)
    assert "time_range" not in p.facets
    assert p.facets["member_id"] == "s1960-r1i1p1f2"


def test_cmip5_dataset_excludes_variable() -> None:
    p = CMIP5.parse(
        "cmip5/output1/MOHC/HadGEM2-ES/historical/mon/atmos/Amon/r1i1p1/v20120928/"
        "tas/tas_Amon_HadGEM2-ES_historical_r1i1p1_185912-188411.nc"
    )
    assert isinstance(p, ParsedPath)
    assert (
        p.dataset_id == "cmip5.output1.MOHC.HadGEM2-ES.historical.mon.atmos.Amon.r1i1p1.v20120928"
    )
    assert p.facets["variable"] == "tas"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("CMIP6/CMIP/x.nc", "2 directory levels below the root; template 'cmip6' expects 10"),
        (P6.replace("v20190311", "latest"), "directories do not fit"),
        (P6.replace("_gn_1950", "_gr_1950"), "file name says grid_label='gr'"),
        (P6.replace(".nc", ".nc4"), "does not fit template 'cmip6'"),
        (P6.replace("195001-195912", "early"), "does not fit template 'cmip6'"),
    ],
)
def test_paths_that_do_not_fit_say_why(path: str, reason: str) -> None:
    got = CMIP6.parse(path)
    assert isinstance(got, str)
    assert reason in got


def test_versions_compare_as_versions() -> None:
    assert version_key("v2") < version_key("v10")
    assert version_key("1.9") < version_key("1.10")
    assert version_key("v20190311") < version_key("v20200101")
    assert version_key("latest") < version_key("v1")


def test_aliases() -> None:
    assert CMIP6.resolve("model") == "source_id"
    assert CMIP6.resolve("source_id") == "source_id"
    assert CMIP5.resolve("source_id") == "model"
    assert CMIP6.resolve("nonsense") is None


def test_custom_template_and_errors() -> None:
    spec = TemplateSettings(
        directory="{project}/{model}/{version}", filename="{var}_{model}[_{year:\\d{4}}].nc"
    )
    t = Template.from_settings("site", spec)
    p = t.parse("obs/m1/v3/tas_m1_1999.nc")
    assert isinstance(p, ParsedPath)
    assert (p.dataset_id, p.facets["year"], p.facets["var"]) == ("obs.m1.v3", "1999", "tas")
    assert isinstance(t.parse("obs/m2/v3/tas_m1.nc"), str)  # model disagrees
    with pytest.raises(TemplateError, match="not directory facets"):
        Template.from_settings(
            "bad",
            TemplateSettings(
                directory="{a}", filename="{b}.nc", dataset_facets=["b"], version_facet=None
            ),
        )
    with pytest.raises(TemplateError, match="Unknown path template 'x'"):
        get_template("x")
    assert get_template("site", {"site": spec}).name == "site"

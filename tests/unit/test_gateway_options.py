"""Cluster options for a Dask-Gateway, filled in from the compute settings (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from dask_gateway.options import Float, Integer, Mapping, Options, String

from insitu.compute._gateway import _fill_options, _wanted_options
from insitu.compute.backend import WORKER_ENV, ClusterSpec
from insitu.errors import ConfigError


def _options(*fields: Any) -> Options:
    return Options(*fields)


def test_worker_size_and_malloc_environment_come_from_the_spec() -> None:
    options = _options(
        Integer("worker_cores", default=1, min=1, max=8),
        Float("worker_memory", default=1, min=0.5, max=16),
        Mapping("environment", default={"SITE": "x"}),
    )
    spec = ClusterSpec(threads_per_worker=2, memory_limit="4GiB")
    assert _wanted_options(options, spec) == {
        "worker_cores": 2,
        "worker_memory": 4.0,
        "environment": {"SITE": "x", **WORKER_ENV},
    }


def test_settings_override_the_spec_and_extend_the_environment() -> None:
    options = _options(
        Integer("worker_cores", default=1, min=1, max=8),
        Integer("worker_memory", default=2, min=1, max=16),
        Mapping("environment", default={}),
    )
    explicit = {"worker_cores": 4, "environment": {"MALLOC_TOP_PAD_": "0", "OMP_NUM_THREADS": "1"}}
    spec = ClusterSpec(memory_limit="3.4GiB", options={"cluster_options": explicit})
    wanted = _wanted_options(options, spec)
    assert wanted["worker_cores"] == 4
    assert wanted["worker_memory"] == 3  # an Integer option: whole GiB
    assert wanted["environment"] == {**WORKER_ENV, "MALLOC_TOP_PAD_": "0", "OMP_NUM_THREADS": "1"}


def test_what_the_server_does_not_offer_is_left_out_or_refused() -> None:
    options = _options(String("worker_memory", default="2 G"))
    assert _wanted_options(options, ClusterSpec(memory_limit="auto")) == {}
    assert _wanted_options(options, ClusterSpec(memory_limit="4GB")) == {"worker_memory": "4GB"}
    spec = ClusterSpec(options={"cluster_options": {"gpus": 1}})
    with pytest.raises(ConfigError, match=r"'gpus'.*It offers: worker_memory"):
        _wanted_options(options, spec)


def test_an_out_of_range_value_names_the_option() -> None:
    options = _options(Integer("worker_cores", default=1, min=1, max=2))
    with pytest.raises(
        ConfigError, match=r"http://gw does not accept cluster option worker_cores=3"
    ):
        _fill_options(options, ClusterSpec(threads_per_worker=3), "http://gw")

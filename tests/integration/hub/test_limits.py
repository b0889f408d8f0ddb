"""Limits across all of a user's Dask-Gateway clusters (the gateway alone has them per
cluster): the platform's fixture allows 3 cores a cluster and 4 a user, schedulers included.
Run from the user's own notebook, as they would meet it.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow

SCENARIO = """
import json, time
from dask_gateway import Gateway

def workers(client, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        n = len(client.scheduler_info(n_workers=-1)["workers"])
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.5)

gateway = Gateway()  # address, proxy and auth from the environment the hub sets
out = {}
first = gateway.new_cluster()
second = None
try:
    a = first.get_client()
    first.scale(2)                       # scheduler + 2 workers: 3 of the user's 4 cores
    out["first"] = workers(a, 2, 60)
    second = gateway.new_cluster()       # its scheduler takes the 4th core
    b = second.get_client()
    second.scale(1)
    out["second_held"] = workers(b, 1, 8)
    try:
        gateway.submit()                 # a third scheduler would not fit
        out["third"] = "started"
    except Exception as exc:
        out["third"] = str(exc)
    first.scale(1)                       # freeing a core lets the waiting worker start
    second.scale(1)
    out["second_later"] = workers(b, 1, 90)
finally:
    for c in (first, second):
        if c is not None:
            c.shutdown()
print(json.dumps(out))
"""


def test_a_users_clusters_together_stay_within_the_users_limit(
    platform: Platform, alice: str
) -> None:
    hub = platform.hub
    hub.start(alice)
    run = execute(platform.base, alice, hub.token_for(alice), SCENARIO, timeout=400)
    assert run.error is None, run.error
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["first"] == 2
    assert out["second_held"] == 0  # held back by the user's limit, not started
    assert "at their limit of 4 cores" in out["third"]
    assert out["second_later"] == 1
    logs = (platform.data_dir / "hub" / "jupyterhub.log").read_text()
    assert "limit across clusters is 4 cores" in logs

"""The gateway's clusters as their user meets them: the platform's environment reaches
the scheduler and workers whatever the user asks (the user's variables add to it, never
replace the platform's mark or catalog), and the processes' log files are the user's own
(opened by the process once it is the user, never by root in the user's folder).
"""

from __future__ import annotations

import json
import pwd

import pytest

from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow

SCENARIO = """
import json, os, time
from dask_gateway import Gateway

gateway = Gateway()  # address, proxy and auth from the environment the hub sets
options = gateway.cluster_options()
options.environment = {"INSITU_PLATFORM_ID": "forged", "MY_VAR": "1"}
cluster = gateway.new_cluster(cluster_options=options)
out = {}
try:
    client = cluster.get_client()
    cluster.scale(1)
    client.wait_for_workers(1, timeout=120)
    keys = ("INSITU_PLATFORM_ID", "MY_VAR", "INSITU_CATALOG__URI")
    pick = lambda: {k: os.environ.get(k) for k in keys}
    out["workers"] = list(client.run(pick).values())
    out["scheduler"] = client.run_on_scheduler(pick)
    workdir = client.run_on_scheduler(os.getcwd)
    out["workdir"] = workdir

    def owners(workdir=workdir):
        logs = os.path.join(workdir, "logs")
        return {n: os.lstat(os.path.join(logs, n)).st_uid for n in os.listdir(logs)}

    out["logs"] = client.run_on_scheduler(owners)
    out["workdir_uid"] = client.run_on_scheduler(lambda: os.stat(workdir).st_uid)
finally:
    cluster.shutdown()
print(json.dumps(out))
"""


def test_clusters_keep_the_platform_environment_and_their_logs_are_the_users(
    platform: Platform, alice: str
) -> None:
    mark = json.loads((platform.data_dir / "hub" / "platform.json").read_text())["mark"]
    assert mark
    uid = pwd.getpwnam(alice).pw_uid
    hub = platform.hub
    hub.start(alice)
    run = execute(platform.base, alice, hub.token_for(alice), SCENARIO, timeout=400)
    assert run.error is None, run.error
    out = json.loads(run.stdout.strip().splitlines()[-1])

    assert out["workers"], out
    for env in [out["scheduler"], *out["workers"]]:
        assert env["INSITU_PLATFORM_ID"] == mark  # the platform's, not "forged"
        assert env["MY_VAR"] == "1"
        assert env["INSITU_CATALOG__URI"]

    logs = out["logs"]
    assert "scheduler.log" in logs, logs
    assert any(n.startswith("worker-") for n in logs), logs
    assert set(logs.values()) == {uid}, logs  # alice's, never root's
    assert out["workdir_uid"] == uid

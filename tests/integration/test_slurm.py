"""Workers as real SLURM jobs on a single-node SLURM started by the project's script."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from insitu.catalog import Catalog
from insitu.compute import cluster, run
from insitu.settings import Settings


def test_analysis_runs_on_slurm_jobs(tmp_path: Path, demo_root: Path, slurm_partition: str) -> None:
    settings = Settings.load(
        data_dir=tmp_path,
        catalog={"uri": f"sqlite:///{tmp_path / 'c.db'}"},
        compute={
            "jobqueue": {
                "queue": slurm_partition,
                "memory": "1GB",
                "interface": "lo",
                "walltime": "00:10:00",
            }
        },
    )
    with Catalog(settings) as cat:
        cat.add_collection("demo", demo_root)
        cat.scan(workers=1)
        ids = cat.search(source_id="MIROC6", table_id="Amon").all_ids
        local = run(cat, "field_mean", ids, cache=False).open()
        with cluster(settings, backend="slurm", workers=2) as client:
            client.wait_for_workers(2, timeout=120)
            job_ids = set(client.run(lambda: os.environ.get("SLURM_JOB_ID")).values())
            assert len(job_ids) == 2 and None not in job_ids
            remote = run(cat, "field_mean", ids, client=client, cache=False).open()
            streamed = run(cat, "time_mean", ids, client=client, cache=False).open()
        np.testing.assert_array_equal(remote["ta"].values, local["ta"].values)
        assert streamed["ta"].shape == (2, 2, 2)

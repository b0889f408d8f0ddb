"""The platform's demo workflow: a notebook's multi-model analysis of the CMIP6 demo
archive, made into a workflow and published, so that a new platform (``insitu up``) shows
a workflow its users can run on the server from its page.

:func:`install_demo_workflow` writes the notebook (``DATA_DIR/workflow-sources/NAME.ipynb``),
turns it into a workflow beside it, publishes it as :data:`DEMO_WORKFLOW` and registers its
components in the component catalog. A platform where it is published already is left as
it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from insitu.workflows.compose import workflow_from_notebook
from insitu.workflows.notebook import notebook_from_sources
from insitu.workflows.published import PublishedWorkflow, PublishedWorkflows
from insitu.workflows.registry import ComponentCatalog

if TYPE_CHECKING:
    from insitu.settings import Settings

__all__ = ["DEMO_CELLS", "DEMO_WORKFLOW", "install_demo_workflow"]

DEMO_WORKFLOW = "cmip6-ensemble-anomaly"
_MODELS = [
    "CMIP6.CMIP.AWI.AWI-CM-1-1-MR.historical.r1i1p1f1.Amon.ta.gn.v20181218",
    "CMIP6.CMIP.BCC.BCC-ESM1.historical.r1i1p1f1.Amon.ta.gn.v20181217",
    "CMIP6.CMIP.CCCma.CanESM5.historical.r1i1p1f1.Amon.ta.gn.v20190429",
]
DEMO_CELLS = [
    "import numpy as np\nfrom insitu import open_dataset",
    f"param_models = {_MODELS!r}\nparam_level = 0\nparam_start = '1990'\nparam_end = '1999'",
    "# Area-weighted mean over the globe\ndef field_mean(da):\n"
    "    w = np.cos(np.deg2rad(da['lat']))\n"
    "    return da.weighted(w).mean(('lat', 'lon'))",
    "# Yearly global means of air temperature, one series per model\nseries = {}\n"
    "for m in param_models:\n"
    "    ds = open_dataset(m, time=slice(param_start, param_end))\n"
    "    yearly = field_mean(ds['ta'].isel(plev=param_level)).groupby('time.year').mean()\n"
    "    series[m.split('.')[3]] = yearly.values",
    "# The ensemble mean\nnames = sorted(series)\n"
    "stack = np.stack([series[n] for n in names])\nensemble = stack.mean(axis=0)",
    "# Each model's mean anomaly from the ensemble, and the spread\n"
    "anomaly = {n: float((series[n] - ensemble).mean()) for n in names}\n"
    "spread = float(stack.std(axis=0).mean())",
    "print(anomaly, spread)",
]


def install_demo_workflow(settings: Settings) -> PublishedWorkflow | None:
    """Publish the demo workflow unless it is published; the new entry, else None."""
    with PublishedWorkflows.from_settings(settings) as published:
        if any(e.name == DEMO_WORKFLOW for e in published.list()):
            return None
        import nbformat

        sources = settings.data_dir / "workflow-sources"
        sources.mkdir(parents=True, exist_ok=True)
        notebook = sources / f"{DEMO_WORKFLOW}.ipynb"
        ids = [f"cell-{i}" for i in range(len(DEMO_CELLS))]
        nbformat.write(notebook_from_sources(DEMO_CELLS, ids=ids), notebook)
        workflow_from_notebook(notebook, sources / DEMO_WORKFLOW)
        entry = published.publish(
            sources / DEMO_WORKFLOW,
            DEMO_WORKFLOW,
            description="Yearly global mean air temperature of three CMIP6 models, their "
            "ensemble mean and each one's anomaly (the demo archive)",
            replace=True,  # a folder a failed install left behind
            by="insitu up (demo)",
        )
    with ComponentCatalog.from_settings(settings) as components:
        components.register(entry.directory / "components")
    return entry

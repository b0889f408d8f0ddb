"""The corpus of the workflows differential test, shared by test_workflow_components.py (each
cell's task.py chained by hand) and test_workflow_run.py (the generated workflow run by the
local and Dask executors): ten realistic notebooks as lists of cell sources, and the oracle
(the cells run top to bottom in one IPython namespace, every output recorded right after its
cell ran) with the comparison of values."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

FUNCTIONS = [
    "param_scale = 3",
    "import math\nbase = [1, 2, 3]",
    "def norm(v):\n    return math.sqrt(sum(x * x for x in v)) * param_scale",
    "base.append(4)\ntotal = 0",
    "for v in base:\n    total += v",
    "n = norm(base)\nstats = {'total': total, 'n': n, 'pair': (1, 2)}",
    "labels = [f'{k}={v}' for k, v in sorted(stats.items())]\nsquare = lambda x: x * x",
    "last = square(len(labels))",
]

NUMPY_PANDAS = [
    "import numpy as np\nimport pandas as pd",
    "param_n = 50",
    "rng = np.random.default_rng(0)\nx = rng.normal(size=param_n)",
    "df = pd.DataFrame({'x': x, 'y': 2 * x})",
    "df['z'] = df.x + df.y",
    "summary = df.describe()\nbig = np.arange(20000.0)",
    "total = float(big.sum()) + float(summary.loc['mean', 'z'])",
]

MAGICS = [
    "%load_ext autoreload\nimport numpy as np",
    "a = np.zeros(3)",
    "!echo hello",
    "files = !printf 'x\\ny\\n'",
    "%%capture out\nprint(1)",
    "%time b = a + 1",
    "n = len(files) + len(out.stdout) + int(b.sum())",
]

CLASSES = [
    "scale = 2",
    "class Scaler:\n    factor = scale\n"
    "    def apply(self, v):\n        return v * self.factor * offset",
    "offset = 10\ncount = 0",
    "def bump():\n    global count\n    count += 1",
    "bump()\nbump()",
    "def make_adder(n):\n    def add(x):\n        return x + n + offset\n    return add",
    "values = [Scaler().apply(v) for v in range(4)]\nplus3 = make_adder(3)(1)",
    "summary = (count, sum(values), plus3)",
]

CONTROL_FLOW = [
    "try:\n    import ujson as json\nexcept ImportError:\n    import json",
    "records = [{'k': i, 'v': i * i} for i in range(6)]",
    "text = json.dumps(records)\nbig = [r for r in records if (sq := r['v']) > 4]",
    "kind = 'few'\nmatch len(big):\n    case 0:\n        kind = 'none'\n"
    "    case n if n > 2:\n        kind = f'many:{n}'",
    "total = 0\nfor r in big:\n    total += r['v']\nelse:\n    done = True",
    "from collections import Counter\nc = dict(Counter(r['k'] % 2 for r in records))",
    "report = {'kind': kind, 'total': total, 'sq': sq, 'c': c, 'n': len(text)}",
]

AWAIT_FUTURE = [
    "import asyncio",
    "async def twice(x):\n    await asyncio.sleep(0)\n    return 2 * x",
    "y = await twice(21)",
    "from __future__ import annotations\ndef f(a: Undefined) -> int:\n    return a + y\nz = f(1)",
]

GROUPBY = [
    "import pandas as pd",
    "rows = [('alpha', 3, 1.5), ('beta', 1, 2.0), ('alpha', 4, 0.5), ('gamma', 9, 1.0)]",
    "df = pd.DataFrame(rows, columns=['site', 'n', 'w'])\ndf['site'] = df.site.str.upper()",
    "df.insert(0, 'id', range(len(df)))\ndf.loc[df.n > 5, 'w'] = 0.0",
    "by_site = df.groupby('site', as_index=False).agg(total=('n', 'sum'), w=('w', 'mean'))",
    "best = by_site.loc[by_site.total.idxmax(), 'site']\nlabels = list(by_site.site)",
    "report = f'{best}: ' + ', '.join(labels)",
]

PAPERMILL = [
    "import os\nyears = [1990, 2000]\nlabel = 'run a'\nroot = os.path.join('/tmp', 'x')",
    "span = years[1] - years[0]\nname = label.upper() + ':' + root",
    "out = {'span': span, 'name': name}",
]
"""Its first cell is tagged ``parameters`` (papermill)."""

DEMO_DATASET = "CMIP6.CMIP.AS-RCEC.TaiESM1.historical.r1i1p1f1.Amon.ta.gn.v20200623"
DEMO_OPEN = [
    "import insitu",
    f"param_dataset = {DEMO_DATASET!r}",
    "ds = insitu.open_dataset(param_dataset)\nta = ds['ta'].isel(plev=0)",
    "clim = ta.mean('time')",
    "global_mean = float(clim.mean())",
]

DEMO_MODELS = [
    "CMIP6.CMIP.AWI.AWI-CM-1-1-MR.historical.r1i1p1f1.Amon.ta.gn.v20181218",
    "CMIP6.CMIP.BCC.BCC-ESM1.historical.r1i1p1f1.Amon.ta.gn.v20181217",
    "CMIP6.CMIP.CCCma.CanESM5.historical.r1i1p1f1.Amon.ta.gn.v20190429",
]
DEMO_ANOMALY = [
    "import numpy as np\nimport xarray as xr\nfrom insitu import open_dataset",
    f"param_models = {DEMO_MODELS!r}\nparam_level = 0",
    "def field_mean(da):\n    w = np.cos(np.deg2rad(da['lat']))\n"
    "    return da.weighted(w).mean(('lat', 'lon'))",
    "series = {}\nfor m in param_models:\n"
    "    ds = open_dataset(m, time=slice('1990', '1999'))\n"
    "    series[m.split('.')[3]] = field_mean(ds['ta'].isel(plev=param_level))"
    ".groupby('time.year').mean().values",
    "names = sorted(series)\nstack = np.stack([series[n] for n in names])\n"
    "ensemble = stack.mean(axis=0)",
    "anomaly = {n: float((series[n] - ensemble).mean()) for n in names}\n"
    "spread = float(stack.std(axis=0).mean())",
]


@dataclass(frozen=True)
class Notebook:
    """One notebook of the corpus; ``demo``: it reads the demo archive (needs the catalog)."""

    name: str
    sources: list[str]
    parameters_cell: int | None = None
    demo: bool = False


CORPUS = [
    Notebook("functions", FUNCTIONS),
    Notebook("numpy_pandas", NUMPY_PANDAS),
    Notebook("magics", MAGICS),
    Notebook("classes", CLASSES),
    Notebook("control_flow", CONTROL_FLOW),
    Notebook("await_future", AWAIT_FUTURE),
    Notebook("papermill", PAPERMILL, parameters_cell=0),
    Notebook("groupby", GROUPBY),
    Notebook("demo_open", DEMO_OPEN, demo=True),
    Notebook("demo_anomaly", DEMO_ANOMALY, demo=True),
]


def run_in_one_namespace(
    sources: list[str], outputs: list[tuple[str, ...]]
) -> list[dict[str, Any]]:
    """Run the cells in one IPython shell; each cell's outputs as they were after it ran."""
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    seen = []
    try:
        for source, names in zip(sources, outputs, strict=True):
            result = shell.run_cell(source, store_history=True)
            result.raise_error()
            seen.append({n: _snapshot(shell.user_ns[n]) for n in names})
    finally:
        InteractiveShell.clear_instance()
    return seen


def _snapshot(value: Any) -> Any:
    if hasattr(value, "stdout") and hasattr(value, "stderr"):  # %%capture's object
        return {"stdout": value.stdout}
    if type(value).__name__ == "SList":  # '!cmd' output: a component gives a plain list
        return list(value)
    if isinstance(value, xr.DataArray | xr.Dataset):
        return value.load().copy(deep=True)
    return copy.deepcopy(value)


def assert_same(name: str, expected: Any, got: Any) -> None:
    if isinstance(expected, dict) and set(expected) == {"stdout"}:
        assert got.stdout == expected["stdout"], name
    elif isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
    elif isinstance(expected, dict) and any(isinstance(v, np.ndarray) for v in expected.values()):
        assert type(got) is dict and list(got) == list(expected), name
        for k, v in expected.items():
            assert_same(f"{name}[{k!r}]", v, got[k])
    elif callable(expected) and hasattr(expected, "__code__"):  # a lambda, by value
        assert got.__code__.co_code == expected.__code__.co_code, name
    elif isinstance(expected, xr.DataArray):
        # Values and dimensions; a time axis may come back as datetime64 instead of cftime.
        assert got.dims == expected.dims, name
        np.testing.assert_allclose(got.values, expected.values)
    else:
        assert type(got) is type(expected), (name, type(got), type(expected))
        assert got == expected, name

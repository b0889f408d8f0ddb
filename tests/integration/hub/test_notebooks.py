"""The hub's example notebooks, run top to bottom as a user runs them, without edits.

Each notebook runs with nbclient in a temporary copy, in a ``python3`` kernel of this
environment, against a data directory where ``insitu demo`` indexed the CMIP6 sample
archive and ``insitu ingest demo`` ingested the lab's shots, with a real data service
(``insitu serve`` on a free loopback port) whose URL reaches the notebooks as in the hub,
through ``INSITU_ACCESS__PUBLIC_URL``. No cell may fail and every notebook must draw a
figure; the retrieval notebook must also retrieve LAI well, which a cell added to the copy
reads from the variable the notebook leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import insitu
from tests.integration.access.conftest import free_port

NOTEBOOKS = Path(insitu.__file__).parent / "hub" / "notebooks"
NAMES = (
    "01-cmip6-global-mean.ipynb",
    "02-server-side-slice.ipynb",
    "03-optirad-retrieval.ipynb",
    "04-lab-shots.ipynb",
)
KERNELS = Path(sys.prefix) / "share" / "jupyter"
CHECK = "insitu-test-check:"
# Run last in each copy: which Python the kernel is, and what the notebook left behind.
CHECK_CELL = f"""
import json as _json, sys as _sys
_found = {{"prefix": _sys.prefix}}
if "lai_correlation" in globals():
    _found["lai_correlation"] = float(lai_correlation)
print({CHECK!r}, _json.dumps(_found))
"""


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> dict[str, str]:
    """The environment of a user's kernel: a data dir where ``insitu demo`` has run.

    ``demo_root`` fails with an install hint when the sample archive is missing.
    """
    tmp = tmp_path_factory.mktemp("notebooks")
    (tmp / "insitu.toml").write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INSITU_", "JUPYTERHUB_", "DASK_", "MPLBACKEND"))
    }
    env.update(
        INSITU_DATA_DIR=str(tmp / "data"),
        INSITU_CONFIG=str(tmp / "insitu.toml"),  # empty: no user config file applies
        INSITU_COMPUTE__WORKERS="2",  # the budget the notebooks are written for
        IPYTHONDIR=str(tmp / "ipython"),  # ipyparallel's profile, not the user's
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    demo = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, f"'insitu demo' failed:\n{demo.stderr}"
    lab = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "ingest", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lab.returncode == 0, f"'insitu ingest demo' failed:\n{lab.stderr}"
    return env


@pytest.fixture(scope="module")
def service_url(notebook_env: dict[str, str]) -> Iterator[str]:
    """``insitu serve`` over the notebooks' data dir, on a free port on 127.0.0.1."""
    port = free_port()
    log = Path(notebook_env["INSITU_DATA_DIR"]) / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "insitu.cli", "serve", "--port", str(port)],
            env=notebook_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"'insitu serve' exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"'insitu serve' not up in 60 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def kernel_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make nbclient pick this environment's ``python3`` kernel, not a user-wide one."""
    spec = KERNELS / "kernels" / "python3" / "kernel.json"
    assert spec.is_file(), (
        f"No python3 kernel in this environment ({spec} is missing): install ipykernel "
        f"into it, or run '{sys.executable} -m ipykernel install --sys-prefix'."
    )
    monkeypatch.setenv("JUPYTER_PATH", str(KERNELS))  # searched before the user's dirs
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))


def _run(path: Path, env: dict[str, str]) -> tuple[nbformat.NotebookNode, dict[str, object]]:
    """Execute the notebook at ``path`` in place, with the check cell added at the end."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_CELL))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed:\n{exc}")
    finally:
        nbformat.write(nb, path)  # the executed copy, outputs and all, for a look after
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert CHECK in printed, f"{path.name}: the check cell printed nothing: {printed!r}"
    found: dict[str, object] = json.loads(printed.split(CHECK, 1)[1])
    return nb, found


def _insitu(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "insitu.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"'insitu {' '.join(args)}' failed:\n{out.stderr}"
    return out.stdout


def _run_shipped(name: str, env: dict[str, str], workdir: Path) -> dict[str, object]:
    """Run the shipped notebook ``name`` in a copy in ``workdir``; check its outputs."""
    source = NOTEBOOKS / name
    assert source.is_file(), f"{source} is missing"
    shipped = nbformat.read(source, as_version=4)
    nbformat.validate(shipped)
    assert all(not c.get("outputs") for c in shipped.cells if c.cell_type == "code"), (
        f"{name} is shipped with outputs; clear them before saving"
    )
    copy = workdir / name
    shutil.copyfile(source, copy)

    nb, found = _run(copy, env)

    assert found["prefix"] == sys.prefix, f"{name} ran in {found['prefix']}, not {sys.prefix}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name}: error outputs: {[e.get('ename') for e in errors]}"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure (no image/png output)"
    return found


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_paths")
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(
    name: str, notebook_env: dict[str, str], service_url: str, tmp_path: Path
) -> None:
    env = {**notebook_env, "INSITU_ACCESS__PUBLIC_URL": service_url}
    found = _run_shipped(name, env, tmp_path)
    if name.startswith("03-"):
        r = found.get("lai_correlation")
        assert isinstance(r, float), f"{name} left no lai_correlation behind"
        assert r > 0.9, f"retrieved LAI correlates with the truth at r = {r:.3f} only"


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_paths")
def test_slice_notebook_sends_the_token_of_the_hub(
    notebook_env: dict[str, str], service_url: str, tmp_path: Path
) -> None:
    """With ``JUPYTERHUB_API_TOKEN`` set, the data-service notebook authenticates with it:
    it reads the demo collection while the collection is private."""
    secret = _insitu(notebook_env, "token", "create", "notebooks", "--collection", "demo")
    _insitu(notebook_env, "catalog", "public", "demo", "--off")
    try:
        env = {
            **notebook_env,
            "INSITU_ACCESS__PUBLIC_URL": service_url,
            "JUPYTERHUB_API_TOKEN": secret.strip(),
        }
        _run_shipped("02-server-side-slice.ipynb", env, tmp_path)
    finally:
        _insitu(notebook_env, "catalog", "public", "demo")

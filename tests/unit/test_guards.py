"""Guards: light CLI imports, honest __all__ lists, one-way imports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_cli_import_loads_nothing_heavy() -> None:
    code = (
        "import sys, insitu, insitu.cli; "
        "print(sorted(m for m in ('numpy', 'xarray', 'dask', 'netCDF4', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    [
        "insitu",
        "insitu.errors",
        "insitu.settings",
        "insitu.catalog",
        "insitu.catalog.templates",
        "insitu.catalog.models",
        "insitu.catalog.store",
        "insitu.catalog.search",
        "insitu.cli",
        "insitu.compute",
        "insitu.compute.backend",
        "insitu.compute.operations",
        "insitu.compute.engine",
        "insitu.access",
        "insitu.access.tokens",
        "insitu.access.deps",
    ],
)
def test_all_lists_real_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
    }
    assert public <= set(mod.__all__), public - set(mod.__all__)


def test_errors_carry_http_status_and_builtin_parents() -> None:
    from insitu import errors

    assert issubclass(errors.DatasetNotFound, LookupError)
    assert errors.DatasetNotFound.http_status == 404
    assert issubclass(errors.InvalidQuery, ValueError)
    assert errors.InvalidQuery.http_status == 400
    msg = str(errors.DatasetNotFound("a.b"))
    assert "'a.b'" in msg and "insitu catalog search" in msg


def test_gc_paused_restores_the_collector_as_it_was() -> None:
    """Nested pauses (an index built during a scan) leave the collector off until the
    outermost one ends, and on after it only if it was on before."""
    import gc

    from insitu._util import gc_paused

    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()

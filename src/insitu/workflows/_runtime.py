"""insitu component task: ``python task.py --inputs inputs.json --outdir OUT/``.

``inputs.json`` maps each input and parameter name to ``{"kind": "json", "value": ...}`` or
``{"kind": "file", "path": ..., "format": "npy|parquet|netcdf|netcdf-dataarray|json|pickle"}``
(a relative path is relative to inputs.json). Secrets come from environment variables of the
same name only. The task writes ``OUT/<name>.<ext>`` for each output too big for JSON or not
JSON (numpy → npy, pandas DataFrame → parquet when pyarrow is installed, xarray → netCDF,
anything else → pickle) and ``OUT/outputs.json`` (``name → kind, value|path, format, sha256,
bytes``; paths relative to OUT). With ``--check-mutation`` an input that changed although
the cell does not visibly change it is reported (W-HIDDEN-MUTATION, OUT/checks.json).
Exit status: 0 done, 1 the cell's code raised, 2 bad inputs or a missing secret,
3 E-OUTPUT-UNDEFINED, 4 E-OUTPUT-NOT-SERIALIZABLE.

This file is copied into every generated task.py and imports nothing of insitu.
"""

import argparse as _insitu_argparse
import hashlib as _insitu_hashlib
import json as _insitu_json
import math as _insitu_math
import os as _insitu_os
import pickle as _insitu_pickle
import subprocess as _insitu_subprocess
import sys as _insitu_sys
from typing import Any as _InsituAny

_INSITU_INLINE_LIMIT = 64 * 1024


def _insitu_fail(code: int, message: str) -> None:
    print(f"insitu task: {message}", file=_insitu_sys.stderr)
    raise SystemExit(code)


def _insitu_digest(value: _InsituAny) -> str:
    """A hash of a value's pickle ('' when it cannot be pickled)."""
    try:
        data = _insitu_pickle.dumps(value, protocol=5)
    except Exception:
        return ""
    return _insitu_hashlib.sha256(data).hexdigest()


def _insitu_is_json(value: _InsituAny) -> bool:
    """Exactly JSON: these types only (no tuples, numpy scalars or NaN: they would come
    back as something else)."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return _insitu_math.isfinite(value)
    if kind is list:
        return all(_insitu_is_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _insitu_is_json(v) for k, v in value.items())
    return False


def _insitu_module(value: _InsituAny) -> str:
    return type(value).__module__.split(".")[0]


def _insitu_write(name: str, value: _InsituAny, outdir: str) -> dict[str, _InsituAny]:
    """Write one output; its outputs.json entry."""
    if _insitu_is_json(value):
        text = _insitu_json.dumps(value, sort_keys=True, separators=(",", ":"))
        data = text.encode()
        digest = _insitu_hashlib.sha256(data).hexdigest()
        if len(data) <= _INSITU_INLINE_LIMIT:
            return {"kind": "json", "value": value, "sha256": digest, "bytes": len(data)}
        return _insitu_file(name, "json", "json", outdir, lambda p: open(p, "wb").write(data))
    module = _insitu_module(value)
    kind = type(value).__name__
    if module == "numpy" and kind == "ndarray" and value.dtype != object:
        import numpy

        return _insitu_file(
            name, "npy", "npy", outdir, lambda p: numpy.save(p, value, allow_pickle=False)
        )
    if module == "pandas" and kind == "DataFrame":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is not None:
            try:
                return _insitu_file(name, "parquet", "parquet", outdir, value.to_parquet)
            except Exception:  # columns parquet cannot hold: pickle below
                pass
    if module == "xarray" and kind in ("Dataset", "DataArray"):
        fmt = "netcdf" if kind == "Dataset" else "netcdf-dataarray"
        try:
            return _insitu_file(name, "nc", fmt, outdir, value.to_netcdf)
        except Exception:  # attributes or types netCDF cannot hold: pickle below
            pass
    import importlib

    try:
        pickler = importlib.import_module("cloudpickle")  # functions and lambdas by value
    except ImportError:
        pickler = _insitu_pickle

    def dump(path: str) -> None:
        with open(path, "wb") as fh:
            pickler.dump(value, fh, protocol=5)

    try:
        return _insitu_file(name, "pkl", "pickle", outdir, dump)
    except Exception as exc:
        _insitu_fail(
            4,
            f"E-OUTPUT-NOT-SERIALIZABLE: output {name!r} ({type(value).__name__})"
            f" cannot be written: {exc}. Return the data it holds instead.",
        )
        raise


def _insitu_file(
    name: str, ext: str, fmt: str, outdir: str, write: _InsituAny
) -> dict[str, _InsituAny]:
    path = _insitu_os.path.join(outdir, f"{name}.{ext}")
    if _insitu_os.path.exists(path):
        _insitu_os.remove(path)
    write(path)
    h = _insitu_hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {
        "kind": "file",
        "path": f"{name}.{ext}",
        "format": fmt,
        "sha256": h.hexdigest(),
        "bytes": size,
    }


def _insitu_read(name: str, spec: dict[str, _InsituAny], base: str) -> _InsituAny:
    """One input's value from its inputs.json entry."""
    if spec.get("kind") == "json":
        return spec.get("value")
    if spec.get("kind") != "file":
        _insitu_fail(2, f"input {name!r}: kind must be 'json' or 'file', not {spec.get('kind')!r}")
    path = _insitu_os.path.join(base, spec["path"])
    fmt = spec.get("format", "pickle")
    if fmt == "json":
        with open(path, "rb") as fh:
            return _insitu_json.load(fh)
    if fmt == "npy":
        import numpy

        return numpy.load(path, allow_pickle=False)
    if fmt == "parquet":
        import pandas

        return pandas.read_parquet(path)
    if fmt in ("netcdf", "netcdf-dataarray"):
        import xarray

        return xarray.load_dataset(path) if fmt == "netcdf" else xarray.load_dataarray(path)
    if fmt == "pickle":
        with open(path, "rb") as fh:
            return _insitu_pickle.load(fh)
    _insitu_fail(2, f"input {name!r}: unknown format {fmt!r}")
    return None


class _InsituTask:
    """Inputs in, outputs out: the one contract of every backend."""

    def __init__(self, inputs: str, outdir: str, check_mutation: bool = False) -> None:
        self.check_mutation = check_mutation
        self.input_digests: dict[str, str] = {}
        self.base = _insitu_os.path.dirname(_insitu_os.path.abspath(inputs))
        try:
            with open(inputs, encoding="utf-8") as fh:
                self.inputs = _insitu_json.load(fh)
        except (OSError, ValueError) as exc:
            _insitu_fail(2, f"cannot read inputs file {inputs!r}: {exc}")
        self.outdir = outdir
        _insitu_os.makedirs(outdir, exist_ok=True)

    @classmethod
    def from_argv(cls) -> "_InsituTask":
        parser = _insitu_argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--inputs", required=True, help="inputs.json")
        parser.add_argument("--outdir", required=True, help="directory for the outputs")
        parser.add_argument(
            "--check-mutation",
            action="store_true",
            help="warn W-HIDDEN-MUTATION when an input changes that the cell does not "
            "visibly change (hashes every input twice)",
        )
        args = parser.parse_args()
        return cls(args.inputs, args.outdir, args.check_mutation)

    def input(self, name: str) -> _InsituAny:
        if name not in self.inputs:
            _insitu_fail(
                2,
                f"input {name!r} is not in the inputs file; add it as "
                '{"kind": "json", "value": ...} or {"kind": "file", ...}',
            )
        value = _insitu_read(name, self.inputs[name], self.base)
        if self.check_mutation:
            self.input_digests[name] = _insitu_digest(value)
        return value

    def param(self, name: str, default: _InsituAny) -> _InsituAny:
        if name not in self.inputs:
            return default
        return _insitu_read(name, self.inputs[name], self.base)

    def secret(self, name: str) -> str:
        value = _insitu_os.environ.get(name)
        if value is None:
            _insitu_fail(
                2,
                f"secret {name!r} is not set: pass it as the environment variable "
                f"{name} (secrets are never written to inputs.json)",
            )
        return str(value)

    def finish(
        self, namespace: dict[str, _InsituAny], names: list[str], changes: tuple[str, ...] = ()
    ) -> None:
        """Write the outputs ``names``; with --check-mutation, also report inputs that
        changed although the cell changes only ``changes`` (OUT/checks.json, stderr)."""
        hidden = [
            n
            for n, digest in self.input_digests.items()
            if n not in changes and n in namespace and _insitu_digest(namespace[n]) != digest
        ]
        if self.check_mutation:
            for n in hidden:
                print(
                    f"insitu task: W-HIDDEN-MUTATION: input {n!r} changed although the cell "
                    "does not visibly change it (a function it called?); cells after it that "
                    "read it get the unchanged value.",
                    file=_insitu_sys.stderr,
                )
            with open(_insitu_os.path.join(self.outdir, "checks.json"), "w") as fh:
                _insitu_json.dump({"W-HIDDEN-MUTATION": hidden}, fh)
        outputs = {}
        for name in names:
            if name not in namespace:
                _insitu_fail(
                    3,
                    f"E-OUTPUT-UNDEFINED: output {name!r} was not bound by the "
                    "cell (it is bound on some paths only); bind it on every path.",
                )
            outputs[name] = _insitu_write(name, namespace[name], self.outdir)
        with open(_insitu_os.path.join(self.outdir, "outputs.json"), "w", encoding="utf-8") as fh:
            _insitu_json.dump(outputs, fh, indent=1, sort_keys=True)


def _insitu_run_async(source: str, namespace: dict[str, _InsituAny]) -> None:
    """A cell with top-level ``await``, run in an event loop as IPython does."""
    import ast
    import asyncio

    code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def _insitu_expand(cmd: str, values: dict[str, _InsituAny]) -> str:
    for text, value in values.items():
        cmd = cmd.replace("{" + text + "}", str(value)).replace("$" + text, str(value))
    return cmd


def _insitu_shell(cmd: str, values: dict[str, _InsituAny]) -> None:
    """``!cmd`` in the notebook."""
    _insitu_sys.stdout.flush()
    _insitu_subprocess.run(_insitu_expand(cmd, values), shell=True, check=False)


def _insitu_getoutput(cmd: str, values: dict[str, _InsituAny]) -> list[str]:
    """``v = !cmd`` in the notebook: the output's lines."""
    done = _insitu_subprocess.run(
        _insitu_expand(cmd, values), shell=True, check=False, capture_output=True, text=True
    )
    return done.stdout.splitlines()


class _insitu_capture:  # named like the other helpers the rewritten cell calls
    """``%%capture out``: ``out.stdout``, ``out.stderr`` and ``out.show()`` as IPython has."""

    def __enter__(self) -> "_insitu_capture":
        import contextlib
        import io

        self._out, self._err = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self._out))
        self._stack.enter_context(contextlib.redirect_stderr(self._err))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.stdout, self.stderr = self._out.getvalue(), self._err.getvalue()
        del self._out, self._err, self._stack

    def show(self) -> None:
        print(self.stdout, end="")
        print(self.stderr, end="", file=_insitu_sys.stderr)

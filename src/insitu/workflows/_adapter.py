"""insitu export adapter: runs a component's task.py (the run contract, unchanged) for a
workflow engine that passes files and small values, not ``outputs.json`` entries.

    python insitu_adapter.py cwl                 # in a CWL tool's output directory

Before the task: the engine's values become ``inputs.json`` (a file is
``{"kind": "file", ...}`` with its format read from its name, a list of files, a scattered
step's outputs, becomes one list value, any other value ``{"kind": "json", ...}``). After
it: each output of ``task_out/outputs.json`` becomes one file ``OUT/<name><suffix>`` (JSON
values as ``.json``), and a list output named in ``split`` also one file per element,
``items/<name>/<k><suffix>`` (what a CWL ``scatter`` runs over).

In an exported folder this file follows a copy of the task runtime (``_insitu_read``,
``_insitu_write``) and imports nothing of insitu. Exit status: the task's, or 5 when an
output to split is not a list.
"""

import contextlib as _contextlib
import json as _json
import os as _os
import subprocess as _subprocess
import sys as _sys
from typing import Any as _Any

with _contextlib.suppress(ImportError):  # in an exported folder: pasted above this file
    from insitu.workflows._runtime import _insitu_read, _insitu_write

SUFFIX = {
    "json": ".json",
    "npy": ".npy",
    "parquet": ".parquet",
    "netcdf-dataarray": ".dataarray.nc",
    "netcdf": ".nc",
    "pickle": ".pkl",
}


def format_of(path: str) -> str:
    """The run contract's format of a port file, from its name (longest suffix first)."""
    for fmt, suffix in sorted(SUFFIX.items(), key=lambda kv: -len(kv[1])):
        if path.endswith(suffix):
            return fmt
    return "pickle"


def _is_file(value: _Any) -> bool:
    return isinstance(value, dict) and value.get("class") == "File"


def entry_of(name: str, value: _Any, scratch: str) -> dict[str, _Any]:
    """The inputs.json entry of one engine value (a CWL File, a list of them, or JSON)."""
    if _is_file(value):
        return {"kind": "file", "path": value["path"], "format": format_of(value["path"])}
    if isinstance(value, list) and value and all(_is_file(v) for v in value):
        merged = [_insitu_read(name, entry_of(name, v, scratch), "/") for v in value]
        return absolute(_insitu_write(name, merged, scratch), scratch)
    return {"kind": "json", "value": value}


def absolute(entry: dict[str, _Any], base: str) -> dict[str, _Any]:
    if entry.get("kind") == "file":
        entry = {**entry, "path": _os.path.abspath(_os.path.join(base, entry["path"]))}
    return entry


def run_task(
    inputs: dict[str, _Any], task: str = "task.py", outdir: str = "task_out"
) -> dict[str, _Any]:
    """Write inputs.json, run the task (its exit status ends this process on failure), and
    return its outputs.json."""
    with open("inputs.json", "w", encoding="utf-8") as fh:
        _json.dump(inputs, fh)
    code = _subprocess.call([_sys.executable, task, "--inputs", "inputs.json", "--outdir", outdir])
    if code != 0:
        raise SystemExit(code)
    with open(_os.path.join(outdir, "outputs.json"), encoding="utf-8") as fh:
        return dict(_json.load(fh))


def _place(entry: dict[str, _Any], value_dir: str, target: str) -> str:
    """Move or write one outputs.json entry to ``target`` + its suffix; that path."""
    path = target + SUFFIX.get(entry.get("format", "json"), ".pkl")
    _os.makedirs(_os.path.dirname(path) or ".", exist_ok=True)
    if entry["kind"] == "json":
        with open(path, "w", encoding="utf-8") as fh:
            _json.dump(entry["value"], fh)
    else:
        _os.replace(_os.path.join(value_dir, entry["path"]), path)
    return path


def publish(outputs: dict[str, dict[str, _Any]], outdir: str, split: list[str]) -> None:
    """One file per output in ``OUT/``; the elements of each output in ``split`` in
    ``items/<name>/``."""
    for name, entry in outputs.items():
        if name in split:
            value = _insitu_read(name, entry, outdir)
            if not isinstance(value, list | tuple):
                print(
                    f"insitu adapter: E-WF-MAP: output {name!r} is a "
                    f"{type(value).__name__}, not a list; a map runs over a list",
                    file=_sys.stderr,
                )
                raise SystemExit(5)
            folder = _os.path.join("items", name)
            _os.makedirs(folder, exist_ok=True)
            for k, item in enumerate(value):
                key = f"{k:05d}"
                _place(_insitu_write(key, item, folder), folder, _os.path.join(folder, key))
        _place(entry, outdir, _os.path.join("OUT", name))


def cwl_main() -> None:
    with open("cwl_inputs.json", encoding="utf-8") as fh:
        given = _json.load(fh)
    split = list(given.pop("insitu_split", None) or [])
    _os.makedirs("merged", exist_ok=True)
    inputs = {
        name: entry_of(name, value, "merged") for name, value in given.items() if value is not None
    }
    publish(run_task(inputs), "task_out", split)


if __name__ == "__main__":
    if _sys.argv[1:2] == ["cwl"]:
        cwl_main()
    else:
        print("usage: python insitu_adapter.py cwl", file=_sys.stderr)
        raise SystemExit(2)

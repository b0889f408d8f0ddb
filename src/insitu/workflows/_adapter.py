"""insitu export adapter: runs a component's task.py (the run contract, unchanged) for a
workflow engine that passes files and small values, not ``outputs.json`` entries.

    python insitu_adapter.py cwl                 # in a CWL tool's output directory
    python insitu_adapter.py argo SPEC NAME=...  # in an Argo pod (see argo.py)

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


def _fail(message: str) -> None:
    print(f"insitu adapter: {message}", file=_sys.stderr)
    raise SystemExit(5)


def _argo_input(port: str, text: str, merge: bool, root: str) -> dict[str, _Any]:
    """One input of an Argo pod: its producer's parameter (an outputs.json entry; a file
    entry names the artifact at ``root/in/<port>/`` or a path on the shared volume), or
    for a mapped producer the list of its branches' entries, merged into one list."""
    got = _json.loads(text)
    if not merge:
        if got.get("kind") == "file" and not _os.path.isabs(got["path"]):
            got = {**got, "path": _os.path.join(root, "in", port, got["path"])}
        return dict(got)
    entries = [_json.loads(e) if isinstance(e, str) else e for e in got]
    if all(e.get("kind") == "json" for e in entries):
        return {"kind": "json", "value": [e["value"] for e in entries]}
    if not all(_os.path.isabs(e.get("path", "")) for e in entries if e.get("kind") == "file"):
        _fail(
            f"input {port!r}: the branches of a map gave files, which Argo cannot gather as "
            "artifacts; export with --storage pvc"
        )
    merged = [_insitu_read(port, e, "/") for e in entries]
    _os.makedirs("merged", exist_ok=True)
    return absolute(_insitu_write(port, merged, "merged"), "merged")


def argo_main(argv: list[str]) -> None:
    """``argo SPEC NAME=TEXT ...`` in a pod: SPEC (JSON) says which inputs are ports (and
    which of them merge a map's branches), which are parameters, which outputs to split,
    the storage (``artifacts``: files in ``ROOT/ports/<name>/``; ``pvc``: in the work dir
    on the shared volume, named by absolute path) and the parameter budget in bytes."""
    spec = _json.loads(argv[0])
    values = dict(a.split("=", 1) for a in argv[1:])
    root = _os.environ.get("INSITU_ARGO_ROOT", "/insitu")
    work = values.pop("work", "") or _os.path.join(root, "work")
    _os.makedirs(work, exist_ok=True)
    _os.chdir(work)
    inputs = {
        port: _argo_input(port, values[f"in-{port}"], merge, root)
        for port, merge in spec["inputs"].items()
    }
    for name in spec["params"]:
        if values.get(name, "") != "":
            inputs[name] = {"kind": "json", "value": _json.loads(values[name])}
    outputs = run_task(inputs, spec["task"], "task_out")
    pvc = spec["storage"] == "pvc"
    params: dict[str, _Any] = {}
    refs: dict[str, dict[str, _Any]] = {}
    for name, entry in outputs.items():
        folder = _os.path.join(work if pvc else root, "ports", name)
        path = _place(entry, "task_out", _os.path.join(folder, name))
        fmt = entry.get("format", "json")
        refs[name] = {
            "kind": "file",
            "format": fmt,
            "path": path if pvc else _os.path.basename(path),
        }
        params[name] = entry if entry["kind"] == "json" else refs[name]
    for name in spec["split"]:
        value = _insitu_read(name, outputs[name], "task_out")
        if not isinstance(value, list | tuple):
            _fail(f"E-WF-MAP: output {name!r} is a {type(value).__name__}, not a list")
        items = []
        for k, item in enumerate(value):
            e = _insitu_write(f"{k:05d}", item, _os.path.join(work, "items", name))
            if e["kind"] == "file" and not pvc:
                _fail(
                    f"output {name!r}: element {k} is a file; a map over files needs "
                    "--storage pvc (Argo passes a withParam list as a parameter)"
                )
            items.append(absolute(e, _os.path.join(work, "items", name)))
        params[f"{name}-items"] = items

    def size(v: _Any) -> int:
        return len(_json.dumps(v))

    # Argo keeps a pod's output parameters in one annotation: below the budget, the largest
    # inline values go by reference (their file is written already) until the rest fits
    inline = sorted(
        (n for n in outputs if params[n] is not refs[n]), key=lambda n: -size(params[n])
    )
    while inline and sum(size(v) for v in params.values()) >= spec["budget"]:
        name = inline.pop(0)
        params[name] = refs[name]
    if sum(size(v) for v in params.values()) >= spec["budget"]:
        _fail(
            f"the map lists alone are {sum(size(v) for v in params.values())} bytes, over the "
            f"{spec['budget']}-byte parameter budget of a pod; make the lists shorter"
        )
    folder = _os.path.join(root, "params")
    _os.makedirs(folder, exist_ok=True)
    for name, value in params.items():
        with open(_os.path.join(folder, name), "w", encoding="utf-8") as fh:
            _json.dump(value, fh)


if __name__ == "__main__":
    if _sys.argv[1:2] == ["cwl"]:
        cwl_main()
    elif _sys.argv[1:2] == ["argo"]:
        argo_main(_sys.argv[2:])
    else:
        print("usage: python insitu_adapter.py cwl | argo SPEC NAME=VALUE...", file=_sys.stderr)
        raise SystemExit(2)

"""The content-hash cache of workflow runs (specification section 6).

A node's key is the sha256 of its component's hash, the content hash of every input (the
``sha256`` its producer wrote in ``outputs.json``), its parameter values and its ``map``:
the same code on the same data gives the same key whatever run, node name or workflow it
is in. A finished node's ``out/`` is kept under ``<cache>/<key[:2]>/<key>/`` (files
hard-linked where the file system allows, else copied); a hit links the files back into the
new run's ``out/``. Entries are complete or absent: they are written to a temporary folder
and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["NodeCache", "cache_key"]


def cache_key(
    component_hash: str,
    inputs: dict[str, dict[str, Any]],
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> str:
    """sha256 over the component hash, the inputs' content hashes and the parameter values."""
    digests = {}
    for name, entry in inputs.items():
        digest = entry.get("sha256")
        if not digest:  # an inline value given by hand: hash its JSON
            blob = json.dumps(entry.get("value"), sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(blob.encode()).hexdigest()
        digests[name] = digest
    blob = json.dumps(
        {"component": component_hash, "inputs": digests, "params": params, "extra": extra or {}},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (copy across file systems)."""
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            try:
                os.link(Path(root) / f, target / f)
            except OSError:
                shutil.copy2(Path(root) / f, target / f)


class NodeCache:
    """Finished nodes' outputs by key, under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, outdir: Path) -> dict[str, Any] | None:
        """Link the cached outputs of ``key`` into ``outdir``; their outputs.json, or None."""
        entry = self.path(key)
        if not (entry / "outputs.json").is_file():
            return None
        if outdir.exists():
            shutil.rmtree(outdir)
        _link_tree(entry, outdir)
        outputs: dict[str, Any] = json.loads((outdir / "outputs.json").read_text(encoding="utf-8"))
        return outputs

    def put(self, key: str, outdir: Path) -> None:
        """Keep ``outdir`` (a finished node's outputs) as the entry of ``key``."""
        entry = self.path(key)
        if (entry / "outputs.json").is_file():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=entry.parent))
        try:
            _link_tree(outdir, tmp)
            os.replace(tmp, entry)
        except OSError:  # another run put the same entry first
            shutil.rmtree(tmp, ignore_errors=True)

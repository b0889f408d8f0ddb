"""Imports to pinned distributions, as installed where the notebook ran (specification 3).

The import name → distribution map (``importlib.metadata.packages_distributions()``) and the
versions are read by the *kernel's* interpreter in a subprocess, so the requirements are
those of the environment the notebook ran in, and no user module is ever imported by the
analyser. What that environment lacks is looked up in a small shipped table
(``sklearn → scikit-learn``), then guessed from the import name (``W-DEP-GUESS``). The
standard library is left out; a module kept next to the notebook is copied into the build
context instead (``W-LOCAL-MODULE``). ``%pip install`` hints are merged in.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from insitu.workflows.cell import Import
from insitu.workflows.codes import W_DEP_GUESS, W_LOCAL_MODULE, Diagnostic

__all__ = [
    "FALLBACK",
    "Dependency",
    "Environment",
    "kernel_python",
    "probe",
    "resolve_dependencies",
]

FALLBACK = {
    "sklearn": "scikit-learn",
    "cv2": "opencv-python-headless",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "skimage": "scikit-image",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "attr": "attrs",
    "google.protobuf": "protobuf",
    "netCDF4": "netCDF4",
    "osgeo": "GDAL",
    "mpl_toolkits": "matplotlib",
    "pkg_resources": "setuptools",
    "serial": "pyserial",
    "usb": "pyusb",
    "magic": "python-magic",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "git": "GitPython",
    "Bio": "biopython",
    "ujson": "ujson",
}
"""Import names whose distribution has another name, for imports the kernel lacks."""

Origin = Literal["environment", "table", "guess", "pip-hint"]

_PROBE = r"""
import importlib.metadata as m, json, sys
names = json.loads(sys.argv[1])
dists = m.packages_distributions()
out = {}
for n in names:
    found = []
    for d in dists.get(n, []):
        try:
            found.append([d, m.version(d)])
        except Exception:
            pass
    out[n] = found
print(json.dumps({"python": "{}.{}".format(*sys.version_info[:2]), "found": out}))
"""


@dataclass(frozen=True)
class Dependency:
    """One distribution a component needs: pinned when the kernel has it installed."""

    distribution: str
    version: str | None
    import_names: tuple[str, ...]
    origin: Origin
    optional: bool = False

    @property
    def requirement(self) -> str:
        """The requirements.txt line (``name==version``, or a pip hint as written)."""
        if self.origin == "pip-hint" and self.version is None:
            return self.distribution
        return f"{self.distribution}=={self.version}" if self.version else self.distribution

    def as_dict(self) -> dict[str, object]:
        """component.json form."""
        return {
            "distribution": self.distribution,
            "version": self.version,
            "import_names": list(self.import_names),
            "origin": self.origin,
            "optional": self.optional,
        }


@dataclass(frozen=True)
class Environment:
    """What the kernel's interpreter has installed for some import names."""

    python: str
    version: str
    found: dict[str, tuple[tuple[str, str], ...]]


def kernel_python(kernel_name: str | None = None) -> str:
    """The interpreter of a Jupyter kernel spec (``python3`` and unknown kernels: this one)."""
    if kernel_name:
        try:
            from jupyter_client.kernelspec import KernelSpecManager

            argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
            exe = argv[0] if argv else ""
            if exe in ("python", f"python{sys.version_info[0]}"):
                return sys.executable  # what jupyter_client itself runs for these
            if exe and "{" not in exe:
                found = exe if Path(exe).is_absolute() else shutil.which(exe)
                if found:
                    return found
        except Exception:  # no jupyter_client, no such kernel: this interpreter
            pass
    return sys.executable


@lru_cache(maxsize=64)
def _probe(python: str, names: tuple[str, ...]) -> Environment:
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, json.dumps(list(names))],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        data = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return Environment(python, "{}.{}".format(*sys.version_info[:2]), {})
    found = {k: tuple((d, v) for d, v in vs) for k, vs in data["found"].items()}
    return Environment(python, str(data["python"]), found)


def probe(python: str, names: list[str]) -> Environment:
    """Ask ``python`` (in a subprocess) which distributions provide these import names."""
    return _probe(python, tuple(sorted(set(names))))


_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(==\s*([^\s;,]+))?")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve_dependencies(
    imports: list[Import],
    env: Environment,
    *,
    notebook_dir: Path | None = None,
    pip_hints: list[str] | None = None,
) -> tuple[list[Dependency], list[Path], list[Diagnostic]]:
    """Dependencies of a component (sorted by distribution), its local modules, findings."""
    by_dist: dict[str, Dependency] = {}
    local: dict[Path, None] = {}
    diagnostics: list[Diagnostic] = []
    tops: dict[str, bool] = {}
    for imp in imports:
        if imp.level:  # relative import: a package next to the notebook
            tops.setdefault("." * imp.level + imp.module, imp.optional)
            continue
        top = imp.top
        tops[top] = tops.get(top, True) and imp.optional
    for top, optional in sorted(tops.items()):
        if top in sys.stdlib_module_names or top in ("__future__", ""):
            continue
        relative = top.startswith(".")
        hit = None
        if notebook_dir is not None:
            name = top.lstrip(".").split(".")[0]
            candidates = [notebook_dir / f"{name}.py", notebook_dir / name / "__init__.py"]
            hit = next((c for c in candidates if name and c.exists()), None)
        if hit is not None or relative:  # a relative import is local by definition
            if hit is not None:
                local[hit if hit.name != "__init__.py" else hit.parent] = None
            diagnostics.append(
                W_LOCAL_MODULE.at(
                    f"{top!r} is a module next to the notebook; it is copied into the build "
                    "context (when found there). Make it an installable package to version it.",
                    name=top,
                )
            )
            continue
        found = env.found.get(top, ())
        if found:
            for dist, version in found:
                key = _norm(dist)
                old = by_dist.get(key)
                names = tuple(sorted({*(old.import_names if old else ()), top}))
                by_dist[key] = Dependency(
                    dist,
                    version,
                    names,
                    "environment",
                    optional and (old.optional if old else True),
                )
            continue
        # an optional import the kernel lacks: recorded, not required (the cell runs without)
        if top in FALLBACK:
            dist, origin = FALLBACK[top], "table"
        else:
            dist, origin = top, "guess"
        if origin == "guess" and not optional:
            diagnostics.append(
                W_DEP_GUESS.at(
                    f"import {top!r} is not installed where the notebook ran ({env.python}); "
                    f"guessed distribution {top!r}. Install it in the kernel, or add "
                    f"'%pip install <distribution>' to the notebook.",
                    name=top,
                )
            )
        key = _norm(dist)
        if key not in by_dist:
            by_dist[key] = Dependency(dist, None, (top,), origin, optional)  # type: ignore[arg-type]
    for hint in pip_hints or []:
        m = _REQ.match(hint)
        if not m:
            continue
        key = _norm(m.group(1))
        old = by_dist.get(key)
        if old is not None and old.version and not m.group(4):
            continue  # the environment's pin is more precise than an unpinned hint
        by_dist[key] = Dependency(
            m.group(1) + (m.group(2) or ""), m.group(4), old.import_names if old else (), "pip-hint"
        )
    deps = sorted(by_dist.values(), key=lambda d: _norm(d.distribution))
    return deps, list(local), diagnostics

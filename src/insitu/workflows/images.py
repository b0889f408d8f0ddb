"""Container images of a workflow's components (``insitu workflow build``), made with a real
engine (podman, else buildah) and without a registry.

Each image is ``FROM`` a base image already on this machine (default the Debian bookworm
minbase image that ``scripts/podman.sh image`` makes with debootstrap), gets a venv in
``/opt/venv`` with the component's pinned requirements installed offline from a wheelhouse
this interpreter's pip fills (so the base image's ``python3`` must be this Python's minor
version), and the component's files in ``/component`` (``task.py``, its local modules).
No ``ENTRYPOINT``: CWL runners and Argo give the command. Tagged ``PREFIX/<name>:<hash12>``,
the name the CWL and Argo exports use; an image with that tag is kept unless it was made on
another runtime layer.

Where no engine or no base image is here, :class:`~insitu.errors.BackendUnavailable` says
so and what to do; nothing is pretended.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from insitu.errors import BackendUnavailable, ComputeError
from insitu.workflows.cwl import image_name
from insitu.workflows.workflow import Workflow

__all__ = ["DEFAULT_BASE_IMAGE", "BuiltImage", "build_images", "container_engine"]

DEFAULT_BASE_IMAGE = "localhost/insitu-debian-bookworm-min:1"

# What the task runtime reads and writes values with (npy, parquet, netCDF, cloudpickle): a
# component reading a DataFrame needs pandas even when its cell imports nothing.
RUNTIME_DISTRIBUTIONS = ("numpy", "pandas", "pyarrow", "xarray", "netCDF4", "cloudpickle")

_ENV = """\
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 PYTHONUNBUFFERED=1
"""
_INSTALL = """\
COPY requirements.txt /tmp/requirements.txt
COPY wheels /tmp/wheels
RUN {venv}/opt/venv/bin/pip install -q --no-index --no-cache-dir --disable-pip-version-check \\
      --find-links /tmp/wheels -r /tmp/requirements.txt \\
 && rm -rf /tmp/wheels /tmp/requirements.txt
"""
_RUNTIME_FILE = (
    "# Made by insitu workflow build: the task runtime's libraries\nFROM {base}\n"
    + _ENV
    + _INSTALL.format(venv="python3 -m venv /opt/venv && ")
)
_COMPONENT_FILE = (
    "# Made by insitu workflow build: {name} {hash}\nFROM {base}\n"
    + _INSTALL.format(venv="")
    + "COPY component/ /component/\nWORKDIR /component\n"
)


@dataclass(frozen=True)
class BuiltImage:
    """One component's image."""

    component: str
    image: str
    engine: str
    built: bool  # False: the image was there already (its tag holds the component's hash)


def container_engine() -> str:
    """``podman`` or ``buildah``, whichever is on PATH (podman first)."""
    for engine in ("podman", "buildah"):
        if shutil.which(engine):
            return engine
    raise BackendUnavailable(
        "No container engine here: neither podman nor buildah is on PATH, so no image was "
        "built. Install one (as root: scripts/podman.sh image installs podman and makes the "
        "base image) and run 'insitu workflow build' again; the CWL export runs without "
        "images meanwhile (cwltool --no-container)."
    )


def _has_image(engine: str, image: str) -> bool:
    cmd = [engine, "image", "exists", image] if engine == "podman" else [engine, "inspect", image]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def _labels(engine: str, image: str) -> dict[str, str]:
    """An image's labels ({} when there is no such image)."""
    if engine == "podman":
        cmd = [engine, "image", "inspect", "--format", "{{json .Labels}}", image]
    else:
        cmd = [engine, "inspect", "--type", "image", "--format", "{{json .OCIv1.Config.Labels}}"]
        cmd.append(image)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {}
    return dict(json.loads(done.stdout or "null") or {})


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ComputeError(f"{what} failed (exit {done.returncode}):\n{tail}")


def build_images(
    wf: Workflow,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    prefix: str = "localhost/insitu",
    engine: str | None = None,
) -> list[BuiltImage]:
    """Build the image of every component of ``wf`` (once per component; an image already
    tagged is kept: the tag holds the component's hash)."""
    engine = engine or container_engine()
    if not _has_image(engine, base_image):
        raise BackendUnavailable(
            f"The base image {base_image!r} is not on this machine, and there is no registry "
            "to pull it from here. Make it with 'scripts/podman.sh image' (a Debian minbase "
            "made by debootstrap from the machine's own mirror), or pass --base-image an "
            f"image '{engine} images' lists. Nothing was built."
        )
    runtime = _runtime_image(engine, base_image, prefix)
    built: list[BuiltImage] = []
    seen: set[Path] = set()
    for nid in sorted(wf.nodes):
        folder = wf.component_dir(nid)
        if folder in seen:
            continue
        seen.add(folder)
        meta = json.loads((folder / "component.json").read_text(encoding="utf-8"))
        image = image_name(meta, prefix)
        # built again when missing, or made on another runtime layer (its label says which)
        fresh = _labels(engine, image).get("org.insitu.runtime") != runtime
        if fresh:
            with tempfile.TemporaryDirectory(prefix="insitu-build-") as tmp:
                ctx = Path(tmp)
                shutil.copytree(
                    folder, ctx / "component", ignore=shutil.ignore_patterns("Dockerfile")
                )
                text = (folder / "requirements.txt").read_text(encoding="utf-8")
                containerfile = _COMPONENT_FILE.format(
                    name=meta["name"], hash=meta["hash"], base=runtime
                )
                labels = [f"org.insitu.component={meta['hash']}", f"org.insitu.runtime={runtime}"]
                _build(engine, ctx, text, containerfile, image, *labels)
        built.append(BuiltImage(folder.name, image, engine, fresh))
    return built


def _runtime_image(engine: str, base: str, prefix: str) -> str:
    """The image every component starts from: ``base`` plus a venv with the runtime's
    libraries at this interpreter's versions (those installed here); built once."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in RUNTIME_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    text = "\n".join(pins) + "\n"
    digest = hashlib.sha256(f"{base}\n{text}{_RUNTIME_FILE}".encode()).hexdigest()[:12]
    image = f"{prefix}/runtime:{digest}"
    if not _has_image(engine, image):
        with tempfile.TemporaryDirectory(prefix="insitu-build-") as tmp:
            _build(
                engine,
                Path(tmp),
                text,
                _RUNTIME_FILE.format(base=base),
                image,
                "org.insitu.role=runtime",
            )
    return image


def _build(
    engine: str, ctx: Path, requirements: str, containerfile: str, image: str, *labels: str
) -> None:
    """Build ``image`` in ``ctx``: the requirements' wheels fetched by this interpreter's pip
    (a package index or its cache), so the build itself needs no network."""
    (ctx / "requirements.txt").write_text(requirements, encoding="utf-8")
    (ctx / "wheels").mkdir()
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(ctx / "wheels"),
            "-r",
            str(ctx / "requirements.txt"),
        ],
        f"collecting the wheels for {image}",
    )
    (ctx / "Containerfile").write_text(containerfile, encoding="utf-8")
    # chroot isolation: runc cannot run RUN steps under this machine's hybrid cgroups (and
    # chroot takes only the host's network, unused: pip installs from the wheels)
    verb = "build" if engine == "podman" else "bud"
    cmd = [engine, verb, "-q", "--isolation=chroot", "--network=host"]
    cmd += [x for label in labels for x in ("--label", label)]
    cmd += ["-t", image, "-f", str(ctx / "Containerfile"), str(ctx)]
    _run(cmd, f"{engine} {verb} of {image}")

"""README runs as written: its shell commands and Python snippets, on the demo archive.

Every ```sh, ```bash and ```python block of README.md runs, in the order written, unless the
line before it is ``<!-- not run: REASON -->`` (a reason is required; such blocks are few).
Shell commands run one by one in bash with the project's ``insitu`` first on the PATH, in a
scratch folder, against their own data directory with the demo archive indexed and a data
service started with ``insitu serve --detach``. Each must succeed and print something that
is not an empty answer. Python blocks are written to a script file each and run with this
venv's Python in a subprocess, as a user who copies them would (so a missing ``__main__``
guard fails); each must succeed and print something.

One rewrite, said here: the data service listens on a free port rather than 8470, and the
commands' ``127.0.0.1:8470`` say that port (another platform may hold 8470 on this machine).
``curl`` runs with ``-fsS`` so that an HTTP error fails the command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.access.conftest import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(sh|bash|python)\n(.*?)^```$", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (\S.*?) -->\s*$")
ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_]\w*)=\$\((.*)\)\s*(?:#.*)?$")
EMPTY_ANSWER = re.compile(r"^0 datasets match|\"total\":\s*0\b", re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    not_run: str | None


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for m in BLOCK.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(m.group(1), m.group(2), line, reason.group(1) if reason else None))
    return blocks


def commands(code: str) -> list[str]:
    """The shell block's commands: continuation lines joined, comment-only lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


@pytest.fixture
def tour(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, int]]:
    """Environment, working folder and service port of a user who followed 'make up'."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {
        "INSITU_DATA_DIR": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "INSITU_ACCESS__PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "MPLBACKEND": "Agg",
    }
    work = tmp_path / "work"
    work.mkdir()

    def insitu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["insitu", *args], env=env, cwd=work, capture_output=True, text=True, timeout=600
        )

    for args in (("demo",), ("serve", "--detach")):
        out = insitu(*args)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    try:
        yield env, work, port
    finally:
        insitu("cluster", "down")
        insitu("serve", "--stop")


def test_exclusions_are_few_and_say_why() -> None:
    blocks = readme_blocks()
    skipped = [b for b in blocks if b.not_run]
    assert len(blocks) >= 8 and len(skipped) <= 3, [(b.line, b.not_run) for b in skipped]
    assert all(len(b.not_run or "") > 20 for b in skipped)
    assert "<!-- not run" not in "".join(b.code for b in blocks)  # the marker is never inside


def test_readme_runs_as_written(tour: tuple[dict[str, str], Path, int]) -> None:
    env, work, port = tour
    failures: list[str] = []
    ran = 0
    for n, block in enumerate(readme_blocks()):
        if block.not_run:
            continue
        code = block.code.replace("127.0.0.1:8470", f"127.0.0.1:{port}")
        if block.lang == "python":
            script = work / f"readme_{n}.py"
            script.write_text(code)
            out = subprocess.run(
                [sys.executable, script.name],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=900,
            )
            ran += 1
            if out.returncode != 0 or not out.stdout.strip():
                failures.append(
                    f"README line {block.line}, Python block (exit {out.returncode}):\n"
                    f"{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
                )
            continue
        for command in commands(code):
            assign = ASSIGN.match(command)
            shell = assign.group(2) if assign else command
            out = subprocess.run(
                ["bash", "-o", "pipefail", "-c", 'curl() { command curl -fsS "$@"; }\n' + shell],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=900,
            )
            ran += 1
            if assign and out.returncode == 0:
                env[assign.group(1)] = out.stdout.strip()
            if out.returncode != 0 or not out.stdout.strip() or EMPTY_ANSWER.search(out.stdout):
                failures.append(
                    f"README line {block.line}: {command}\n(exit {out.returncode})\n"
                    f"{out.stdout[-1500:]}\n{out.stderr[-1500:]}"
                )
    assert ran >= 20
    assert not failures, "\n\n".join(failures)

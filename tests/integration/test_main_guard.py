"""A script that starts a local cluster at its top level is told to add the main guard.

Worker processes are spawned and run the main script again as they start: without
``if __name__ == "__main__":`` every worker would start a cluster of its own and fail, and
the user would read "WorkerNanny failed to start". The check refuses before any process
starts, and a guarded script runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

UNGUARDED = """
import insitu

with insitu.cluster(workers=1) as client:
    print("result", client.submit(sum, [1, 2]).result())
"""

GUARDED = """
import insitu


def main():
    with insitu.cluster(workers=1) as client:
        print("result", client.submit(sum, [1, 2]).result())


if __name__ == "__main__":
    main()
"""


def _run(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / name
    script.write_text(source)
    (tmp_path / "none.toml").write_text("")
    env = {
        **os.environ,
        "INSITU_DATA_DIR": str(tmp_path / "data"),
        "INSITU_CONFIG": str(tmp_path / "none.toml"),
    }
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path: Path) -> None:
    done = _run(tmp_path, "no_guard.py", UNGUARDED)
    assert done.returncode != 0
    assert "ComputeError" in done.stderr and str(tmp_path / "no_guard.py") in done.stderr
    assert 'if __name__ == "__main__":' in done.stderr
    assert "WorkerNanny" not in done.stderr  # refused before any worker process started


def test_a_guarded_script_starts_its_cluster(tmp_path: Path) -> None:
    done = _run(tmp_path, "guarded.py", GUARDED)
    assert done.returncode == 0, done.stderr
    assert "result 3" in done.stdout

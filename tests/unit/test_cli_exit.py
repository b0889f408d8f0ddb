"""The ``insitu`` command leaves its objects out of the interpreter's last collection."""

from __future__ import annotations

import gc

import pytest

from insitu.cli.main import main


def test_the_command_freezes_the_collector_when_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the command is done, the interpreter's exit would collect every object the
    libraries made (0.2-0.3 s of a cold 'insitu compute run'): they are frozen instead."""
    monkeypatch.setattr("sys.argv", ["insitu", "--version"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

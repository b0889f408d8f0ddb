"""``insitu lab --ssh`` and ``insitu tunnel``: notebooks on your own VM login, with nothing
but ``ssh`` on the desktop.

``insitu lab --ssh USER@VM`` makes one ssh connection with the system client (a
``ControlMaster``, so the key or its passphrase is asked for once) and carries everything
over it:

1. a session that runs ``sh -s`` on the VM and reads a short script on its standard input.
   The script picks the remote Python and starts a supervisor, which starts ``jupyter lab``
   under the user's own account, bound to the VM's 127.0.0.1 on a port the VM picks, and
   reports that port. The token is made here with :mod:`secrets` and travels inside the
   script, so it reaches the server through its environment (``JUPYTER_TOKEN``) and never
   appears on a command line that ``ps`` shows to the VM's other users;
2. a local forward to that port (``ssh -O forward -L``).

The session's standard input is the supervisor's lifeline: when it ends (Ctrl-C here, or
the connection drops) the supervisor stops JupyterLab, which shuts its kernels down, kills
whatever is left of them, and exits; the session ends, and the master connection, with the
tunnel, is closed.

``insitu tunnel USER@VM`` is the forward alone, for a hub on the VM's loopback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from insitu.errors import BackendUnavailable, InvalidRequest

__all__ = ["lab_command", "tunnel_command"]

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

# What the supervisor on the VM says, one line each on the session's stdout.
_MARK = "insitu-lab:"

# The supervisor, run by the remote Python with the ssh channel on file descriptor 3. Kept
# to the Python of older VMs (3.6+). Placeholders: @TIMEOUT@.
_SUPERVISOR = r"""
import json, os, select, signal, subprocess, sys, time
from contextlib import suppress

TIMEOUT, GRACE, LIFELINE = float("@TIMEOUT@"), 15.0, 3

def say(*words):
    with suppress(OSError, ValueError):
        sys.stdout.write("insitu-lab: " + " ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()

def stat(pid):
    with suppress(OSError, IndexError), open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()  # [state, ppid, ...]; [19]: start time

def family(root):
    # (pid, start time) of every descendant: kernels run in sessions of their own.
    children, found, todo = {}, [], [root]
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        fields = stat(int(name)) if name.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append((int(name), fields[19]))
    while todo:
        for pid, start in children.get(todo.pop(), []):
            found.append((pid, start))
            todo.append(pid)
    return found

def stop(proc, info):
    if proc.poll() is None:
        kin = family(proc.pid)
        proc.terminate()  # JupyterLab shuts its kernels down on SIGTERM
        try:
            proc.wait(GRACE)
        except subprocess.TimeoutExpired:
            with suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid, start in kin:  # what is left of the kernels, if JupyterLab hung
            fields = stat(pid)
            if fields and fields[19] == start:
                with suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    with suppress(OSError):
        os.remove(info)  # JupyterLab's own record of itself, left if it was killed

def port_of(info):
    with suppress(OSError, ValueError, KeyError, TypeError), open(info) as f:
        return int(json.load(f)["port"])

def tail(path, n=12):
    with suppress(OSError), open(path, errors="replace") as f:
        return [line.rstrip() for line in f.readlines()[-n:] if line.strip()]
    return []

def main():
    from jupyter_core.paths import jupyter_runtime_dir

    home = os.path.expanduser("~")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    logdir = os.path.join(cache, "insitu")
    os.makedirs(logdir, mode=0o700, exist_ok=True)
    logfile = os.path.join(logdir, "lab-%d.log" % os.getpid())
    # Logged in as root, root's own account is what the user asked for.
    allow_root = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             "--ServerApp.port=0", "--ServerApp.port_retries=0"] + allow_root,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=home,
            start_new_session=True)
    info = os.path.join(jupyter_runtime_dir(), "jpserver-%d.json" % proc.pid)
    def interrupted(signum, frame):
        raise SystemExit(1)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    port, deadline, clean = None, time.time() + TIMEOUT, False
    try:
        while True:
            if proc.poll() is not None:
                clean = proc.returncode == 0  # shut down from JupyterLab's File menu
                say("exited", proc.returncode, logfile)
                for line in tail(logfile):
                    say("log", line)
                return 4
            if port is None:
                port = port_of(info)
                if port is not None:
                    say("ready", port, proc.pid, logfile)
                elif time.time() > deadline:
                    say("timeout", logfile)
                    return 5
            ready, _, _ = select.select([LIFELINE], [], [], 1.0 if port else 0.2)
            if ready and not os.read(LIFELINE, 4096):
                clean = True  # the desktop side closed the session (or the connection dropped)
                return 0
    finally:
        stop(proc, info)
        if clean:
            with suppress(OSError):
                os.remove(logfile)
        say("stopped")

sys.exit(main())
"""

# Read by ``sh -s`` on the VM. Placeholders: @CANDIDATES@ (quoted words), @TOKEN@ (hex),
# @SUPERVISOR@. Every command but the last gets /dev/null as its stdin: the rest of this
# script, and then the lifeline, must stay for the shell and the supervisor.
_REMOTE_SH = r"""umask 077
insitu_python() {
  p=$(command -v insitu 2>/dev/null) || p="$HOME/.local/bin/insitu"
  [ -f "$p" ] || return 0
  line=$(head -n 1 "$p" </dev/null)
  case $line in
    '#!/'*' '*) ;;
    '#!/'*) printf '%s\n' "${line#??}" ;;
  esac
}
tried=
for py in @CANDIDATES@; do
  [ -n "$py" ] || continue
  if ! command -v "$py" >/dev/null 2>&1; then tried="$tried $py(not-found)"; continue; fi
  if "$py" -c 'import jupyterlab' </dev/null >/dev/null 2>&1; then
    JUPYTER_TOKEN=@TOKEN@
    export JUPYTER_TOKEN
    exec "$py" - 3<&0 <<'INSITU_LAB_SUPERVISOR'
@SUPERVISOR@
INSITU_LAB_SUPERVISOR
  fi
  tried="$tried $py"
done
echo "insitu-lab: missing$tried"
exit 3
"""


def _remote_script(token: str, python: str | None, timeout: float) -> bytes:
    """The script ``sh -s`` runs on the VM (it holds the token: send it on stdin only)."""
    # By default: the Python of the remote insitu command, then python3.
    candidates = shlex.quote(python) if python is not None else '"$(insitu_python)" python3'
    supervisor = _SUPERVISOR.replace("@TIMEOUT@", str(float(timeout)))
    script = (
        _REMOTE_SH.replace("@CANDIDATES@", candidates)
        .replace("@TOKEN@", token)
        .replace("@SUPERVISOR@", supervisor.strip("\n"))
    )
    return script.encode()


# Substrings of ssh's own error lines (lower case), most specific first, and what to do.
_SSH_HINTS: tuple[tuple[str, str], ...] = (
    (
        "could not resolve hostname",
        "the name {host!r} does not resolve here: check its spelling, or use the VM's address",
    ),
    (
        "remote host identification has changed",
        "its host key changed since you last connected: if the VM was rebuilt, remove the old "
        "key with 'ssh-keygen -R {host}' and connect once with 'ssh {dest}' to accept the new one",
    ),
    (
        "host key verification failed",
        "its host key is not known here: connect once with 'ssh {dest}' to check and accept it "
        "(or add it to ~/.ssh/known_hosts)",
    ),
    (
        "permission denied",
        "the VM accepted none of your keys: load yours with 'ssh-add', pass it with -i KEY, "
        "or install it on the VM with 'ssh-copy-id {dest}'",
    ),
    (
        "connection refused",
        "{host!r} refused the connection: check that sshd runs on the VM and that the port "
        "is right (--ssh-option Port=N)",
    ),
    ("timed out", "{host!r} did not answer: check that the VM runs and is reachable"),
    ("no route to host", "there is no route to {host!r}: check the address, VPN or firewall"),
    ("network is unreachable", "the network of {host!r} is unreachable from here"),
)


@dataclass(frozen=True)
class SshLogin:
    """How to log in to the VM: the destination and the user's own ssh options.

    The system ``ssh`` client does the work, so keys come from the user's agent and
    ``~/.ssh`` (or ``identity``), and ``~/.ssh/config`` applies. On a terminal ssh may ask
    for a key's passphrase or to accept a new host key; elsewhere it runs in batch mode
    and fails instead of waiting for an answer.
    """

    destination: str
    identity: Path | None = None
    options: tuple[str, ...] = ()

    @classmethod
    def from_cli(
        cls, destination: str, identity: Path | None, options: tuple[str, ...]
    ) -> SshLogin:
        """Check the values given on the command line; raises :class:`InvalidRequest`."""
        if not destination or destination.startswith("-") or any(c.isspace() for c in destination):
            raise InvalidRequest(
                f"{destination!r} is not an ssh destination: give USER@VM (or a Host of your "
                "~/.ssh/config)."
            )
        for opt in options:
            if "=" not in opt and " " not in opt:
                raise InvalidRequest(
                    f"--ssh-option {opt!r} is not an ssh option: give NAME=VALUE, as after "
                    "'ssh -o', e.g. --ssh-option Port=2222."
                )
        if shutil.which("ssh") is None:
            raise BackendUnavailable(
                "The ssh client is not installed here: install OpenSSH's client "
                "(Debian/Ubuntu: 'apt install openssh-client')."
            )
        return cls(destination, identity, options)

    @property
    def host(self) -> str:
        """The VM's name or address, without the user."""
        return self.destination.rpartition("@")[2]

    @property
    def interactive(self) -> bool:
        """Whether ssh may ask the user something on the terminal."""
        return sys.stdin.isatty()

    def command(self, *args: str) -> list[str]:
        """``ssh`` with the user's options, then ours, then ``args``."""
        cmd = ["ssh"]
        # ssh takes the first value it is given for an option: the user's win over ours.
        for opt in self.options:
            cmd += ["-o", opt]
        if self.identity is not None:
            cmd += ["-i", str(self.identity)]
        cmd += ["-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15"]
        if not self.interactive:
            cmd += ["-o", "BatchMode=yes"]
        return [*cmd, *args]

    def failure(self, stderr: str, doing: str) -> BackendUnavailable:
        """The one-line error for an ssh that failed with ``stderr`` while ``doing``."""
        text = stderr.lower()
        for needle, hint in _SSH_HINTS:
            if needle in text:
                what = hint.format(host=self.host, dest=self.destination)
                return BackendUnavailable(f"ssh to {self.destination} failed: {what}.")
        lines = [x.strip() for x in stderr.splitlines() if x.strip()]
        last = lines[-1] if lines else "ssh gave no message"
        return BackendUnavailable(
            f"ssh to {self.destination} failed while {doing}: {last}. "
            f"Check that 'ssh {self.destination}' works from this terminal."
        )


def _local_port(port: int | None) -> int:
    """``port`` if it is free on this machine's 127.0.0.1, else a free one when not given."""
    with socket.socket() as s:
        # As ssh binds its listener: connections in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port or 0))
        except OSError as exc:
            raise InvalidRequest(
                f"Local port {port} is in use on 127.0.0.1: choose another with --port, "
                "or leave --port out to get a free one."
            ) from exc
        free: int = s.getsockname()[1]
        return free


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (the terminal closed) stop us as Ctrl-C does, and Ctrl-C works
    even when we were started with SIGINT ignored (a background job of a script)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    signals = [getattr(signal, name) for name in names if hasattr(signal, name)]
    old = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class _Lines:
    """The lines a subprocess writes on one stream, read by a thread as they come."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in iter(stream.readline, b""):
                self._queue.put(raw.decode(errors="replace").rstrip("\r\n"))
        self._queue.put(None)

    def next(self, wait: float) -> str | None:
        """The next line, None at the stream's end; raises queue.Empty after ``wait`` s."""
        if self._ended:
            return None
        line = self._queue.get(timeout=max(0.0, wait))
        self._ended = line is None
        return line

    def rest(self, wait: float = 2.0) -> list[str]:
        """The lines until the end, or until none comes for ``wait`` s."""
        lines: list[str] = []
        with contextlib.suppress(queue.Empty):
            while (line := self.next(wait)) is not None:
                lines.append(line)
        return lines


def _answers(url: str, token: str | None = None, timeout: float = 5.0) -> int | None:
    """HTTP status of GET ``url`` (proxies ignored), or None when nothing answers."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"token {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _open_browser(url: str) -> bool:
    """Open ``url`` in a graphical browser; never take the terminal with a text browser."""
    graphical = ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    if sys.platform.startswith("linux") and not any(os.environ.get(v) for v in graphical):
        return False
    import webbrowser

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


class _RemoteLab:
    """JupyterLab on the VM and the one ssh connection that carries it (see the module)."""

    def __init__(self, login: SshLogin, timeout: float) -> None:
        self.login = login
        self.timeout = timeout
        # The control socket's path must fit in a socket address (about 100 bytes).
        short = len(tempfile.gettempdir()) < 60
        self._dir = Path(tempfile.mkdtemp(prefix="insitu-lab-", dir=None if short else "/tmp"))
        self._control = self._dir / "cm"
        self._master_pid: int | None = None
        self._session: subprocess.Popen[bytes] | None = None
        self._out: _Lines | None = None
        self._err: _Lines | None = None
        self._stopped = False  # the VM said that JupyterLab stopped
        self.remote_pid: int | None = None
        self.remote_log = "?"

    def _mux(self, *args: str) -> list[str]:
        return ["ssh", "-o", f"ControlPath={self._control}", *args]

    def _said(self, wait: float) -> str | None:
        """The VM's next line; None once it has said all. Raises queue.Empty after ``wait``."""
        if self._out is None:
            return None
        line = self._out.next(wait)
        self._stopped = self._stopped or line == f"{_MARK} stopped"
        return line

    def connect(self) -> None:
        """Log in: the master connection, in the background once authenticated."""
        cmd = self.login.command(
            "-f", "-N", "-o", "ControlMaster=yes", "-o", f"ControlPath={self._control}",
            # The master outlives its last session by this much, then exits by itself: if
            # this process is killed outright, nothing stays behind for long.
            "-o", "ControlPersist=10",
            self.login.destination,
        )  # fmt: skip
        log.debug("ssh master: %s", shlex.join(cmd))
        # A file, not a pipe, for ssh's messages: the master keeps it once in the background.
        said = self._dir / "master.log"
        with said.open("w+") as stderr:
            try:
                out = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    timeout=None if self.login.interactive else 120,
                )
            except subprocess.TimeoutExpired as exc:
                raise self.login.failure("timed out", "logging in") from exc
        if out.returncode != 0:
            raise self.login.failure(said.read_text(errors="replace"), "logging in")
        check = subprocess.run(
            self._mux("-O", "check", self.login.destination),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        found = re.search(r"pid=(\d+)", check.stderr)
        self._master_pid = int(found.group(1)) if found else None

    def start(self, token: str, python: str | None) -> int:
        """Start JupyterLab on the VM; its port there. Raises when it cannot start."""
        cmd = self._mux("-o", "ControlMaster=no", "-T", self.login.destination, "sh -s")
        # A session of its own, so Ctrl-C on the terminal reaches us and not it: we stop
        # JupyterLab in order, through the lifeline.
        session = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._session = session
        assert session.stdin is not None and session.stdout is not None
        assert session.stderr is not None
        self._out, self._err = _Lines(session.stdout), _Lines(session.stderr)
        with contextlib.suppress(BrokenPipeError):  # then the session says why it ended
            session.stdin.write(_remote_script(token, python, self.timeout))
            session.stdin.flush()
        deadline = time.monotonic() + self.timeout + 30
        while True:
            try:
                line = self._said(deadline - time.monotonic())
            except queue.Empty:
                raise BackendUnavailable(
                    f"JupyterLab on {self.login.destination} did not report its port within "
                    f"{self.timeout:.0f} s: raise --timeout if the VM is slow."
                ) from None
            if line is None:
                raise self._ended("starting JupyterLab")
            if not line.startswith(_MARK):
                log.debug("VM: %s", line)
                continue
            word, *rest = line[len(_MARK) :].split()
            if word == "ready":
                self.remote_pid, self.remote_log = int(rest[1]), rest[2]
                return int(rest[0])
            if word == "missing":
                raise self._missing(rest)
            if word in ("exited", "timeout"):
                raise self._failed(word, rest)

    def _missing(self, tried: list[str]) -> BackendUnavailable:
        names = ", ".join(t.replace("(not-found)", " (not found)") for t in tried)
        return BackendUnavailable(
            f"JupyterLab is not installed on {self.login.destination} (tried {names}): "
            "install it there with 'python3 -m pip install --user jupyterlab' (or install "
            "'insitu[hub]'), or name a Python that has it with --python PATH."
        )

    def _failed(self, word: str, rest: list[str]) -> BackendUnavailable:
        logfile = rest[-1] if rest else "?"
        if word == "timeout":
            return BackendUnavailable(
                f"JupyterLab on {self.login.destination} did not start within "
                f"{self.timeout:.0f} s; its log on the VM is {logfile}. Raise --timeout if "
                "the VM is slow."
            )
        last = "no message"
        with contextlib.suppress(queue.Empty):
            while (line := self._said(10)) is not None:
                if line.startswith(f"{_MARK} log "):
                    # Without the "[C 2024-01-01 12:00:00.000 ServerApp]" of Jupyter's lines.
                    last = re.sub(r"^\[\w [^]]*\]\s*", "", line.split(" ", 2)[2]).rstrip(".")
        return BackendUnavailable(
            f"JupyterLab exited on {self.login.destination} (code {rest[0]}) before it "
            f"answered: {last}. Its log on the VM: {logfile}."
        )

    def _ended(self, doing: str) -> BackendUnavailable:
        stderr = "\n".join(self._err.rest()) if self._err else ""
        return self.login.failure(stderr or "the connection closed", doing)

    def forward(self, local: int, remote: int) -> None:
        """Forward this machine's 127.0.0.1:``local`` to the VM's 127.0.0.1:``remote``."""
        spec = f"127.0.0.1:{local}:127.0.0.1:{remote}"
        out = subprocess.run(
            self._mux("-O", "forward", "-L", spec, self.login.destination),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise InvalidRequest(
                f"The tunnel could not listen on 127.0.0.1:{local} ({out.stderr.strip()}): "
                "choose another port with --port, or leave --port out to get a free one."
            )

    def wait_answers(self, url: str, token: str) -> None:
        """Return once JupyterLab answers ``url`` with 200 through the tunnel."""
        deadline = time.monotonic() + self.timeout
        status = None
        while (status := _answers(url, token)) != 200:
            if self.ended() or time.monotonic() > deadline:
                raise BackendUnavailable(
                    f"JupyterLab on {self.login.destination} does not answer through the "
                    f"tunnel ({url} gave {status or 'no answer'}); its log on the VM is "
                    f"{self.remote_log}."
                )
            time.sleep(0.3)

    @property
    def started(self) -> bool:
        """Whether the session that starts JupyterLab on the VM was opened."""
        return self._session is not None

    def ended(self) -> bool:
        """Whether the session (so JupyterLab on the VM) has ended."""
        return self._session is None or self._session.poll() is not None

    def watch(self) -> str | None:
        """Block until the session ends; JupyterLab's exit code and its log on the VM if it
        exited by itself (e.g. File > Shut Down), None if the connection was lost."""
        code = None
        while True:
            try:
                line = self._said(1.0)
            except queue.Empty:
                continue
            if line is None:
                return code
            if line.startswith(f"{_MARK} exited "):
                code = line[len(_MARK) :].split(maxsplit=1)[1]

    def stop(self) -> bool:
        """Stop JupyterLab, its kernels, the tunnel and our ssh processes.

        Returns whether the VM confirmed that JupyterLab stopped.
        """
        session = self._session
        if session is not None and session.poll() is None:
            assert session.stdin is not None
            with contextlib.suppress(OSError):
                session.stdin.close()  # the lifeline ends: the supervisor stops JupyterLab
            deadline = time.monotonic() + 30
            with contextlib.suppress(queue.Empty):
                while self._said(deadline - time.monotonic()) is not None:
                    pass
            try:
                session.wait(timeout=5)
            except subprocess.TimeoutExpired:
                session.kill()
                session.wait()
        subprocess.run(
            self._mux("-O", "exit", self.login.destination),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        self._end_master()
        shutil.rmtree(self._dir, ignore_errors=True)
        return self._stopped

    def _end_master(self) -> None:
        pid = self._master_pid
        if pid is None:
            return
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            for _ in range(50):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    return
                if str(self._control).encode() not in cmdline:
                    return  # gone, and the pid is someone else's now
                time.sleep(0.1)
            if sig is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)


def _login_options(command: _F) -> _F:
    """The options that say how to log in: ``-i KEY`` and ``--ssh-option OPT``."""
    command = click.option(
        "--ssh-option",
        "ssh_options",
        multiple=True,
        metavar="OPT",
        help="An 'ssh -o' option, e.g. Port=2222 (repeatable).",
    )(command)
    return click.option(
        "-i",
        "identity",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Private key file (default: your ssh agent and ~/.ssh).",
    )(command)


@click.command("lab")
@click.option(
    "--ssh", "destination", required=True, metavar="USER@VM", help="Where to run JupyterLab."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Local port of the tunnel (default: a free one)."
)
@click.option(
    "--python",
    metavar="PATH",
    help="Python on the VM that has JupyterLab (default: the remote insitu's, else python3).",
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@_login_options
@click.option(
    "--timeout", type=float, default=120, show_default=True, help="Seconds to wait for start."
)
def lab_command(
    destination: str,
    port: int | None,
    python: str | None,
    no_browser: bool,
    identity: Path | None,
    ssh_options: tuple[str, ...],
    timeout: float,
) -> None:
    """JupyterLab on your own login on a VM, through an ssh tunnel; Ctrl-C stops it.

    Logs in with the system ssh client and your key (agent, ~/.ssh, or -i). JupyterLab
    runs as you on the VM, listens on its 127.0.0.1 only, and takes a new random token
    each time; the URL printed here reaches it through the tunnel. Ctrl-C stops
    JupyterLab, its kernels, the tunnel and the ssh processes.
    """
    if sys.platform == "win32":
        raise BackendUnavailable(
            "insitu lab needs ssh connection sharing (ControlMaster), which the ssh of "
            "Windows lacks: run it from WSL, or start JupyterLab on the VM yourself and "
            "use 'insitu tunnel USER@VM --remote-port PORT'."
        )
    login = SshLogin.from_cli(destination, identity, ssh_options)
    local = _local_port(port)
    token = secrets.token_hex(24)
    lab = _RemoteLab(login, timeout)
    with _stop_on_signals():
        try:
            click.echo(f"Logging in to {destination} ...", err=True)
            lab.connect()
            remote = lab.start(token, python)
            click.echo(
                f"JupyterLab runs on {destination} (pid {lab.remote_pid}, its 127.0.0.1:"
                f"{remote}); opening the tunnel ...",
                err=True,
            )
            lab.forward(local, remote)
            base = f"http://127.0.0.1:{local}"
            lab.wait_answers(f"{base}/api/status", token)
            url = f"{base}/lab?token={token}"
            click.echo(url)
            if not no_browser and not _open_browser(url):
                click.echo("Open that URL in your browser.", err=True)
            click.echo("Ctrl-C stops JupyterLab, its kernels and the tunnel.", err=True)
            exited = lab.watch()
            if exited is None:
                raise BackendUnavailable(
                    f"The connection to {destination} was lost; JupyterLab there stops with "
                    "it. Run the command again to start a new one."
                )
            code, logfile = exited.split(maxsplit=1)
            if code != "0":
                raise BackendUnavailable(
                    f"JupyterLab on {destination} exited with code {code}; its log there is "
                    f"{logfile}. Run the command again to start a new one."
                )
            click.echo(f"JupyterLab on {destination} was shut down.", err=True)
        except KeyboardInterrupt:
            click.echo(f"\nStopping JupyterLab on {destination} ...", err=True)
        finally:
            # A second Ctrl-C must not leave things half stopped; every step has a timeout.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                confirmed = lab.stop()
            finally:
                signal.signal(signal.SIGINT, previous)
    if confirmed:
        click.echo("Stopped JupyterLab and its kernels; the tunnel is closed.", err=True)
    elif not lab.started:
        click.echo("Stopped before JupyterLab was started.", err=True)
    else:
        click.echo(
            "The tunnel is closed. JupyterLab on the VM stops by itself when it sees the "
            "connection gone.",
            err=True,
        )


@click.command("tunnel")
@click.argument("destination", metavar="USER@VM")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Local port of the tunnel (default: a free one)."
)
@click.option(
    "--remote-port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port on the VM's 127.0.0.1 (the hub's by default).",
)
@_login_options
def tunnel_command(
    destination: str,
    port: int | None,
    remote_port: int,
    identity: Path | None,
    ssh_options: tuple[str, ...],
) -> None:
    """Forward a local port to a port on the VM's loopback (the hub); Ctrl-C closes it."""
    login = SshLogin.from_cli(destination, identity, ssh_options)
    local = _local_port(port)
    spec = f"127.0.0.1:{local}:127.0.0.1:{remote_port}"
    cmd = login.command(
        "-N", "-T", "-o", "ExitOnForwardFailure=yes", "-o", "ControlMaster=no",
        "-o", "ControlPath=none", "-L", spec, destination,
    )  # fmt: skip
    log.debug("ssh tunnel: %s", shlex.join(cmd))
    # In our process group: ssh may ask for a passphrase on the terminal.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors = _Lines(proc.stderr)
    url = f"http://127.0.0.1:{local}/"
    with _stop_on_signals():
        try:
            _wait_listening(proc, login, local, errors)
            if _answers(url) is None:
                click.echo(
                    f"Nothing answers on {destination}'s 127.0.0.1:{remote_port} yet (is the "
                    "hub running there? 'insitu up' starts it); the tunnel stays open.",
                    err=True,
                )
            errors.rest(0.2)  # ssh's notes on our probes: not news
            click.echo(url)
            click.echo("Ctrl-C closes the tunnel.", err=True)
            said: list[str] = []
            while proc.poll() is None:
                # Shown as they come: e.g. that nothing answered a connection on the VM.
                with contextlib.suppress(queue.Empty):
                    if line := errors.next(0.5):
                        said.append(line)
                        click.echo(f"ssh: {line}", err=True)
            said += errors.rest()
            raise login.failure("\n".join(said), "keeping the tunnel open")
        except KeyboardInterrupt:
            click.echo("\nClosing the tunnel ...", err=True)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    click.echo("Tunnel closed.", err=True)


def _wait_listening(
    proc: subprocess.Popen[bytes], login: SshLogin, local: int, errors: _Lines
) -> None:
    """Return once ssh listens on 127.0.0.1:``local``; raise if ssh gives up."""
    deadline = None if login.interactive else time.monotonic() + 120
    while proc.poll() is None:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex(("127.0.0.1", local)) == 0:
                return
        if deadline is not None and time.monotonic() > deadline:
            raise login.failure("timed out", "logging in")
        time.sleep(0.2)
    raise login.failure("\n".join(errors.rest()), "logging in")

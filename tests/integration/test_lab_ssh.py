"""``insitu lab --ssh`` and ``insitu tunnel`` for real: the system ssh client logs in to the
sshd of the project's network-namespace hosts (``scripts/netns.sh``), JupyterLab runs in
host insitu-h1 (10.250.0.2), and everything is reached through the tunnel only. The hosts
share this machine's filesystem, so the remote Python can be this venv's. Never skipped."""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

INSITU = [sys.executable, "-m", "insitu.cli"]
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)$")


@dataclass(frozen=True)
class NetnsHost:
    """A network-namespace host: its address, its namespace, and the key that logs in."""

    address: str
    namespace: str
    key: Path

    def ssh_args(self) -> list[str]:
        """Options of ``insitu lab``/``tunnel`` that log in with the test key."""
        return [
            "-i",
            str(self.key),
            "--ssh-option",
            "StrictHostKeyChecking=no",
            "--ssh-option",
            "UserKnownHostsFile=/dev/null",
            "--ssh-option",
            "LogLevel=ERROR",
        ]

    def run(self, *cmd: str) -> str:
        """Run ``cmd`` inside the host's namespace; its stdout."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.namespace, *cmd],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    def pids(self) -> set[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=True
        )
        return {int(p) for p in out.stdout.split()}


@pytest.fixture(scope="module")
def host(netns_hosts: tuple[list[str], Path]) -> NetnsHost:
    """The first test host (``scripts/netns.sh``, shared with the other multi-host tests)."""
    hosts, key = netns_hosts
    return NetnsHost(hosts[0], "insitu-h1", key)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of the insitu command; its TMPDIR (where ``insitu lab`` keeps its ssh
    control socket) is short and ours alone, so our ssh processes can be told apart."""
    tmpdir = Path(tempfile.mkdtemp(prefix="ilab", dir="/tmp"))
    e = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    e["INSITU_DATA_DIR"] = str(tmp_path / "data")
    e["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    e["TMPDIR"] = str(tmpdir)
    e.pop("DISPLAY", None)
    try:
        yield e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _processes(where: str) -> dict[int, str]:
    """{pid: start time} of the local ``ssh`` processes whose command line holds ``where``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmd = _cmdline(int(entry.name)).split(b"\0")
        if cmd and cmd[0].endswith(b"ssh") and where.encode() in b" ".join(cmd):
            start = _start_time(int(entry.name))
            if start is not None:
                found[int(entry.name)] = start
    return found


def _alive(procs: dict[int, str], wait: float = 10) -> dict[int, str]:
    """The processes of ``procs`` still there after up to ``wait`` s (same pid and start
    time; a process that is exiting may take a moment to go)."""
    deadline = time.monotonic() + wait
    while True:
        alive = {pid: start for pid, start in procs.items() if _start_time(pid) == start}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _descendants(root: int) -> dict[int, str]:
    """{pid: start time} of ``root`` and everything below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(_ppid(int(entry.name)), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        start = _start_time(pid)
        if start is not None:
            found[pid] = start
            todo.extend(children.get(pid, []))
    return found


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    assert not 8000 <= port <= 8010 and not 18130 <= port <= 19999, port
    return port


class Running:
    """An ``insitu`` command running as a subprocess, its output read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*INSITU, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(
            target=lambda f: self.stderr.extend(f), args=(self.proc.stderr,), daemon=True
        ).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.stdout.put(line.rstrip("\n"))

    def line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first stdout line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if found := pattern.match(line):
                return found
        raise AssertionError(f"no line like {pattern.pattern}; stderr:\n{''.join(self.stderr)}")

    def said(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The first match of ``pattern`` in what the command wrote on stderr."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, "".join(self.stderr))):
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{''.join(self.stderr)}"
            time.sleep(0.1)
        return found

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C (SIGINT to the command alone); its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _server_of(host: NetnsHost, remote_port: int) -> int:
    """The pid listening on ``remote_port`` inside the host (from ``ss -ltnp``)."""
    for line in host.run("ss", "-ltnpH").splitlines():
        if line.split()[3].endswith(f":{remote_port}"):
            found = re.search(r"pid=(\d+)", line)
            assert found, line
            return int(found.group(1))
    raise AssertionError(f"nothing listens on port {remote_port} in {host.namespace}")


def _session_root(pid: int, sshd: int) -> int:
    """The process below the ``sshd`` daemon that ``pid`` runs under: our ssh session."""
    while (parent := _ppid(pid)) != sshd:
        assert parent > 1, f"pid {pid} does not run under sshd {sshd}"
        pid = parent
    return pid


def test_lab_serves_jupyterlab_through_the_tunnel_and_ctrl_c_stops_everything(
    host: NetnsHost, env: dict[str, str]
) -> None:
    """The whole life of ``insitu lab --ssh``: the URL answers with the token (403 without),
    JupyterLab listens on the VM's 127.0.0.1 only, the token is on no command line there,
    and Ctrl-C leaves no JupyterLab, kernel, tunnel or ssh process behind."""
    # The hosts share this filesystem: this venv's Python runs there as it does here.
    host.run(sys.executable, "-c", "import jupyterlab")
    started = time.monotonic()
    args = ["lab", "--ssh", f"root@{host.address}", "--no-browser", "--python", sys.executable]
    lab = Running([*args, *host.ssh_args()], env)
    try:
        local_port, token = lab.line(URL, timeout=180).groups()
        up_in = time.monotonic() - started
        base = f"http://127.0.0.1:{local_port}"
        auth = {"Authorization": f"token {token}"}

        # No cookies kept between requests: each one stands on its own credentials.
        def get(path: str, **kw: dict[str, str]) -> int:
            return httpx.get(f"{base}{path}", trust_env=False, timeout=30, **kw).status_code

        # It answers at once: the command waited for it before printing the URL.
        assert get("/api/status", headers=auth) == 200
        assert get("/api/status") == 403
        assert get(f"/api/status?token=wrong{token}") == 403
        assert get("/api/status", headers={"Authorization": f"token {token[:-1]}"}) == 403
        kernel = httpx.post(
            f"{base}/api/kernels", headers=auth, json={"name": "python3"}, trust_env=False
        )
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]

        found = lab.said(r"\(pid (\d+), its 127\.0\.0\.1:(\d+)\)")
        server, remote_port = int(found.group(1)), int(found.group(2))
        assert _server_of(host, remote_port) == server
        assert b"jupyterlab" in _cmdline(server)

        # Our session on the VM: the supervisor, JupyterLab, the kernel (and sshd's part).
        sshd = int((host.key.parent / "sshd_h1.pid").read_text())
        session = _descendants(_session_root(server, sshd))
        assert server in host.pids()
        kernels = [p for p in session if kernel_id.encode() in _cmdline(p)]
        assert len(kernels) == 1, session

        # JupyterLab and its kernel listen on the VM's loopback only.
        listening = [
            line.split()[3]
            for line in host.run("ss", "-ltnpH").splitlines()
            if any(f"pid={p}," in line for p in session)
        ]
        assert f"127.0.0.1:{remote_port}" in listening, listening
        assert all(a.startswith("127.0.0.1:") for a in listening), listening
        assert not _port_open(remote_port, host.address)

        # The token is on no command line there; JupyterLab has it from its environment.
        for pid in host.pids():
            assert token.encode() not in _cmdline(pid), (pid, _cmdline(pid))
        environ = Path(f"/proc/{server}/environ").read_bytes().split(b"\0")
        assert f"JUPYTER_TOKEN={token}".encode() in environ

        # Here: the tunnel and the ssh processes (the master and the session's client).
        ours = _processes(env["TMPDIR"])
        assert len(ours) == 2, ours
        assert _port_open(int(local_port))

        assert lab.interrupt() == 0, "".join(lab.stderr)
        assert "Stopped JupyterLab and its kernels" in "".join(lab.stderr)
        assert not _alive(session), {p: _cmdline(p) for p in _alive(session)}
        assert not _alive(ours), {p: _cmdline(p) for p in _alive(ours)}
        assert not _port_open(int(local_port))
        assert list(Path(env["TMPDIR"]).iterdir()) == []
        assert up_in < 120, up_in
    finally:
        lab.kill()


def test_lab_ends_when_jupyterlab_is_shut_down_from_the_browser(
    host: NetnsHost, env: dict[str, str]
) -> None:
    """File > Shut Down in JupyterLab: the command says so, closes the tunnel and exits 0."""
    args = ["lab", "--ssh", f"root@{host.address}", "--no-browser", "--python", sys.executable]
    lab = Running([*args, *host.ssh_args()], env)
    try:
        local_port, token = lab.line(URL, timeout=180).groups()
        ours = _processes(env["TMPDIR"])
        assert ours
        shutdown = httpx.post(
            f"http://127.0.0.1:{local_port}/api/shutdown",
            headers={"Authorization": f"token {token}"},
            trust_env=False,
            timeout=30,
        )
        assert shutdown.status_code == 200, shutdown.text
        assert lab.proc.wait(timeout=60) == 0, "".join(lab.stderr)
        assert f"JupyterLab on root@{host.address} was shut down." in "".join(lab.stderr)
        assert not _alive(ours)
        assert not _port_open(int(local_port))
    finally:
        lab.kill()


@dataclass(frozen=True)
class PlainUser:
    """A throw-away unix account that logs in to the test host with the test key."""

    name: str
    uid: int
    home: Path
    sshd_pid: int
    ssh_port: int


@pytest.fixture
def plain_user(host: NetnsHost, tmp_path: Path) -> Iterator[PlainUser]:
    """A new unix account, and an sshd of our own in the host's namespace (port 2222) that
    reads ``~/.ssh/authorized_keys``: the project's sshd reads one root-only key file."""
    name = f"ilab{secrets.token_hex(3)}"
    home = Path(f"/tmp/{name}")
    # Password '*': no password works, but the account is not locked (sshd refuses those).
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
         "--password", "*", name],
        check=True,
    )  # fmt: skip
    sshd = None
    try:
        (home / ".ssh").mkdir(mode=0o700)
        shutil.copy(host.key.with_suffix(".pub"), home / ".ssh" / "authorized_keys")
        subprocess.run(["chown", "-R", f"{name}:", str(home)], check=True)
        conf = tmp_path / "sshd.conf"
        conf.write_text(
            f"ListenAddress {host.address}\nPort 2222\n"
            f"HostKey {host.key.parent / 'ssh_host_h1_ed25519_key'}\n"
            f"PidFile {tmp_path / 'sshd.pid'}\nAuthorizedKeysFile .ssh/authorized_keys\n"
            "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nX11Forwarding no\nPrintMotd no\nUseDNS no\n"
        )
        sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, "/usr/sbin/sshd", "-D", "-f", str(conf),
             "-E", str(tmp_path / "sshd.log")],
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _port_open(2222, host.address):
            assert sshd.poll() is None and time.monotonic() < deadline, "our sshd did not start"
            time.sleep(0.1)
        uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True).stdout)
        yield PlainUser(name, uid, home, sshd.pid, 2222)
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_lab_runs_under_the_users_own_account_with_the_remote_insitus_python(
    host: NetnsHost, plain_user: PlainUser, env: dict[str, str]
) -> None:
    """A plain user without --python: the Python is the one of the user's own ``insitu``
    (here ``~/.local/bin/insitu``, this venv's), and JupyterLab runs as that user."""
    user = plain_user
    bin_dir = user.home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "insitu").symlink_to(Path(sys.executable).parent / "insitu")
    subprocess.run(["chown", "-R", f"{user.name}:", str(user.home / ".local")], check=True)
    lab = Running(
        ["lab", "--ssh", f"{user.name}@{host.address}", "--no-browser", *host.ssh_args(),
         "--ssh-option", f"Port={user.ssh_port}"],
        env,
    )  # fmt: skip
    try:
        local_port, token = lab.line(URL, timeout=180).groups()
        status = httpx.get(
            f"http://127.0.0.1:{local_port}/api/status",
            headers={"Authorization": f"token {token}"},
            trust_env=False,
            timeout=30,
        )
        assert status.status_code == 200
        server = int(lab.said(r"\(pid (\d+), its 127\.0\.0\.1:\d+\)").group(1))
        uids = Path(f"/proc/{server}/status").read_text().split("Uid:")[1].split()[:4]
        assert {int(u) for u in uids} == {user.uid}
        # The Python named on the first line of the user's insitu command.
        shebang = (bin_dir / "insitu").read_bytes().splitlines()[0][2:].strip()
        assert _cmdline(server).split(b"\0")[0] == shebang
        assert b"allow_root" not in _cmdline(server)
        session = _descendants(_session_root(server, user.sshd_pid))
        assert lab.interrupt() == 0, "".join(lab.stderr)
        assert not _alive(session)
        assert not _alive(_processes(env["TMPDIR"]))
    finally:
        lab.kill()


def test_lab_names_what_to_install_when_jupyterlab_is_missing(
    host: NetnsHost, env: dict[str, str]
) -> None:
    """The VM's Python without JupyterLab: one error line saying what to install."""
    plain = shutil.which("python3", path="/usr/bin")
    assert plain is not None
    assert subprocess.run([plain, "-c", "import jupyterlab"], capture_output=True).returncode
    cases = {
        plain: f"(tried {plain})",
        "/nonexistent/python3": "(tried /nonexistent/python3 (not found))",
        None: "(tried python3)",  # the default: no insitu on root's PATH there, and python3
    }
    for python, tried in cases.items():
        args = ["lab", "--ssh", f"root@{host.address}", "--no-browser", *host.ssh_args()]
        out = subprocess.run(
            [*INSITU, *args, *(["--python", python] if python else [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert lines[-1].startswith(
            f"error: JupyterLab is not installed on root@{host.address} {tried}: "
            "install it there with 'python3 -m pip install --user jupyterlab'"
        ), out.stderr
        assert "--python PATH" in lines[-1]
        assert not out.stdout
        assert not _processes(env["TMPDIR"])


def test_ssh_failures_are_one_clear_line_naming_the_host(
    host: NetnsHost, env: dict[str, str], tmp_path: Path
) -> None:
    """No key the VM accepts, a refused port, an unknown host key, a name that does not
    resolve: each is one line naming the host and what to do, fast, with nothing left."""
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    known = tmp_path / "known_hosts"
    known.touch()
    relaxed = [
        *("--ssh-option", "StrictHostKeyChecking=no"),
        *("--ssh-option", "UserKnownHostsFile=/dev/null"),
    ]
    dest = f"root@{host.address}"
    cases = [
        (
            [dest, "-i", str(stranger), "--ssh-option", "IdentitiesOnly=yes", *relaxed],
            f"error: ssh to {dest} failed: the VM accepted none of your keys",
        ),
        (
            [dest, *host.ssh_args(), "--ssh-option", "Port=1"],
            f"error: ssh to {dest} failed: '{host.address}' refused the connection",
        ),
        (
            [dest, "-i", str(host.key), "--ssh-option", "StrictHostKeyChecking=yes",
             "--ssh-option", f"UserKnownHostsFile={known}"],
            f"error: ssh to {dest} failed: its host key is not known here",
        ),
        (
            ["root@no-such-vm.invalid", *host.ssh_args()],
            "error: ssh to root@no-such-vm.invalid failed: the name 'no-such-vm.invalid' "
            "does not resolve here",
        ),
    ]  # fmt: skip
    for command in ("lab", "tunnel"):
        for args, expected in cases:
            argv = ["lab", "--ssh", *args] if command == "lab" else ["tunnel", *args]
            started = time.monotonic()
            out = subprocess.run(
                [*INSITU, *argv, "--no-browser"] if command == "lab" else [*INSITU, *argv],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 1, (argv, out.stderr)
            errors = [x for x in out.stderr.splitlines() if x.startswith("error:")]
            assert len(errors) == 1 and errors[0].startswith(expected), (argv, out.stderr)
            assert time.monotonic() - started < 30
            assert not _processes(env["TMPDIR"])
            assert not out.stdout


def test_a_busy_local_port_is_one_clear_line(host: NetnsHost, env: dict[str, str]) -> None:
    """--port naming a port something here listens on: said before logging in."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for argv in (
            ["lab", "--ssh", f"root@{host.address}", "--no-browser"],
            ["tunnel", f"root@{host.address}"],
        ):
            out = subprocess.run(
                [*INSITU, *argv, "--port", str(port), *host.ssh_args()],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 1
            assert out.stderr.strip().splitlines()[-1] == (
                f"error: Local port {port} is in use on 127.0.0.1: choose another with "
                "--port, or leave --port out to get a free one."
            ), out.stderr


def test_tunnel_reaches_a_server_on_the_vms_loopback_until_ctrl_c(
    host: NetnsHost, env: dict[str, str], tmp_path: Path
) -> None:
    """``insitu tunnel`` to an HTTP server that listens on the VM's 127.0.0.1 only."""
    www = tmp_path / "www"
    www.mkdir()
    marker = secrets.token_hex(8)
    (www / "hello.txt").write_text(marker)
    server = subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, sys.executable, "-u", "-m", "http.server",
         "0", "--bind", "127.0.0.1", "--directory", str(www)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    tunnel = None
    try:
        assert server.stdout is not None
        serving = re.search(r"port (\d+)", server.stdout.readline())
        assert serving, "the HTTP server in the namespace did not start"
        remote_port = int(serving.group(1))
        assert not _port_open(remote_port, host.address)  # loopback only, there
        local = _free_port()
        tunnel = Running(
            ["tunnel", f"root@{host.address}", "--port", str(local), "--remote-port",
             str(remote_port), *host.ssh_args()],
            env,
        )  # fmt: skip
        url = tunnel.line(re.compile(r"^http://127\.0\.0\.1:(\d+)/$"), timeout=60)
        assert int(url.group(1)) == local
        with httpx.Client(trust_env=False, timeout=30) as http:
            got = http.get(f"{url.group(0)}hello.txt")
        assert got.status_code == 200 and got.text == marker
        spec = f"127.0.0.1:{local}:127.0.0.1:{remote_port}"
        ssh = _processes(spec)
        assert len(ssh) == 1, ssh
        assert "Nothing answers" not in "".join(tunnel.stderr)

        assert tunnel.interrupt(timeout=30) == 0, "".join(tunnel.stderr)
        assert "Tunnel closed." in "".join(tunnel.stderr)
        assert not _alive(ssh)
        assert not _port_open(local)
    finally:
        if tunnel is not None:
            tunnel.kill()
        server.terminate()
        server.wait(timeout=10)


def test_tunnel_says_when_nothing_answers_on_the_vm(host: NetnsHost, env: dict[str, str]) -> None:
    """The hub is not running: the tunnel opens all the same and says so."""
    remote_port = _free_port()  # a port nothing in the namespace listens on
    tunnel = Running(
        ["tunnel", f"root@{host.address}", "--remote-port", str(remote_port), *host.ssh_args()],
        env,
    )
    try:
        url = tunnel.line(re.compile(r"^http://127\.0\.0\.1:(\d+)/$"), timeout=60)
        assert f"Nothing answers on root@{host.address}'s 127.0.0.1:{remote_port}" in "".join(
            tunnel.stderr
        )
        assert _port_open(int(url.group(1)))
        assert tunnel.interrupt(timeout=30) == 0
        assert not _port_open(int(url.group(1)))
    finally:
        tunnel.kill()

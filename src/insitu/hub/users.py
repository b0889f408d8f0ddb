"""The platform's own accounts: names, admin flags and scrypt password hashes in one file,
and, in 'users' isolation, the unix account each user's processes run as.

The file (``DATA_DIR/hub/users.json``, mode 0600) is read by the hub's authenticator on
every login, so an account added or removed while the hub runs counts at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from insitu.errors import Conflict, InvalidRequest, NotFound

__all__ = [
    "Account",
    "UserRegistry",
    "ensure_unix_account",
    "hash_password",
    "remove_unix_account",
    "verify_password",
]

# What a unix account name may be (Debian's adduser default, without upper case).
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, as ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (a :func:`hash_password` result)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            dklen=32,
            n=int(n),
            r=int(r),
            p=int(p),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


@dataclass(frozen=True)
class Account:
    """One platform user."""

    name: str
    admin: bool
    password_hash: str


def check_name(name: str) -> str:
    """``name`` if it can be a user name on the hub and a unix account, else an error."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"User name {name!r} is not allowed: use 1 to 31 lower-case letters, digits, "
            "'_' or '-', starting with a letter or '_' (it is also the unix account name)."
        )
    return name


class UserRegistry:
    """The accounts file: add, list, remove, check a password."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        users: dict[str, dict[str, object]] = data.get("users", {})
        return users

    def _write(self, users: dict[str, dict[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then renamed: never half a file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"users": users}, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def accounts(self) -> list[Account]:
        """Every account, sorted by name."""
        return [
            Account(name, bool(u.get("admin")), str(u["password"]))
            for name, u in sorted(self._read().items())
        ]

    def get(self, name: str) -> Account | None:
        """The account called ``name``, if any."""
        u = self._read().get(name)
        return None if u is None else Account(name, bool(u.get("admin")), str(u["password"]))

    def add(self, name: str, password: str, *, admin: bool = False) -> Account:
        """Add an account; its password is stored as a scrypt hash only."""
        check_name(name)
        if len(password) < MIN_PASSWORD:
            raise InvalidRequest(
                f"The password for {name!r} is too short ({len(password)} characters): "
                f"use at least {MIN_PASSWORD}."
            )
        users = self._read()
        if name in users:
            raise Conflict(f"User {name!r} exists already. Remove it first or pick another name.")
        users[name] = {"admin": admin, "password": hash_password(password)}
        self._write(users)
        return Account(name, admin, str(users[name]["password"]))

    def set_password(self, name: str, password: str) -> None:
        """Replace the password of ``name``."""
        if len(password) < MIN_PASSWORD:
            raise InvalidRequest(f"The password is too short: use at least {MIN_PASSWORD}.")
        users = self._read()
        if name not in users:
            raise NotFound(f"No user {name!r}. See 'insitu user list'.")
        users[name]["password"] = hash_password(password)
        self._write(users)

    def remove(self, name: str) -> None:
        """Forget the account ``name``."""
        users = self._read()
        if users.pop(name, None) is None:
            raise NotFound(f"No user {name!r}. See 'insitu user list'.")
        self._write(users)

    def check(self, name: str, password: str) -> Account | None:
        """The account when ``password`` is right for ``name``, else None."""
        account = self.get(name)
        if account is None or not verify_password(password, account.password_hash):
            return None
        return account


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InvalidRequest(
            f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip() or out.stdout}"
        )


def ensure_unix_account(name: str, home: Path) -> pwd.struct_passwd:
    """The unix account ``name``, made with a private home folder when missing (root only)."""
    check_name(name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        if entry.pw_uid < _uid_min():
            raise InvalidRequest(
                f"{name!r} is a system account (uid {entry.pw_uid}): a hub user cannot run as "
                "it. Pick another name (or map the login to another with the authenticator's "
                "username_map)."
            )
        return entry
    if os.geteuid() != 0:
        raise InvalidRequest(
            f"There is no unix account {name!r} and only root can make one. Run "
            "'insitu user add' as root, or use hub.isolation = 'single'."
        )
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    _run([useradd, "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", name])
    entry = pwd.getpwnam(name)
    os.chmod(entry.pw_dir, 0o700)  # users cannot read each other's homes
    return entry


def _uid_min() -> int:
    """The first uid of people's accounts (UID_MIN of /etc/login.defs, else 1000)."""
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
                return int(parts[1])
    except OSError:
        pass
    return 1000


def remove_unix_account(name: str, *, delete_home: bool = False) -> None:
    """Remove the unix account ``name`` (its home stays unless ``delete_home``)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    _run([userdel, *(["--remove"] if delete_home else []), name])

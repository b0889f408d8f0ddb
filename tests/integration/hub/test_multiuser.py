"""Two users on one platform: what each may not reach of the other's, and sharing.

Against the running ``platform`` (users in 'users' isolation, as root): alice and bob each
have their own server and their own Dask-Gateway cluster; every refusal is checked on its
own (the other's server, home folder, cluster, and a restricted collection), then sharing
a server through JupyterHub's REST API and through the data service's sharing page.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.integration.hub.client import execute, stop_cluster
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow

# A share or its revocation must reach a user's server within this (auth_cache_seconds is
# 2 in the tests; the rest is the margin of a loaded 2-core machine).
WITHIN = 10.0
RESTRICTED = "restricted"
# A version no other collection has, so the dataset id is this collection's alone.
RESTRICTED_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20990101"


@dataclass(frozen=True)
class Users:
    """alice and bob with their servers running, and a hub API token of each."""

    alice: str
    bob: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def users(platform: Platform, alice: str, bob: str) -> Users:
    hub = platform.hub
    for name in (alice, bob):
        hub.start(name)
    return Users(alice, bob, {name: hub.token_for(name) for name in (alice, bob)})


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _status(base: str, owner: str, token: str) -> httpx.Response:
    """``/user/OWNER/api/status`` with ``token``, redirects not followed."""
    return httpx.get(
        f"{base}/user/{owner}/api/status", headers=_auth(token), timeout=30, follow_redirects=False
    )


def _refused(response: httpx.Response) -> bool:
    """403, or a redirect to a login: anything but an answer."""
    if response.status_code == 403:
        return True
    location = response.headers.get("location", "")
    return response.is_redirect and ("login" in location or "oauth" in location)


def _until(check: Callable[[], bool], within: float = WITHIN) -> float:
    """Poll ``check`` until true; the seconds it took, or an AssertionError."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.25)
    return time.monotonic() - t0


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.strip().splitlines())


# -- what bob cannot reach of alice's ---------------------------------------------------


def test_bobs_token_does_not_reach_alices_server(platform: Platform, users: Users) -> None:
    own = _status(platform.base, users.alice, users.tokens[users.alice])
    assert own.status_code == 200, own.text
    other = _status(platform.base, users.alice, users.tokens[users.bob])
    assert other.status_code != 200
    assert _refused(other), (other.status_code, other.headers)


def test_bobs_kernel_cannot_read_a_file_in_alices_home(platform: Platform, users: Users) -> None:
    wrote = execute(
        platform.base,
        users.alice,
        users.tokens[users.alice],
        "import os, getpass, pathlib\n"
        "p = pathlib.Path.home() / 'private-note.txt'\n"
        "p.write_text('only for alice')\n"
        "print('user', getpass.getuser())\n"
        "print('path', p)\n"
        "print('read', p.read_text())\n",
    )
    assert wrote.error is None, wrote.error
    out = _lines(wrote.stdout)
    assert out["user"] == users.alice and out["read"] == "only for alice"
    path = out["path"]
    tried = execute(
        platform.base,
        users.bob,
        users.tokens[users.bob],
        "import getpass, os\n"
        "print('user', getpass.getuser())\n"
        f"path = {path!r}\n"
        "for what, act in (('open', lambda: open(path).read()),\n"
        "                  ('list', lambda: os.listdir(os.path.dirname(path)))):\n"
        "    try:\n"
        "        act()\n"
        "        print(what, 'allowed')\n"
        "    except Exception as exc:\n"
        "        print(what, type(exc).__name__)\n",
    )
    assert tried.error is None, tried.error
    seen = _lines(tried.stdout)
    assert seen["user"] == users.bob
    assert seen["open"] == "PermissionError"
    assert seen["list"] == "PermissionError"


_NEW_CLUSTER = """
from dask_gateway import Gateway
cluster = Gateway().new_cluster(shutdown_on_close=False)
print("cluster", cluster.name)
"""

_BOB_TRIES = """
from dask_gateway import Gateway
gateway = Gateway()
print("listed", ",".join(sorted(c.name for c in gateway.list_clusters())))
try:
    gateway.connect({name!r})
    print("connect allowed")
except Exception as exc:
    print("connect", type(exc).__name__, str(exc).replace("\\n", " ")[:200])
"""


def test_bob_neither_lists_nor_connects_to_alices_gateway_cluster(
    platform: Platform, users: Users
) -> None:
    made: dict[str, str] = {}
    try:
        for name in (users.alice, users.bob):
            run = execute(platform.base, name, users.tokens[name], _NEW_CLUSTER)
            assert run.error is None, run.error
            made[name] = _lines(run.stdout)["cluster"]
        tried = execute(
            platform.base,
            users.bob,
            users.tokens[users.bob],
            _BOB_TRIES.format(name=made[users.alice]),
        )
        assert tried.error is None, tried.error
        seen = _lines(tried.stdout)
        # bob's gateway client sees his own cluster and only it.
        assert seen["listed"] == made[users.bob]
        assert made[users.alice] not in seen["listed"]
        # Connecting to alice's by its name is refused.
        assert seen["connect"].startswith("ClientResponseError 403"), seen
    finally:
        for name, cluster in made.items():
            stop_cluster(platform.base, users.tokens[name], cluster)


# -- a restricted collection, granted to alice only -------------------------------------


@pytest.fixture(scope="module")
def restricted(platform: Platform, demo_root: Path) -> Iterator[str]:
    """A private collection: one file of the demo archive under a version of its own."""
    source = next(
        (demo_root / "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn").glob("v*/*.nc")
    )
    target = platform.data_dir / "restricted-archive"
    folder = target / "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn/v20990101"
    folder.mkdir(parents=True)
    shutil.copy(source, folder / source.name)
    platform.cli("catalog", "add", RESTRICTED, str(target), "--template", "cmip6")
    platform.cli("catalog", "public", RESTRICTED, "--off")
    platform.cli("catalog", "scan", RESTRICTED)
    try:
        yield RESTRICTED
    finally:
        platform.cli("catalog", "remove", RESTRICTED, ok=False)
        shutil.rmtree(target, ignore_errors=True)


def _api(platform: Platform, token: str) -> dict[str, int]:
    """What the data service answers ``token`` for the restricted collection."""
    service = f"{platform.base}/services/insitu/api/v1"
    search = httpx.get(
        f"{service}/search",
        params={"collection": RESTRICTED},
        headers=_auth(token),
        timeout=30,
    )
    meta = httpx.get(
        f"{service}/datasets/{quote(RESTRICTED_ID, safe='')}", headers=_auth(token), timeout=30
    )
    everything = httpx.get(
        f"{service}/search", params={"limit": 1000}, headers=_auth(token), timeout=30
    )
    assert everything.status_code == 200, everything.text
    ids = {r["dataset_id"] for r in everything.json()["results"]}
    return {
        "search": search.status_code,
        "found": int(search.json().get("total", 0)) if search.status_code == 200 else 0,
        "metadata": meta.status_code,
        "in_all": int(RESTRICTED_ID in ids),
    }


_KERNEL_API = f"""
import os, httpx
from urllib.parse import quote
import insitu
service = insitu.Settings.load().service_url + "/api/v1"
auth = {{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}}
r = httpx.get(service + "/search", params={{"collection": {RESTRICTED!r}}}, headers=auth)
print("search", r.status_code)
r = httpx.get(service + "/datasets/" + quote({RESTRICTED_ID!r}, safe=""), headers=auth)
print("metadata", r.status_code)
"""


def test_a_restricted_collection_is_granted_to_alice_only(
    platform: Platform, users: Users, restricted: str
) -> None:
    alice, bob = users.tokens[users.alice], users.tokens[users.bob]
    # Private and granted to nobody: neither sees it.
    for token in (alice, bob):
        assert _api(platform, token) == {"search": 403, "found": 0, "metadata": 403, "in_all": 0}
    platform.cli("user", "grant", users.alice, restricted)
    assert _api(platform, alice) == {"search": 200, "found": 1, "metadata": 200, "in_all": 1}
    assert _api(platform, bob) == {"search": 403, "found": 0, "metadata": 403, "in_all": 0}
    # The same from each user's kernel, with the token the hub gives the server.
    for name, expected in ((users.alice, "200"), (users.bob, "403")):
        run = execute(platform.base, name, users.tokens[name], _KERNEL_API)
        assert run.error is None, run.error
        assert _lines(run.stdout) == {"search": expected, "metadata": expected}, name
    # Taking the grant back takes effect at the next request.
    platform.cli("user", "ungrant", users.alice, restricted)
    assert _api(platform, alice) == {"search": 403, "found": 0, "metadata": 403, "in_all": 0}


# -- sharing a server through JupyterHub's REST API --------------------------------------


@pytest.fixture
def no_shares(platform: Platform, users: Users) -> Iterator[None]:
    """alice's server shared with nobody before and after the test."""
    shares = f"/shares/{users.alice}/"
    platform.hub.http.delete(shares).raise_for_status()
    yield
    platform.hub.http.delete(shares).raise_for_status()


def _hub_api(platform: Platform, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{platform.base}/hub/api", headers=_auth(token), timeout=30)


def test_alice_shares_her_server_with_bob_and_revokes_it(
    platform: Platform, users: Users, no_shares: None
) -> None:
    base, alice, bob = platform.base, users.alice, users.bob
    bob_token = users.tokens[bob]
    assert _refused(_status(base, alice, bob_token))
    with _hub_api(platform, users.tokens[alice]) as as_alice:
        # The 'user' role's shares!user lets alice share her own server herself.
        granted = as_alice.post(f"/shares/{alice}/", json={"user": bob})
        assert granted.status_code == 200, granted.text
        assert granted.json()["scopes"] == [f"access:servers!server={alice}/"]
        assert granted.json()["user"] == {"name": bob}
        _until(lambda: _status(base, alice, bob_token).status_code == 200)
        # bob runs code in a kernel of alice's server: it runs as alice.
        run = execute(base, alice, bob_token, "import getpass\nprint(getpass.getuser())")
        assert run.error is None, run.error
        assert run.stdout.strip() == alice
        # Revoked by alice: bob is refused again within the auth cache's time.
        gone = as_alice.delete(f"/shares/{alice}/")
        assert gone.status_code == 204, gone.text
        _until(lambda: _refused(_status(base, alice, bob_token)))
        # Shared again, then bob leaves it himself (the per-user form).
        assert as_alice.post(f"/shares/{alice}/", json={"user": bob}).status_code == 200
    _until(lambda: _status(base, alice, bob_token).status_code == 200)
    with _hub_api(platform, bob_token) as as_bob:
        shared = as_bob.get(f"/users/{bob}/shared")
        assert [s["server"]["user"]["name"] for s in shared.json()["items"]] == [alice]
        left = as_bob.delete(f"/users/{bob}/shared/{alice}/")
        assert left.status_code == 204, left.text
    _until(lambda: _refused(_status(base, alice, bob_token)))


# -- the data service's sharing page ----------------------------------------------------

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _page(web: httpx.Client) -> tuple[str, str]:
    """The sharing page (through the hub's OAuth on the first visit) and its form token."""
    page = web.get("/services/insitu/share")
    assert page.status_code == 200, page.text
    assert page.url.path == "/services/insitu/share"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    match = _CSRF.search(page.text)
    assert match, page.text
    return page.text, match.group(1)


def _shared_with(platform: Platform, owner: str) -> list[str]:
    r = platform.hub.http.get(f"/shares/{owner}/")
    r.raise_for_status()
    return sorted(s["user"]["name"] for s in r.json()["items"] if s["user"])


def _listed(html: str) -> list[str]:
    """The user names in the page's table of shares."""
    return re.findall(r'name="user" value="([^"]+)"', html)


def test_the_sharing_page_shares_and_revokes_the_users_own_server(
    platform: Platform, users: Users, no_shares: None
) -> None:
    base, alice, bob = platform.base, users.alice, users.bob
    bob_token = users.tokens[bob]
    post = f"{base}/services/insitu/share"
    with platform.web(alice) as web:
        html, csrf = _page(web)
        assert alice in html and _listed(html) == []
        origin = {"Origin": base}
        # Refused: no form token, another session's token, another site's form.
        bad = web.post(post, data={"action": "share", "user": bob}, headers=origin)
        assert bad.status_code == 403 and "Nothing was changed" in bad.text
        with platform.web(bob) as bobs:
            _, bobs_csrf = _page(bobs)
            forged = bobs.post(
                post, data={"action": "share", "user": bob, "csrf": csrf}, headers=origin
            )
            assert forged.status_code == 403 and "Nothing was changed" in forged.text
        cross = web.post(
            post,
            data={"action": "share", "user": bob, "csrf": csrf},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403 and "another site" in cross.text
        assert bobs_csrf != csrf
        assert _shared_with(platform, alice) == []
        # Shared: the server is always the session's user's, whatever the form says.
        done = web.post(
            post,
            data={"action": "share", "user": bob, "csrf": csrf, "owner": bob, "server": bob},
            headers=origin,
        )
        assert done.status_code == 200, done.text
        assert f"{bob} may now open your server" in done.text
        assert _listed(done.text) == [bob]
        assert _shared_with(platform, alice) == [bob]
        assert _shared_with(platform, bob) == []
        _until(lambda: _status(base, alice, bob_token).status_code == 200)
        # A name the hub does not know is explained, not an error page.
        unknown = web.post(
            post, data={"action": "share", "user": "nobody-here", "csrf": csrf}, headers=origin
        )
        assert unknown.status_code == 400 and "nobody-here" in unknown.text
        # Revoked from the page: bob is refused again within the auth cache's time.
        revoked = web.post(
            post, data={"action": "revoke", "user": bob, "csrf": csrf}, headers=origin
        )
        assert revoked.status_code == 200, revoked.text
        assert _listed(revoked.text) == []
        assert _shared_with(platform, alice) == []
    _until(lambda: _refused(_status(base, alice, bob_token)))


def test_the_sharing_page_needs_a_hub_session(platform: Platform, users: Users) -> None:
    """A token is no hub session: a POST with one changes nothing."""
    r = httpx.post(
        f"{platform.base}/services/insitu/share",
        data={"action": "share", "user": users.bob, "csrf": "x"},
        headers=_auth(users.tokens[users.alice]),
        timeout=30,
    )
    assert r.status_code == 401, r.text
    assert _shared_with(platform, users.alice) == []

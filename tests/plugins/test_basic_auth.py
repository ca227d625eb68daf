"""The basic-auth plugin: valid, invalid and unknown users, malformed credentials,
bcrypt-only hashes (others refused at load naming the user), the success cache, bcrypt
off the event loop, hidden credentials and an unspoofable consumer header — in-process
and through the real gateway."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from plugin_sdk.testing import Result, arun_filter, make_request
from plugins.basic_auth import BasicAuth, BasicAuthConfig
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml


def bhash(password: str, prefix: str = "$2b$", rounds: int = 4) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return prefix + hashed[4:]


USERS = {
    "alice": bhash("wonderland"),
    "bob": bhash("builder", "$2y$"),
    "carol": bhash("c4rol", "$2a$"),
    "zoë": bhash("pässwörd"),
}


def basic(user: str, password: str) -> dict[str, str]:
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def run(config: dict[str, Any] | BasicAuth, headers: dict[str, str] | None = None) -> Result:
    request = make_request("GET", "/admin", headers=headers)
    if isinstance(config, BasicAuth):
        return await arun_filter(config, request)
    return await arun_filter(BasicAuth, request, config={"users": USERS, **config})


def make(**config: Any) -> BasicAuth:
    return BasicAuth(BasicAuthConfig.model_validate({"users": USERS, **config}))


@pytest.mark.parametrize(
    ("user", "password"),
    [
        pytest.param("alice", "wonderland", id="2b"),
        pytest.param("bob", "builder", id="2y"),
        pytest.param("carol", "c4rol", id="2a"),
        pytest.param("zoë", "pässwörd", id="utf8"),
    ],
)
async def test_valid_credentials(user: str, password: str) -> None:
    result = await run({}, {**basic(user, password), "X-Consumer": "root"})
    assert result.reply is None
    assert result.ctx.state["consumer"] == user
    assert result.request.headers.get_all("X-Consumer") == [user.encode().decode("latin-1")]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "required", id="missing"),
        pytest.param(basic("alice", "Wonderland"), "invalid", id="wrong-password"),
        pytest.param(basic("alice", ""), "invalid", id="empty-password"),
        pytest.param(basic("mallory", "wonderland"), "invalid", id="unknown-user"),
        pytest.param(basic("ALICE", "wonderland"), "invalid", id="user-case-matters"),
        pytest.param({"Authorization": "Basic !!!notbase64"}, "required", id="not-base64"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"alice").decode()},
            "required",
            id="no-colon",
        ),
        pytest.param({"Authorization": "Bearer abc.def.ghi"}, "required", id="other-scheme"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
            "required",
            id="user-not-utf8",
        ),
    ],
)
async def test_rejected(headers: dict[str, str], message: str) -> None:
    result = await run({"realm": "staff"}, {**headers, "X-Consumer": "alice"})
    assert result.status == 401
    assert result.headers.get("www-authenticate") == 'Basic realm="staff", charset="UTF-8"'
    assert result.reply is not None
    assert message in result.reply.body_bytes().decode()
    assert "consumer" not in result.ctx.state
    assert "X-Consumer" not in result.request.headers


@pytest.mark.parametrize("hide", [True, False], ids=["hidden", "kept"])
async def test_hide_credentials(hide: bool) -> None:
    headers = basic("alice", "wonderland")
    result = await run({"hide_credentials": hide}, headers)
    assert result.reply is None
    expected = headers["Authorization"] if not hide else None
    assert result.request.headers.get("Authorization") == expected


async def test_htpasswd_file(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"# staff\ndave:{bhash('d4ve', '$2y$')}\n\nerin:{bhash('3rin')}\n")
    flt = BasicAuth(BasicAuthConfig.model_validate({"htpasswd_file": str(path)}))
    assert (await run(flt, basic("dave", "d4ve"))).ctx.state["consumer"] == "dave"
    assert (await run(flt, basic("erin", "3rin"))).ctx.state["consumer"] == "erin"
    assert (await run(flt, basic("erin", "d4ve"))).status == 401


async def test_long_password_counts_first_72_bytes_like_every_bcrypt() -> None:
    password = "p" * 80
    flt = BasicAuth(BasicAuthConfig.model_validate({"users": {"u": bhash(password[:72])}}))
    assert (await run(flt, basic("u", password))).reply is None
    assert (await run(flt, basic("u", "p" * 71))).status == 401


# ---------------------------------------------------------------------- load-time refusals


OTHER_HASHES = [
    pytest.param("$apr1$x7bsvRoq$c0RSHDAtZ5B0xwvNCUbZA/", "Apache MD5", id="apr1"),
    pytest.param("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1", id="sha1"),
    pytest.param("$1$abc$Kz0KcFcrS9UlbAhIbtbqM/", "MD5-crypt", id="md5-crypt"),
    pytest.param("$5$rounds=5000$salt$hash", "SHA-256-crypt", id="sha256-crypt"),
    pytest.param("$6$salt$hash", "SHA-512-crypt", id="sha512-crypt"),
    pytest.param("secret", "plain text", id="plain"),
    pytest.param(bhash("x")[:-5], "malformed bcrypt", id="truncated-bcrypt"),
    pytest.param("$2x$" + bhash("x")[4:], "malformed bcrypt", id="2x-prefix"),
]


@pytest.mark.parametrize(("hashed", "kind"), OTHER_HASHES)
def test_non_bcrypt_hash_refused_inline(hashed: str, kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        BasicAuthConfig.model_validate({"users": {"alice": USERS["alice"], "mallory": hashed}})
    # What the gateway reports: the messages (pydantic's own str() also shows the input).
    message = "; ".join(e["msg"] for e in info.value.errors())
    assert "user 'mallory'" in message
    assert kind in message
    assert hashed not in message


@pytest.mark.parametrize(("hashed", "kind"), OTHER_HASHES)
def test_non_bcrypt_hash_refused_in_file(hashed: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{USERS['alice']}\nmallory:{hashed}\n")
    with pytest.raises(ValueError) as info:
        BasicAuth(BasicAuthConfig.model_validate({"htpasswd_file": str(path)}))
    message = str(info.value)
    assert "line 2" in message
    assert "user 'mallory'" in message
    assert kind in message


@pytest.mark.parametrize(
    ("config", "file_text", "error"),
    [
        pytest.param({"users": {}}, None, "no users", id="no-users"),
        pytest.param(
            {"users": {"a:b": USERS["alice"]}}, None, "invalid user name", id="colon-in-name"
        ),
        pytest.param(
            {"htpasswd_file": "/nonexistent/htpasswd"}, None, "/nonexistent", id="missing-file"
        ),
        pytest.param(
            {"htpasswd_file": "{path}"}, "alice\n", "expected 'user:hash'", id="file-no-colon"
        ),
        pytest.param(
            {"htpasswd_file": "{path}"},
            f"alice:{USERS['alice']}\nalice:{USERS['bob']}\n",
            "appears twice",
            id="file-duplicate",
        ),
        pytest.param(
            {"htpasswd_file": "{path}", "users": {"alice": USERS["alice"]}},
            f"alice:{USERS['alice']}\n",
            "both in htpasswd_file and in users",
            id="file-and-inline-duplicate",
        ),
        pytest.param({"users": USERS, "realm": 'x"y'}, None, "realm", id="bad-realm"),
        pytest.param({"users": USERS, "cache_size": -1}, None, "cache_size", id="negative-cache"),
        pytest.param(
            {"users": USERS, "consumer_header": ""}, None, "invalid header", id="no-header"
        ),
    ],
)
def test_bad_config_refused_at_load(
    config: dict[str, Any], file_text: str | None, error: str, tmp_path: Path
) -> None:
    path = tmp_path / "htpasswd"
    if file_text is not None:
        path.write_text(file_text)
    if config.get("htpasswd_file") == "{path}":
        config = {**config, "htpasswd_file": str(path)}
    with pytest.raises(ValueError) as info:
        BasicAuth(BasicAuthConfig.model_validate(config))
    assert error in str(info.value)


# ---------------------------------------------------------------------- cache, threads


async def test_success_is_cached_failures_are_not() -> None:
    flt = make()
    for _ in range(3):
        assert (await run(flt, basic("alice", "wonderland"))).reply is None
    assert flt.bcrypt_checks == 1
    for _ in range(2):
        assert (await run(flt, basic("alice", "wrong"))).status == 401
    assert flt.bcrypt_checks == 3
    # A cached password does not open the door to another user.
    assert (await run(flt, basic("bob", "wonderland"))).status == 401


async def test_unknown_user_pays_a_bcrypt_check_too() -> None:
    flt = make()
    assert (await run(flt, basic("mallory", "x"))).status == 401
    assert flt.bcrypt_checks == 1


@pytest.mark.parametrize(
    ("cache_size", "checks"),
    [
        pytest.param(0, 4, id="off"),
        pytest.param(1, 4, id="one-entry-evicted-by-alternation"),
        pytest.param(2, 2, id="both-fit"),
    ],
)
async def test_cache_is_bounded(cache_size: int, checks: int) -> None:
    flt = make(cache_size=cache_size)
    for user, password in [("alice", "wonderland"), ("bob", "builder")] * 2:
        assert (await run(flt, basic(user, password))).reply is None
    assert flt.bcrypt_checks == checks


async def test_bcrypt_runs_off_the_event_loop() -> None:
    flt = BasicAuth(BasicAuthConfig.model_validate({"users": {"slow": bhash("pw", rounds=12)}}))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    result = await run(flt, basic("slow", "pw"))
    task.cancel()
    assert result.reply is None
    # A cost-12 check takes a few hundred ms; had it blocked the loop, no tick would run.
    assert ticks >= 5, ticks


# ---------------------------------------------------------------------- real gateway


def gateway_config(upstream: RecordingUpstream, users: dict[str, str]) -> str:
    table = ", ".join(f'"{u}" = "{h}"' for u, h in users.items())
    routes = f"""
[filters.staff]
plugin = "basic-auth"
config.users = {{ {table} }}
config.realm = "staff"

[[routes]]
name = "admin"
paths = ["/admin"]
upstream = "v1"
filters = ["staff"]
"""
    return gateway_toml({"v1": [upstream.address]}, routes, default="v1")


async def test_gateway_valid_credentials(
    upstream: RecordingUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(gateway_config(upstream, USERS))
    headers = {**basic("alice", "wonderland"), "X-Consumer": "root"}
    for _ in range(2):
        async with http.get(f"{gw.url}/admin/x", headers=headers) as resp:
            assert resp.status == 200
        seen = upstream.requests[-1]
        assert [v for n, v in seen.raw_headers if n.lower() == "x-consumer"] == ["alice"]
        assert "authorization" not in seen.headers


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(basic("alice", "nope"), id="wrong-password"),
        pytest.param(basic("nobody", "wonderland"), id="unknown-user"),
    ],
)
async def test_gateway_rejects_without_calling_upstream(
    headers: dict[str, str],
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(gateway_config(upstream, USERS))
    async with http.get(f"{gw.url}/admin/x", headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="staff", charset="UTF-8"'
    assert upstream.requests == []


async def test_gateway_reports_non_bcrypt_hash_with_filter_and_user() -> None:
    toml = gateway_config(
        RecordingUpstream(port=1), {"mallory": "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}
    )
    with pytest.raises(ConfigError) as info:
        await InProcessGateway(toml).start()
    message = str(info.value)
    assert "filters.staff" in message
    assert "user 'mallory'" in message
    assert "SHA-1" in message
    assert "W6ph5" not in message

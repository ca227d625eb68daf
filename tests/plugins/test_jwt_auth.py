"""The jwt-auth plugin: every key family, the claim checks, the algorithm-pinning rules
(alg mismatch, the RS/HS confusion attack, alg none), kids, token sources, header
hygiene, load-time refusals, a JWKS served over real HTTP (first use, refresh on an
unknown kid, its rate limit, expiry), and the same through the real gateway."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from core.errors import ConfigError
from plugin_sdk.testing import Result, arun_chain, arun_filter, make_filter, make_request
from plugins.jwt_auth import JwtAuth, JwtAuthConfig
from tests.conftest import StartGateway
from tests.harness import InProcessGateway, RecordingUpstream, gateway_toml

# ---------------------------------------------------------------------- keys and tokens

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
P521 = ec.generate_private_key(ec.SECP521R1())
K256 = ec.generate_private_key(ec.SECP256K1())
ED25519 = ed25519.Ed25519PrivateKey.generate()
SECRETS = {"HS256": "s" * 32, "HS384": "t" * 48, "HS512": "u" * 64}
SIGNERS: dict[str, Any] = {
    **dict.fromkeys(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"], RSA_KEY),
    "ES256": P256,
    "ES384": P384,
    "ES512": P521,
    "ES256K": K256,
    "EdDSA": ED25519,
    **SECRETS,
}
FAMILIES = list(SIGNERS)


def pub_pem(private: Any) -> str:
    data: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


RSA_PUB_PEM = pub_pem(RSA_KEY)


def key_entry(alg: str, kid: str = "k1") -> dict[str, str]:
    """The inline config entry verifying tokens signed with SIGNERS[alg]."""
    if alg.startswith("HS"):
        return {"kid": kid, "alg": alg, "secret": SECRETS[alg]}
    return {"kid": kid, "alg": alg, "pem": pub_pem(SIGNERS[alg])}


def jwk(alg: str, kid: str = "k1") -> dict[str, Any]:
    """The public JWK (with kid and alg) of SIGNERS[alg]."""
    signer = SIGNERS[alg]
    material = signer.encode() if isinstance(signer, str) else signer.public_key()
    out: dict[str, Any] = get_default_algorithms()[alg].to_jwk(material, as_dict=True)
    return {**out, "kid": kid, "alg": alg}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 300}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def token(alg: str = "RS256", kid: str | None = "k1", signer: Any = None, **changes: Any) -> str:
    key = signer if signer is not None else SIGNERS[alg]
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand (PyJWT refuses to sign these): HS256 with any key, or unsigned."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def rs256_config(**extra: Any) -> dict[str, Any]:
    return {"keys": [key_entry("RS256")], **extra}


async def run(
    config: dict[str, Any], headers: dict[str, str] | None = None, target: str = "/api"
) -> Result:
    return await arun_filter(JwtAuth, make_request("GET", target, headers=headers), config=config)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def assert_accepted(result: Result, consumer: str = "alice") -> None:
    assert result.reply is None, result.reply
    assert result.ctx.state["consumer"] == consumer
    assert result.request.headers.get("X-Consumer") == consumer


def assert_rejected(result: Result, description: str) -> None:
    assert result.reply is not None, "the token was accepted"
    assert result.status == 401
    challenge = result.headers.get("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="wasmgate", error="invalid_token"'), challenge
    assert description in challenge, challenge
    assert "consumer" not in result.ctx.state
    assert "X-Consumer" not in result.request.headers


# ---------------------------------------------------------------------- families


@pytest.mark.parametrize("alg", FAMILIES)
async def test_valid_token_of_each_family_inline_key(alg: str) -> None:
    result = await run({"keys": [key_entry(alg)]}, bearer(token(alg)))
    assert_accepted(result)
    assert result.ctx.state["jwt_claims"]["sub"] == "alice"


@pytest.mark.parametrize("alg", FAMILIES)
async def test_valid_token_of_each_family_jwks_file(alg: str, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(alg, "a"), jwk("ES256", "b")]}))
    result = await run({"jwks_file": str(path)}, bearer(token(alg, kid="a")))
    assert_accepted(result)


async def test_pem_file_key(tmp_path: Path) -> None:
    path = tmp_path / "k1.pem"
    path.write_text(RSA_PUB_PEM)
    config = {"keys": [{"kid": "k1", "alg": "RS256", "pem_file": str(path)}]}
    assert_accepted(await run(config, bearer(token())))


async def test_jwk_without_alg_is_pinned_by_its_curve(tmp_path: Path) -> None:
    entry = jwk("ES384")
    del entry["alg"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [entry]}))
    config = {"jwks_file": str(path)}
    assert_accepted(await run(config, bearer(token("ES384"))))


# ---------------------------------------------------------------------- claims


@pytest.mark.parametrize(
    ("config", "changes", "description"),
    [
        pytest.param({}, {"exp": -10}, "expired", id="expired"),
        pytest.param({"leeway": 30}, {"exp": -10}, None, id="expired-within-leeway"),
        pytest.param({"leeway": 5}, {"exp": -10}, "expired", id="expired-beyond-leeway"),
        pytest.param({}, {"nbf": 60}, "not valid yet", id="not-yet-valid"),
        pytest.param({"leeway": 30}, {"nbf": 10}, None, id="not-yet-valid-within-leeway"),
        pytest.param({}, {"exp": None}, "required claim", id="no-exp-required-by-default"),
        pytest.param({"required_claims": []}, {"exp": None}, None, id="exp-not-required"),
        pytest.param({"required_claims": ["tenant"]}, {}, "required claim", id="required-claim"),
        pytest.param({}, {"sub": None}, "required claim", id="no-consumer-claim"),
        pytest.param({"issuer": "https://idp"}, {"iss": "https://idp"}, None, id="issuer-ok"),
        pytest.param({"issuer": "https://idp"}, {"iss": "https://evil"}, "issuer", id="bad-iss"),
        pytest.param({"issuer": "https://idp"}, {}, "required claim", id="iss-missing"),
        pytest.param(
            {"issuer": ["https://a", "https://b"]}, {"iss": "https://b"}, None, id="iss-in-list"
        ),
        pytest.param({"audience": "api"}, {"aud": "api"}, None, id="audience-ok"),
        pytest.param({"audience": "api"}, {"aud": "other"}, "audience", id="bad-aud"),
        pytest.param({"audience": "api"}, {}, "required claim", id="aud-missing"),
        pytest.param({"audience": ["api", "v2"]}, {"aud": ["x", "v2"]}, None, id="aud-in-list"),
        pytest.param(
            {"audience": ["api", "v2"]}, {"aud": ["x", "y"]}, "audience", id="aud-none-of"
        ),
        pytest.param(
            {"consumer_claim": "client_id"}, {"client_id": "svc-1"}, None, id="consumer-claim"
        ),
    ],
)
async def test_claim_checks(
    config: dict[str, Any], changes: dict[str, Any], description: str | None
) -> None:
    now = int(time.time())
    for name in ("exp", "nbf"):
        if changes.get(name) is not None:
            changes[name] += now
    result = await run(rs256_config(**config), bearer(token(**changes)))
    if description is None:
        expected = changes.get(config.get("consumer_claim", "sub"), "alice")
        assert_accepted(result, expected)
    else:
        assert_rejected(result, description)


# ---------------------------------------------------------------------- algorithms, kids


def _tamper_signature(tok: str) -> str:
    head, payload, sig = tok.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 1
    return f"{head}.{payload}.{b64(bytes(raw))}"


def _tamper_payload(tok: str) -> str:
    head, _, sig = tok.split(".")
    return f"{head}.{b64(json.dumps(claims(sub='admin')).encode())}.{sig}"


@pytest.mark.parametrize(
    ("config", "tok", "description"),
    [
        pytest.param(
            rs256_config(),
            forged({"alg": "HS256", "kid": "k1"}, claims(), RSA_PUB_PEM.encode()),
            "algorithm does not match",
            id="hs256-signed-with-the-rsa-public-pem",
        ),
        pytest.param(
            rs256_config(),
            forged({"alg": "HS256", "typ": "JWT"}, claims(), RSA_PUB_PEM.encode()),
            "algorithm does not match",
            id="hs256-with-rsa-pem-no-kid",
        ),
        pytest.param(
            rs256_config(),
            token("RS512", signer=RSA_KEY),
            "algorithm does not match",
            id="rs512-header-on-rs256-key",
        ),
        pytest.param(
            rs256_config(),
            token("PS256", signer=RSA_KEY),
            "algorithm does not match",
            id="ps256-header-on-rs256-key",
        ),
        pytest.param(
            {"keys": [key_entry("HS256")]},
            token("HS512", signer=SECRETS["HS256"] * 2),
            "algorithm does not match",
            id="hs512-header-on-hs256-key",
        ),
        pytest.param(
            rs256_config(),
            forged({"alg": "none", "kid": "k1"}, claims(), None),
            "unsigned",
            id="alg-none",
        ),
        pytest.param(
            rs256_config(),
            forged({"alg": "NONE", "kid": "k1"}, claims(), None),
            "unsigned",
            id="alg-NONE",
        ),
        pytest.param(rs256_config(), token(kid="k9"), "key is unknown", id="unknown-kid"),
        pytest.param(
            {"keys": [key_entry("RS256"), key_entry("ES256", "k2")]},
            token(kid=None),
            "no kid",
            id="no-kid-with-two-keys",
        ),
        pytest.param(
            rs256_config(), _tamper_signature(token()), "signature is invalid", id="tampered-sig"
        ),
        pytest.param(
            rs256_config(), _tamper_payload(token()), "signature is invalid", id="tampered-payload"
        ),
        pytest.param(
            rs256_config(),
            token(signer=OTHER_RSA_KEY),
            "signature is invalid",
            id="signed-by-another-key",
        ),
        pytest.param(rs256_config(), "not.a.jwt", "malformed", id="garbage"),
        pytest.param(
            rs256_config(),
            forged({"alg": "RS256", "kid": 7}, claims(), None),
            "malformed",
            id="kid-not-a-string",
        ),
    ],
)
async def test_rejected_tokens(config: dict[str, Any], tok: str, description: str) -> None:
    result = await run(config, {**bearer(tok), "X-Consumer": "admin"})
    assert_rejected(result, description)


async def test_token_without_kid_is_accepted_with_exactly_one_key() -> None:
    assert_accepted(await run(rs256_config(), bearer(token(kid=None))))


async def test_rejection_does_not_leak_key_material() -> None:
    result = await run({"keys": [key_entry("HS256")]}, bearer(token(kid="k9")))
    assert result.reply is not None
    blob = (result.headers.get("www-authenticate") or "") + result.reply.body_bytes().decode()
    assert SECRETS["HS256"] not in blob


# ---------------------------------------------------------------------- token sources


@pytest.mark.parametrize(
    ("config", "headers", "target", "stripped_check"),
    [
        pytest.param(
            {},
            {"Authorization": "Bearer {t}"},
            "/api",
            lambda r: "Authorization" not in r.headers,
            id="authorization-bearer",
        ),
        pytest.param(
            {},
            {"Authorization": "bearer   {t}  "},
            "/api",
            lambda r: "Authorization" not in r.headers,
            id="authorization-bearer-lowercase",
        ),
        pytest.param(
            {"header": "X-Token"},
            {"X-Token": "{t}"},
            "/api",
            lambda r: "X-Token" not in r.headers,
            id="custom-header",
        ),
        pytest.param(
            {"header": "", "query_param": "access_token"},
            {},
            "/api?a=1&access_token={t}&b=2",
            lambda r: r.query == "a=1&b=2" and r.wire_target() == b"/api?a=1&b=2",
            id="query-param",
        ),
        pytest.param(
            {"header": "", "cookie": "session"},
            {"Cookie": "theme=dark; session={t}; lang=en"},
            "/api",
            lambda r: r.headers.get_all("cookie") == ["theme=dark; lang=en"],
            id="cookie",
        ),
        pytest.param(
            {"header": "", "cookie": "session"},
            {"Cookie": "session={t}"},
            "/api",
            lambda r: "cookie" not in r.headers,
            id="cookie-alone",
        ),
    ],
)
@pytest.mark.parametrize("strip", [False, True], ids=["kept", "stripped"])
async def test_token_sources(
    config: dict[str, Any],
    headers: dict[str, str],
    target: str,
    stripped_check: Any,
    strip: bool,
) -> None:
    tok = token()
    filled = {k: v.replace("{t}", tok) for k, v in headers.items()}
    result = await run(
        rs256_config(strip_token=strip, **config), filled, target.replace("{t}", tok)
    )
    assert_accepted(result)
    assert bool(stripped_check(result.request)) == strip


@pytest.mark.parametrize(
    ("config", "headers", "target"),
    [
        pytest.param({}, {}, "/api", id="nothing"),
        pytest.param({}, {"Authorization": "Basic YWxpY2U6cHc="}, "/api", id="basic-scheme"),
        pytest.param({}, {"Authorization": "Bearer "}, "/api", id="empty-bearer"),
        pytest.param({}, {"X-Token": "{t}"}, "/api?access_token={t}", id="unconfigured-sources"),
        pytest.param({"header": "", "query_param": "tok"}, bearer("{t}"), "/api", id="header-off"),
    ],
)
async def test_missing_token_gets_a_bare_challenge(
    config: dict[str, Any], headers: dict[str, str], target: str
) -> None:
    tok = token()
    filled = {k: v.replace("{t}", tok) for k, v in headers.items()}
    result = await run(rs256_config(realm="api", **config), filled, target.replace("{t}", tok))
    assert result.status == 401
    assert result.headers.get("www-authenticate") == 'Bearer realm="api"'


# ---------------------------------------------------------------------- header hygiene


CLAIM_HEADERS = {"sub": "X-User-Id", "email": "X-User-Email", "roles": "X-Roles"}
SPOOFED = {
    "X-User-Id": "root",
    "X-User-Email": "root@evil",
    "X-Roles": "admin",
    "X-Consumer": "root",
}


async def test_claims_overwrite_client_headers() -> None:
    tok = token(email="alice@example.com", roles=["a", "b"])
    result = await run(rs256_config(claims_to_headers=CLAIM_HEADERS), {**SPOOFED, **bearer(tok)})
    assert_accepted(result)
    h = result.request.headers
    assert h.get_all("X-User-Id") == ["alice"]
    assert h.get_all("X-User-Email") == ["alice@example.com"]
    assert h.get_all("X-Roles") == ['["a","b"]']
    assert h.get_all("X-Consumer") == ["alice"]


async def test_claim_absent_from_token_still_removes_client_header() -> None:
    result = await run(
        rs256_config(claims_to_headers=CLAIM_HEADERS), {**SPOOFED, **bearer(token())}
    )
    assert_accepted(result)
    assert "X-User-Email" not in result.request.headers
    assert "X-Roles" not in result.request.headers


async def test_non_latin1_claim_reaches_the_wire_as_utf8() -> None:
    tok = token(email="łukasz@example.com")
    result = await run(rs256_config(claims_to_headers=CLAIM_HEADERS), bearer(tok))
    assert_accepted(result)
    raw = dict(result.request.headers.raw)
    assert raw[b"X-User-Email"] == "łukasz@example.com".encode()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(SPOOFED, id="no-token"),
        pytest.param({**SPOOFED, **bearer(token(kid="k9"))}, id="bad-token"),
    ],
)
async def test_spoofed_headers_removed_when_auth_fails(headers: dict[str, str]) -> None:
    result = await run(rs256_config(claims_to_headers=CLAIM_HEADERS), headers)
    assert result.status == 401
    for name in SPOOFED:
        assert name not in result.request.headers


async def test_spoofed_consumer_header_removed_even_when_filter_fails_open() -> None:
    # A JWKS that cannot be fetched makes the filter raise; with fail = "open" the
    # request goes on, but never with a consumer header the client chose.
    inst = make_filter(
        JwtAuth, {"jwks_url": "http://127.0.0.1:9/jwks", "jwks_timeout": 1}, fail_open=True
    )
    result = await arun_chain(
        [inst], make_request("GET", "/", headers={**SPOOFED, **bearer(token())})
    )
    assert result.reply is None
    assert "X-Consumer" not in result.request.headers
    assert inst.errors == 1


# ---------------------------------------------------------------------- load-time refusals


def _rsa1024_pem() -> str:
    return pub_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


PRIVATE_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "HS256", "secret": "short"}]},
            "at least 32",
            id="short-secret",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "HS256", "secret": RSA_PUB_PEM}]},
            "PEM",
            id="pem-as-secret",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "HS256", "pem": RSA_PUB_PEM}]},
            "takes a secret",
            id="hs-with-pem",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256", "secret": "x" * 40}]},
            "not a secret",
            id="rs-with-secret",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256", "pem": pub_pem(P256)}]},
            "RSA public key",
            id="rs-with-ec-key",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "ES256", "pem": pub_pem(P384)}]},
            "secp256r1",
            id="es256-with-p384",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "EdDSA", "pem": RSA_PUB_PEM}]},
            "Ed25519",
            id="eddsa-with-rsa",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256", "pem": _rsa1024_pem()}]},
            "too short",
            id="rsa-1024",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256", "pem": PRIVATE_PEM}]},
            "private key",
            id="private-pem",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256", "pem": "junk"}]}, "not a PEM", id="junk-pem"
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256", "pem_file": "/nonexistent.pem"}]},
            "nonexistent",
            id="missing-pem-file",
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "none", "secret": "x" * 40}]}, "alg", id="alg-none"
        ),
        pytest.param(
            {"keys": [{"kid": "k1", "alg": "RS256"}]}, "exactly one of pem", id="no-material"
        ),
        pytest.param(
            {"keys": [key_entry("RS256"), key_entry("ES256")]}, "duplicate kid", id="dup-kid"
        ),
        pytest.param({}, "exactly one of jwks_file", id="no-keys"),
        pytest.param(
            {"keys": [key_entry("RS256")], "jwks_file": "/x.json"},
            "exactly one of",
            id="two-sources",
        ),
        pytest.param({"jwks_url": "http://idp.example.com/jwks"}, "https", id="plain-http-url"),
        pytest.param(
            {"keys": [key_entry("RS256")], "header": ""}, "no token source", id="no-source"
        ),
        pytest.param(
            {"keys": [key_entry("RS256")], "consumer_header": "Bad Header"},
            "invalid header",
            id="bad-header",
        ),
        pytest.param({"keys": [key_entry("RS256")], "realm": 'a"b'}, "realm", id="bad-realm"),
        pytest.param(
            {"keys": [key_entry("RS256")], "claims_to_headers": {"sub": "Host"}},
            "managed",
            id="claim-to-host",
        ),
    ],
)
def test_bad_config_refused_at_load(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as info:
        JwtAuth(JwtAuthConfig.model_validate(config))
    assert error in str(info.value)


@pytest.mark.parametrize(
    ("document", "error"),
    [
        pytest.param("{not json", "jwks_file", id="not-json"),
        pytest.param({"nokeys": []}, "not a JWKS", id="no-keys-list"),
        pytest.param({"keys": []}, "no signing key", id="empty"),
        pytest.param(
            {"keys": [{**jwk("HS256"), "alg": "RS256"}]}, "invalid oct key", id="oct-as-rs256"
        ),
        pytest.param(
            {"keys": [{**jwk("RS256"), "alg": "HS256"}]}, "invalid RSA key", id="rsa-as-hs256"
        ),
        pytest.param({"keys": [{**jwk("RS256"), "alg": "none"}]}, "unsupported alg", id="alg-none"),
        pytest.param({"keys": [jwk("RS256"), jwk("ES256")]}, "duplicate kid", id="dup-kid"),
        pytest.param(
            {"keys": [{**jwk("RS256"), "kid": None}, jwk("ES256", "k2")]},
            "without kid",
            id="kidless-among-several",
        ),
        pytest.param({"keys": [{**jwk("ES256"), "d": "AAAA"}]}, "private key", id="private-jwk"),
    ],
)
def test_bad_jwks_file_refused_at_load(document: Any, error: str, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ValueError) as info:
        JwtAuth(JwtAuthConfig.model_validate({"jwks_file": str(path)}))
    assert error in str(info.value)
    if "oct" in error:
        assert SECRETS["HS256"] not in str(info.value)  # PyJWT's message quotes the JWK


def test_oct_jwk_error_does_not_quote_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk("HS256"), "alg": "ES256"}]}))
    with pytest.raises(ValueError) as info:
        JwtAuth(JwtAuthConfig.model_validate({"jwks_file": str(path)}))
    assert jwk("HS256")["k"] not in str(info.value)


# ---------------------------------------------------------------------- JWKS over HTTP


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving ``self.document`` at /jwks.json."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": [jwk("RS256", "k1")]}
        self.status = 200
        self.hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response(self.document)

    async def start(self) -> JwksServer:
        app = web.Application()
        app.router.add_get("/jwks.json", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = await JwksServer().start()
    yield server
    await server.stop()


def url_filter(server: JwksServer, **extra: Any) -> JwtAuth:
    return JwtAuth(JwtAuthConfig.model_validate({"jwks_url": server.url, **extra}))


async def run_with(flt: JwtAuth, tok: str) -> Result:
    return await arun_filter(flt, make_request("GET", "/", headers=bearer(tok)))


async def test_jwks_url_fetched_at_first_use_then_cached(jwks_server: JwksServer) -> None:
    flt = url_filter(jwks_server)
    assert jwks_server.hits == 0, "fetched before the first request"
    for _ in range(3):
        assert_accepted(await run_with(flt, token()))
    assert jwks_server.hits == 1


async def test_jwks_url_concurrent_first_requests_share_one_fetch(jwks_server: JwksServer) -> None:
    flt = url_filter(jwks_server)
    results = await asyncio.gather(*(run_with(flt, token()) for _ in range(10)))
    for result in results:
        assert_accepted(result)
    assert jwks_server.hits == 1


async def test_jwks_url_refreshes_on_unknown_kid(jwks_server: JwksServer) -> None:
    flt = url_filter(jwks_server, refresh_interval=0.2)
    assert_accepted(await run_with(flt, token()))
    jwks_server.document = {"keys": [jwk("RS256", "k1"), jwk("EdDSA", "k2")]}  # rotation
    await asyncio.sleep(0.25)
    assert_accepted(await run_with(flt, token("EdDSA", kid="k2")))
    assert jwks_server.hits == 2
    assert_accepted(await run_with(flt, token("EdDSA", kid="k2")))
    assert jwks_server.hits == 2


async def test_jwks_url_unknown_kids_refresh_at_most_once_per_interval(
    jwks_server: JwksServer,
) -> None:
    flt = url_filter(jwks_server, refresh_interval=0.2)
    assert_accepted(await run_with(flt, token()))
    assert jwks_server.hits == 1
    # Right after a fetch: unknown kids are rejected without another one.
    for i in range(5):
        assert_rejected(await run_with(flt, token(kid=f"made-up-{i}")), "key is unknown")
    assert jwks_server.hits == 1
    # Once the interval passed: one refresh, however many unknown kids arrive.
    await asyncio.sleep(0.25)
    results = await asyncio.gather(*(run_with(flt, token(kid=f"x{i}")) for i in range(5)))
    for result in results:
        assert_rejected(result, "key is unknown")
    for i in range(5):
        assert_rejected(await run_with(flt, token(kid=f"y{i}")), "key is unknown")
    assert jwks_server.hits == 2


async def test_jwks_url_key_removed_by_issuer_stops_being_trusted(
    jwks_server: JwksServer,
) -> None:
    flt = url_filter(jwks_server, refresh_interval=0.05, jwks_max_age=0.2)
    assert_accepted(await run_with(flt, token()))
    jwks_server.document = {"keys": [jwk("ES256", "k2")]}
    await asyncio.sleep(0.25)
    assert_rejected(await run_with(flt, token()), "key is unknown")
    assert_accepted(await run_with(flt, token("ES256", kid="k2")))


async def test_jwks_url_failed_refresh_keeps_cached_keys(jwks_server: JwksServer) -> None:
    flt = url_filter(jwks_server, refresh_interval=0.05, jwks_max_age=0.1)
    assert_accepted(await run_with(flt, token()))
    jwks_server.status = 503
    await asyncio.sleep(0.15)
    assert_accepted(await run_with(flt, token()))
    assert jwks_server.hits == 2


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(None, id="http-500"),
        pytest.param({"keys": []}, id="empty-set"),
        pytest.param(
            {"keys": [{"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"}]}, id="enc-only"
        ),
    ],
)
async def test_jwks_url_unusable_at_first_use_fails_the_filter(
    document: dict[str, Any] | None, jwks_server: JwksServer
) -> None:
    if document is None:
        jwks_server.status = 500
    else:
        jwks_server.document = document
    result = await run_with(url_filter(jwks_server), token())
    assert result.status == 500  # fail = "closed": no key set is an error, not a 401


async def test_jwks_url_skips_keys_it_cannot_use(jwks_server: JwksServer) -> None:
    jwks_server.document = {
        "keys": [{"kty": "RSA", "kid": "bad", "alg": "RS256", "n": "!!", "e": "AQAB"}, jwk("RS256")]
    }
    assert_accepted(await run_with(url_filter(jwks_server), token()))


# ---------------------------------------------------------------------- real gateway


def gateway_config(upstream: RecordingUpstream, filter_config: str) -> str:
    routes = f"""
[filters.jwt]
plugin = "jwt-auth"
{filter_config}

[[routes]]
name = "api"
paths = ["/api"]
upstream = "v1"
filters = ["jwt"]
"""
    return gateway_toml({"v1": [upstream.address]}, routes, default="v1")


@pytest.fixture
def pem_path(tmp_path: Path) -> str:
    path = tmp_path / "k1.pub.pem"
    path.write_text(RSA_PUB_PEM)
    return str(path)


async def test_gateway_valid_token_forwards_consumer_and_claims(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    pem_path: str,
) -> None:
    gw = await start_gateway(
        gateway_config(
            upstream,
            f'config.keys = [{{ kid = "k1", alg = "RS256", pem_file = "{pem_path}" }}]\n'
            'config.claims_to_headers = { email = "X-User-Email" }\n'
            "config.strip_token = true\n",
        )
    )
    tok = token(email="alice@example.com")
    headers = {**bearer(tok), "X-Consumer": "root", "X-User-Email": "root@evil"}
    async with http.get(f"{gw.url}/api/orders", headers=headers) as resp:
        assert resp.status == 200
        echoed = (await resp.json())["headers"]
    seen = upstream.requests[-1].headers
    assert seen["x-consumer"] == "alice"
    assert seen["x-user-email"] == "alice@example.com"
    assert "authorization" not in seen
    assert echoed["X-Consumer"] == "alice"


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        pytest.param({}, 'Bearer realm="wasmgate"', id="missing"),
        pytest.param(
            bearer(forged({"alg": "HS256", "kid": "k1"}, claims(), RSA_PUB_PEM.encode())),
            'Bearer realm="wasmgate", error="invalid_token"',
            id="hs-rs-confusion",
        ),
        pytest.param(
            bearer(token(exp=int(time.time()) - 60)),
            'Bearer realm="wasmgate", error="invalid_token"',
            id="expired",
        ),
    ],
)
async def test_gateway_rejects_without_calling_upstream(
    headers: dict[str, str],
    challenge: str,
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    pem_path: str,
) -> None:
    gw = await start_gateway(
        gateway_config(
            upstream, f'config.keys = [{{ kid = "k1", alg = "RS256", pem_file = "{pem_path}" }}]'
        )
    )
    async with http.get(f"{gw.url}/api/orders", headers=headers) as resp:
        assert resp.status == 401
        assert (resp.headers.get("WWW-Authenticate") or "").startswith(challenge)
    assert upstream.requests == []


async def test_gateway_query_token_stripped(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(
        gateway_config(
            upstream,
            f'config.keys = [{{ kid = "h1", alg = "HS384", secret = "{SECRETS["HS384"]}" }}]\n'
            'config.query_param = "jwt"\nconfig.strip_token = true\n',
        )
    )
    tok = token("HS384", kid="h1")
    async with http.get(f"{gw.url}/api/x?page=2&jwt={tok}") as resp:
        assert resp.status == 200
    assert upstream.requests[-1].path_qs == "/api/x?page=2"


async def test_gateway_jwks_url(
    upstream: RecordingUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    jwks_server: JwksServer,
) -> None:
    gw = await start_gateway(
        gateway_config(
            upstream, f'config.jwks_url = "{jwks_server.url}"\nconfig.refresh_interval = 0.1'
        )
    )
    async with http.get(f"{gw.url}/api/x", headers=bearer(token())) as resp:
        assert resp.status == 200
    jwks_server.document = {"keys": [jwk("RS256", "k1"), jwk("ES512", "k2")]}
    await asyncio.sleep(0.15)
    async with http.get(f"{gw.url}/api/x", headers=bearer(token("ES512", kid="k2"))) as resp:
        assert resp.status == 200
    assert jwks_server.hits == 2
    assert upstream.requests[-1].headers["x-consumer"] == "alice"


def test_gateway_reports_bad_key_with_filter_name() -> None:
    toml = gateway_config(
        RecordingUpstream(port=1),
        'config.keys = [{ kid = "k1", alg = "HS256", secret = "too-short" }]',
    )
    with pytest.raises(ConfigError) as info:
        asyncio.run(InProcessGateway(toml).start())
    message = str(info.value)
    assert "filters.jwt" in message
    assert "keys[0] (kid 'k1')" in message
    assert "at least 32 bytes" in message

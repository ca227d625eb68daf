"""The zero-trust walkthrough (what ``make demo-zero-trust`` runs).

    external client --HTTPS + JWT--> gateway (127.0.0.1:8443) --mTLS--> upstream (:9443)

It makes (once; reused after) a dev CA and three certificates with ``core.certs``, the
code behind ``wasmgate cert``: the gateway's HTTPS certificate (localhost, 127.0.0.1),
the gateway's client certificate (CN=gateway) and the upstream's (api.internal); and an
ES256 key that signs JWTs, published as a JWKS file for the jwt-auth plugin. All go to
``examples/zero-trust/.certs/``. It starts the upstream, an HTTPS service that requires
a client certificate from the dev CA and answers with the certificate subject it
verified and the headers it got, then ``wasmgate run -c gateway.toml``. It sends the
walkthrough's requests, prints each with its curl equivalent and the answer, and keeps
serving until Ctrl-C.

    --check   exit after the requests (0 if every answer was the expected one)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo import (  # noqa: E402
    HOST,
    shut_down,
    something_listens,
    until_stopped,
    wait_ready,
    wasmgate_command,
)

from core.certs import describe, issue, make_ca  # noqa: E402

GATEWAY_PORT, UPSTREAM_PORT = 8443, 9443  # as in gateway.toml
CERTS = HERE / ".certs"
SHOWN = Path("examples/zero-trust/.certs")  # CERTS as the printed commands name it
ISSUER, AUDIENCE, KID = "https://login.demo.test/", "orders-api", "demo-es256"  # gateway.toml
STEMS = ("dev-ca", "gateway", "gateway-client", "api")


# ------------------------------------------------------------------ keys and certificates


def make_material() -> None:
    """The certificates and the JWT key, unless every file is there and still valid."""
    files = [CERTS / f"{s}.{ext}" for s in STEMS for ext in ("crt", "key")]
    files += [CERTS / "jwt-signing.key", CERTS / "jwks.json"]
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    if all(f.is_file() for f in files) and all(
        describe(CERTS / f"{s}.crt").not_after > soon for s in STEMS
    ):
        print(f"reusing the certificates and keys in {SHOWN}/ (delete it to make new ones)")
        return
    for f in files:
        f.unlink(missing_ok=True)
    print(f"making a dev CA, certificates and a JWT key in {SHOWN}/, as these commands would:")
    print(f"  wasmgate cert ca dev-ca --dir {SHOWN}")
    ca, ca_key = make_ca("dev-ca", CERTS)
    leaves = [
        (["localhost", "127.0.0.1"], False, "gateway", "what HTTPS clients see"),
        (["gateway"], True, "gateway-client", "the gateway's identity to upstreams"),
        (["api.internal"], False, "api", "the upstream's"),
    ]
    for names, client, stem, what in leaves:
        args = " ".join(f"--name {n}" for n in names) + (" --client" if client else "")
        print(f"  wasmgate cert issue --ca {SHOWN}/dev-ca --dir {SHOWN} \\")
        print(f"      {args} --stem {stem}".ljust(56) + f"# {what}")
        issue(ca, ca_key, names, CERTS, client=client, stem=stem)

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(CERTS / "jwt-signing.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, alg="ES256", use="sig")
    (CERTS / "jwks.json").write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    print(f"  + {SHOWN}/jwt-signing.key (ES256, the identity provider's) and jwks.json")


def token(signing_key: Path, subject: str = "alice") -> str:
    """A JWT as the identity provider would issue it: one hour, for the orders API."""
    key = serialization.load_pem_private_key(signing_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + datetime.timedelta(hours=1),
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})


# ------------------------------------------------------------------ the upstream


def orders_app() -> web.Application:
    """Answers with the client certificate it verified and the headers it got."""

    async def handle(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        body = {
            "service": "orders",
            "client_cert_subject": subject_of(peer),
            "path": request.path_qs,
            "headers": dict(request.headers),
        }
        return web.json_response(body, dumps=lambda v: json.dumps(v, indent=2) + "\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def subject_of(peer: dict[str, object] | None) -> str | None:
    if not peer:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU"}
    rdns = peer.get("subject", ())
    assert isinstance(rdns, tuple)
    return ",".join(f"{short.get(k, k)}={v}" for rdn in rdns for k, v in rdn)


def upstream_tls() -> ssl.SSLContext:
    """mTLS: only clients with a certificate from the dev CA get past the handshake."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(CERTS / "api.crt", CERTS / "api.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(CERTS / "dev-ca.crt")
    return ctx


async def start_upstream() -> web.AppRunner:
    print(f"starting the upstream on https://{HOST}:{UPSTREAM_PORT} (client certificates")
    print("  from the dev CA required) ...", flush=True)
    runner = web.AppRunner(orders_app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, UPSTREAM_PORT, ssl_context=upstream_tls()).start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"demo: cannot listen on {HOST}:{UPSTREAM_PORT}: {exc.strerror}") from None
    return runner


# ------------------------------------------------------------------ the requests


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, ssl.SSLError):
        return exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
    return str(exc) or type(exc).__name__


def via_gateway(bearer: str | None) -> tuple[int, dict[str, object] | str]:
    """GET https://localhost:8443/orders, trusting the dev CA; (status, body)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    request = urllib.request.Request(f"https://localhost:{GATEWAY_PORT}/orders", headers=headers)
    context = ssl.create_default_context(cafile=CERTS / "dev-ca.crt")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()


def direct_tls() -> str:
    """The upstream, reached directly over TLS (as api.internal) without a client cert."""
    context = ssl.create_default_context(cafile=CERTS / "dev-ca.crt")
    try:
        with (
            socket.create_connection((HOST, UPSTREAM_PORT), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="api.internal") as tls,
        ):
            tls.sendall(b"GET /orders HTTP/1.1\r\nHost: api.internal\r\nConnection: close\r\n\r\n")
            # TLS 1.3: the server refuses after the client's part of the handshake, so
            # the refusal shows on the first read (an alert, or the connection closed).
            answer = tls.recv(100)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {_reason(exc)}"
    if not answer:
        return "refused: the upstream closed the connection without an answer"
    return answer.decode(errors="replace").partition("\r\n")[0]


def direct_plain() -> str:
    """The upstream, reached directly over plain HTTP."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{UPSTREAM_PORT}/orders", timeout=5) as r:
            return f"{r.status}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code}"
    except OSError as exc:
        return f"refused: {_reason(exc)}"


def walkthrough() -> bool:
    cacert = f"--cacert {SHOWN}/dev-ca.crt"
    good = token(CERTS / "jwt-signing.key")
    (CERTS / "token.txt").write_text(good + "\n")
    print(f"\nA token for alice (ES256, kid {KID}, aud {AUDIENCE}) is in {SHOWN}/token.txt.\n")
    ok = True

    def show(n: int, title: str, command: str, got: str, passed: bool) -> None:
        nonlocal ok
        ok &= passed
        mark = "ok" if passed else "UNEXPECTED"
        print(f"{n}. {title}\n   {command}\n   -> {got}   [{mark}]\n")

    status, body = via_gateway(None)
    show(
        1,
        "No token: the gateway answers 401 itself; nothing reaches the upstream.",
        f"curl {cacert} https://localhost:{GATEWAY_PORT}/orders",
        str(body),
        status == 401,
    )

    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": 4102444800},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": KID},
    )
    (CERTS / "forged.txt").write_text(forged + "\n")
    status, body = via_gateway(forged)
    show(
        2,
        "A token signed with another key (same kid, issuer and audience): 401.",
        f'curl {cacert} -H "Authorization: Bearer $(cat {SHOWN}/forged.txt)" \\\n'
        f"        https://localhost:{GATEWAY_PORT}/orders",
        str(body),
        status == 401,
    )

    status, body = via_gateway(good)
    if isinstance(body, dict):
        seen = body.get("headers", {})
        assert isinstance(seen, dict)
        got = (
            f"{status}; the upstream verified client cert {body['client_cert_subject']}, "
            f"X-Consumer: {seen.get('X-Consumer')}, Authorization: "
            f"{seen.get('Authorization', '(stripped)')}"
        )
        passed = status == 200 and body["client_cert_subject"] == "CN=gateway"
        passed &= seen.get("X-Consumer") == "alice"
    else:
        got, passed = f"{status} {body}", False
    show(
        3,
        "A valid token: the gateway checks it, then calls the upstream over mTLS as CN=gateway.",
        f'curl {cacert} -H "Authorization: Bearer $(cat {SHOWN}/token.txt)" \\\n'
        f"        https://localhost:{GATEWAY_PORT}/orders",
        got,
        passed,
    )

    got = direct_tls()
    show(
        4,
        "Straight to the upstream over TLS, without a client certificate: refused.",
        f"curl {cacert} --resolve api.internal:{UPSTREAM_PORT}:{HOST} "
        f"https://api.internal:{UPSTREAM_PORT}/orders",
        got,
        got.startswith("refused"),
    )

    got = direct_plain()
    show(
        5,
        "Straight to the upstream over plain HTTP: refused (it speaks TLS only).",
        f"curl http://{HOST}:{UPSTREAM_PORT}/orders",
        got,
        got.startswith("refused"),
    )
    return ok


# ------------------------------------------------------------------ main


async def main_async(check: bool) -> int:
    for port in (GATEWAY_PORT, UPSTREAM_PORT):
        if something_listens(port):
            print(f"demo: something already listens on {HOST}:{port}; stop it first")
            return 1
    make_material()
    runner = await start_upstream()
    # From this folder: gateway.toml's paths, jwks_file included, are relative to it.
    proc = await asyncio.create_subprocess_exec(
        *wasmgate_command(), "run", "-c", "gateway.toml", cwd=HERE
    )
    status = 0
    try:
        if not await wait_ready(proc, GATEWAY_PORT):
            print("demo: the gateway did not start", file=sys.stderr)
            return 1
        print(
            f"wasmgate serves examples/zero-trust/gateway.toml on https://localhost:{GATEWAY_PORT}"
        )
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, walkthrough)
        status = 0 if ok else 1
        if check:
            return status
        await until_stopped("the gateway and the upstream")
    finally:
        await shut_down(proc, [runner])
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit after the requests")
    args = parser.parse_args()
    return asyncio.run(main_async(args.check))


if __name__ == "__main__":
    sys.exit(main())

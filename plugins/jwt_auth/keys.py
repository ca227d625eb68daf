"""Verification keys for ``jwt-auth``: each one pinned to exactly one algorithm.

A key is loaded, checked against its algorithm and refused with a ``ValueError`` when
they do not fit, so that a token can only ever be verified the way its key allows:

* ``RS*`` / ``PS*``: an RSA public key of at least 2048 bits;
* ``ES256`` / ``ES384`` / ``ES512`` / ``ES256K``: an EC public key on P-256 / P-384 /
  P-521 / secp256k1;
* ``EdDSA``: an Ed25519 or Ed448 public key;
* ``HS256`` / ``HS384`` / ``HS512``: a secret of at least 32 / 48 / 64 bytes (the size of
  the hash, RFC 7518 section 3.2). A PEM is never accepted as a secret, so an RSA public
  key cannot be turned into an HMAC key (the classic RS/HS confusion).

Private keys are refused: the gateway only verifies. ``none`` is no algorithm here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {
    "ES256": "secp256r1",
    "ES384": "secp384r1",
    "ES512": "secp521r1",
    "ES256K": "secp256k1",
}
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
ALGORITHMS = frozenset({*RSA_ALGS, *EC_CURVES, "EdDSA", *HMAC_MIN_BYTES})
MIN_RSA_BITS = 2048

# What a JWK without "alg" is pinned to: unambiguous for EC and OKP curves; RSA and
# oct keys get the most common algorithm of their type (set "alg" for another one).
_JWK_DEFAULT_ALG: dict[tuple[object, object], str] = {
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("EC", "P-521"): "ES512",
    ("EC", "secp256k1"): "ES256K",
    ("OKP", "Ed25519"): "EdDSA",
    ("OKP", "Ed448"): "EdDSA",
    ("RSA", None): "RS256",
    ("oct", None): "HS256",
}


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One key: its id (None if it has none), its one algorithm, the key object."""

    kid: str | None
    alg: str
    key: Any  # a cryptography public key, or the HMAC secret as bytes


def check_key(alg: str, key: object) -> None:
    """Raise ValueError unless ``key`` is a public key (or secret) fit for ``alg``."""
    if alg in RSA_ALGS:
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"{alg} needs an RSA public key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too short (< {MIN_RSA_BITS})")
    elif alg in EC_CURVES:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != EC_CURVES[alg]:
            raise ValueError(f"{alg} needs an EC public key on curve {EC_CURVES[alg]}")
    elif alg == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            raise ValueError("EdDSA needs an Ed25519 or Ed448 public key")
    elif alg in HMAC_MIN_BYTES:
        if not isinstance(key, bytes):
            raise ValueError(f"{alg} needs a secret")
        if len(key) < HMAC_MIN_BYTES[alg]:
            raise ValueError(f"{alg} secret must be at least {HMAC_MIN_BYTES[alg]} bytes")
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; one of {', '.join(sorted(ALGORITHMS))}")


def pem_key(alg: str, pem: bytes) -> VerifyKey:
    """The public key (or certificate's key) in ``pem``, checked against ``alg`` (kid unset)."""
    if alg in HMAC_MIN_BYTES:
        raise ValueError(f"{alg} takes a secret, not a PEM key")
    key: Any
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            key = None
    if key is None:
        try:
            load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("not a PEM public key or certificate") from None
        raise ValueError("this is a private key; configure the public key only")
    check_key(alg, key)
    return VerifyKey(None, alg, key)


def secret_key(alg: str, secret: str) -> VerifyKey:
    """An HMAC secret (its UTF-8 bytes), checked against ``alg`` (kid unset)."""
    if alg not in HMAC_MIN_BYTES:
        raise ValueError(f"{alg} takes a public key (pem or pem_file), not a secret")
    data = secret.encode("utf-8")
    if b"-----BEGIN" in data:
        raise ValueError("a PEM key cannot be used as an HMAC secret")
    check_key(alg, data)
    return VerifyKey(None, alg, data)


def jwk_key(jwk: Mapping[str, Any]) -> VerifyKey:
    """The key of one JWK, pinned to its ``alg`` (or its type's default)."""
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid must be a string")
    alg = jwk.get("alg")
    if alg is None:
        alg = _JWK_DEFAULT_ALG.get((kty, jwk.get("crv") if kty in ("EC", "OKP") else None))
        if alg is None:
            raise ValueError(f"no alg and cannot infer one for kty {kty!r}")
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported alg {alg!r}")
    if "d" in jwk and kty != "oct":
        raise ValueError("the JWK holds a private key; publish the public key only")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except jwt.PyJWTError as exc:
        # PyJWT's messages quote the whole JWK: never for a secret (oct) key.
        detail = "" if kty == "oct" else f": {exc}"
        raise ValueError(f"invalid {kty} key for {alg}{detail}") from None
    check_key(alg, key)
    return VerifyKey(kid, alg, key)


def parse_jwks(data: object, *, strict: bool) -> tuple[list[VerifyKey], list[str]]:
    """The keys of a JWKS document and the problems found.

    ``strict`` (a JWKS file): any bad key is a ValueError. Otherwise (a JWKS URL,
    which may publish keys we cannot use) bad keys are skipped and listed.
    Encryption keys (``"use": "enc"``) are always skipped.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWKS: expected an object with a "keys" list')
    keys: list[VerifyKey] = []
    problems: list[str] = []
    for i, jwk in enumerate(data["keys"]):
        label = f"keys[{i}]"
        try:
            if not isinstance(jwk, dict):
                raise ValueError("not an object")
            if isinstance(jwk.get("kid"), str):
                label += f" (kid {jwk['kid']!r})"
            if jwk.get("use", "sig") != "sig":
                continue
            keys.append(jwk_key(jwk))
        except ValueError as exc:
            if strict:
                raise ValueError(f"{label}: {exc}") from None
            problems.append(f"{label}: {exc}")
    return keys, problems


class KeySet:
    """Keys by kid. A token without a kid may use the one key only when there is one.

    Raises ValueError on a duplicate kid, or a key without a kid among several (it
    could never be chosen).
    """

    __slots__ = ("by_kid", "only")

    def __init__(self, keys: Iterable[VerifyKey]) -> None:
        keys = list(keys)
        self.by_kid: dict[str, VerifyKey] = {}
        for key in keys:
            if key.kid is None:
                if len(keys) > 1:
                    raise ValueError("a key without kid among several keys")
                continue
            if key.kid in self.by_kid:
                raise ValueError(f"duplicate kid {key.kid!r}")
            self.by_kid[key.kid] = key
        self.only: VerifyKey | None = keys[0] if len(keys) == 1 else None

    def get(self, kid: str | None) -> VerifyKey | None:
        if kid is None:
            return self.only
        return self.by_kid.get(kid)

    def __len__(self) -> int:
        return len(self.by_kid) or (1 if self.only else 0)

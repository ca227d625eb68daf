"""HTTPS listeners: certificates chosen by SNI, client certificates, rotation.

Each snapshot builds a :class:`ServerTLS` from ``[[certificates]]`` and ``[server.tls]``:
one :class:`ssl.SSLContext` per certificate (its chain and key, the minimum version and
ciphers, and its client-certificate policy), indexed by host name. A listener's own
context holds no certificate. Its SNI callback asks the gateway's *current* snapshot
for the context of the name the client sent (an exact name, then a one-label wildcard,
then the certificate without hosts, which is the default) and switches the connection
to it. If nothing matches, the handshake is refused (``unrecognized_name``). Because
the lookup goes through the current snapshot, a reload with new certificate files
serves them to new connections, while established connections keep theirs. With no
``[[certificates]]`` at all, HTTPS listeners still start: every name gets a generated
self-signed default certificate (:mod:`core.default_cert`) until a reload brings real
ones. With ``[kubernetes]`` and no certificate without hosts, that generated one is
the default too (names no certificate covers get it, as an Ingress controller does).

Loading refuses, naming the file: a missing or unreadable file, a chain and key that do
not match, a CA bundle that cannot be read, and client verification without a CA. It
warns about certificates that expire within ``server.tls.expiry_warning_days``.

Client certificates (``client_auth = "optional" | "required"``) are verified against
``client_ca``. The verified subject and SANs reach filters as ``ctx.tls``, and, with
``forward_client_cert``, upstreams as ``X-Client-Cert-Subject`` and
``X-Client-Cert-SAN``. The parser drops those two headers from every client request, so
no client can forge them.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from core.config import DEFAULT_CIPHERS, Certificate, GatewayConfig
from core.config import ServerTLS as ServerTLSConfig
from core.errors import ConfigError
from core.wording import plural
from plugin_sdk import TLSInfo

VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
LEGACY_CIPHERS = (
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)
# The SNI name each connection asked for (the server side of ssl has no attribute for it).
_SNI: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


@dataclass
class ServerTLS:
    """The certificates of one snapshot, by host name."""

    exact: dict[str, ssl.SSLContext] = field(default_factory=dict)
    wildcard: dict[str, ssl.SSLContext] = field(default_factory=dict)  # "example.com" for *.
    default: ssl.SSLContext | None = None
    # Per certificate context: (client_auth, the CAs its client certificates must come from)
    policy: dict[int, tuple[str, list[Any]]] = field(default_factory=dict)
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    ciphers: str = ""
    ask_client_cert: bool = False
    client_cas: list[Path] = field(default_factory=list)
    forward_client_cert: bool = True
    warnings: list[str] = field(default_factory=list)
    expiries: dict[str, datetime] = field(default_factory=dict)  # file or secret → not after
    generated_default: bool = False  # the default is core.default_cert's placeholder
    # For listeners in server.http2.off: each context's twin that offers http/1.1 only
    # (ALPN is chosen with the context SNI switched to). Empty when none needs one.
    http1_twins: dict[int, ssl.SSLContext] = field(default_factory=dict)

    def configure(self, listener: ssl.SSLContext) -> None:
        """Apply the listener-wide settings (at start and at every reload): the
        handshake keeps these from the listener's context whichever certificate SNI
        picks. Client certificates are asked for (and verified against every client
        CA) when some host wants them; :meth:`admit` then applies each host's rule."""
        listener.minimum_version = self.min_version
        listener.set_ciphers(self.ciphers)
        for ca in self.client_cas:
            listener.load_verify_locations(cafile=ca)
        listener.verify_mode = ssl.CERT_OPTIONAL if self.ask_client_cert else ssl.CERT_NONE

    def admit(self, sslobj: Any, info: TLSInfo) -> tuple[TLSInfo, str | None]:
        """The connection's identity under its host's rule, or a reason to refuse it."""
        auth, cas = self.policy.get(id(sslobj.context), ("none", []))
        if auth == "none":
            return TLSInfo(info.version, info.cipher, info.server_name), None
        if not info.peer_subject:
            if auth == "required":
                return info, f"no client certificate for {info.server_name or 'the default host'}"
            return info, None
        from cryptography import x509

        peer = x509.load_der_x509_certificate(sslobj.getpeercert(binary_form=True))
        for ca in cas:
            try:
                peer.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return info, None
        return info, (
            f"client certificate {info.peer_subject} is not from the CA of "
            f"{info.server_name or 'the default host'}"
        )

    def select(self, name: str | None) -> ssl.SSLContext | None:
        if name:
            name = name.lower().rstrip(".")
            ctx = self.exact.get(name)
            if ctx is not None:
                return ctx
            label, dot, parent = name.partition(".")
            if dot and label:  # "*.a" covers "x.a", not ".a" (an empty label is none)
                ctx = self.wildcard.get(parent)
                if ctx is not None:
                    return ctx
        return self.default


def build_server_tls(cfg: GatewayConfig, base_dir: Path) -> ServerTLS | None:
    """The HTTPS certificates of ``cfg`` (None without ``[[certificates]]`` and
    ``tls_listen``); raises :class:`ConfigError` listing every certificate that cannot
    be used."""
    if not cfg.certificates and not cfg.server.tls_listen:
        return None
    opts = cfg.server.tls
    ciphers = opts.ciphers
    if opts.min_version in ("1.0", "1.1"):
        # Those versions have no AEAD suites: allow the CBC ones, at the low security
        # level they need. Only when someone lowers min_version on purpose.
        if ciphers == DEFAULT_CIPHERS:
            ciphers += ":" + LEGACY_CIPHERS
        ciphers += ":@SECLEVEL=0"
    out = ServerTLS(
        min_version=VERSIONS[opts.min_version],
        ciphers=ciphers,
        forward_client_cert=opts.forward_client_cert,
    )
    problems: list[str] = []
    h2 = cfg.server.http2
    twins = h2.tls and any(item in h2.off for item in cfg.server.tls_listen)
    for i, cert in enumerate(cfg.certificates):
        where = f"certificates[{i}]"
        try:
            ctx, not_after = _context(cert, base_dir, where, alpn(cfg.server.http2.tls))
            auth, cas = _client_policy(cert, opts, base_dir, where)
            if twins:
                twin, _ = _context(cert, base_dir, where, alpn(False))
                out.http1_twins[id(ctx)] = twin
                out.policy[id(twin)] = (auth, [c for _, c in cas])
        except ConfigError as exc:
            problems += exc.problems
            continue
        out.policy[id(ctx)] = (auth, [c for _, c in cas])
        if auth != "none":
            out.ask_client_cert = True
            out.client_cas += [p for p, _ in cas if p not in out.client_cas]
        label = cert.cert or f"secret {cert.secret or where}"
        out.expiries[label] = not_after
        days = (not_after - datetime.now(UTC)).total_seconds() / 86400
        if days < 0:
            out.warnings.append(f"{where}: {label} expired on {not_after:%Y-%m-%d}")
        elif days < opts.expiry_warning_days:
            out.warnings.append(
                f"{where}: {label} expires in {plural(round(days), 'day')} ({not_after:%Y-%m-%d})"
            )
        if not cert.hosts:
            if out.default is not None:
                problems.append(f"{where}: a second certificate without hosts (one default only)")
            out.default = ctx
        for host in cert.hosts:
            table, key = (out.wildcard, host[2:]) if host.startswith("*.") else (out.exact, host)
            if key in table:
                problems.append(f"{where}: host {host!r} has a certificate already")
            table[key] = ctx
    if problems:
        raise ConfigError("certificates", problems)
    if out.default is None and (not cfg.certificates or cfg.kubernetes is not None):
        from core.default_cert import default_context

        out.default = default_context()
        out.generated_default = True
        if not cfg.certificates:
            out.warnings.append(
                "server.tls_listen: no [[certificates]]: HTTPS answers every name with a "
                "generated self-signed default certificate until certificates are configured"
            )
    # After the SNI switch OpenSSL verifies client certificates with the chosen
    # context's trust store: every context gets every client CA (admit() then holds
    # each host to its own).
    contexts = {id(c): c for c in [*out.exact.values(), *out.wildcard.values()]}
    if out.default is not None:
        contexts[id(out.default)] = out.default
    contexts.update({id(c): c for c in out.http1_twins.values()})
    for ctx in contexts.values():
        ctx.set_ciphers(out.ciphers)  # the security level applies to the chosen context
        for ca in out.client_cas:
            ctx.load_verify_locations(cafile=ca)
    return out


def alpn(http2: bool) -> list[str]:
    """The protocols offered in ALPN, best first."""
    return ["h2", "http/1.1"] if http2 else ["http/1.1"]


def _context(
    cert: Certificate, base_dir: Path, where: str, protocols: list[str]
) -> tuple[ssl.SSLContext, datetime]:
    """The certificate's own context. Only its chain and key count: the SNI switch
    keeps the listener's protocol, cipher and verification settings (OpenSSL's rule);
    ALPN is chosen with the switched-to context's list, so ``protocols`` is set here."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(protocols)
    if cert.cert is not None and cert.key is not None:
        chain, key = base_dir / cert.cert, base_dir / cert.key
        for field_name, path in (("cert", chain), ("key", key)):
            if not path.is_file():
                raise ConfigError(where, [f"{where}.{field_name}: {path}: no such file"])
        pem = chain.read_bytes()
        _load_pair(ctx, chain, key, where, f"{chain} and {key}")
    else:
        assert cert.cert_pem is not None and cert.key_pem is not None
        pem = cert.cert_pem.encode()
        with tempfile.TemporaryDirectory(prefix="wasmgate-tls-") as tmp:
            chain, key = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
            chain.write_bytes(pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(cert.key_pem)
            _load_pair(ctx, chain, key, where, f"the inline pair{_from(cert)}")
    return ctx, _not_after(pem, where)


def _client_policy(
    cert: Certificate, opts: ServerTLSConfig, base_dir: Path, where: str
) -> tuple[str, list[tuple[Path, Any]]]:
    """(client_auth, [(CA file, CA certificate)]) for the hosts of ``cert``."""
    from cryptography import x509

    auth = cert.client_auth or opts.client_auth
    ca = cert.client_ca or opts.client_ca
    if auth == "none":
        return auth, []
    if ca is None:
        raise ConfigError(where, [f"{where}: client_auth = {auth!r} needs client_ca"])
    path = base_dir / ca
    try:
        cas = x509.load_pem_x509_certificates(path.read_bytes())
        ssl.create_default_context(cafile=path)  # what OpenSSL will load, checked now
    except (OSError, ValueError, ssl.SSLError) as exc:
        field_name = "client_ca" if cert.client_ca else "server.tls.client_ca"
        raise ConfigError(where, [f"{where}: {field_name}: cannot load {path}: {exc}"]) from None
    return auth, [(path, c) for c in cas]


def _from(cert: Certificate) -> str:
    return f" of secret {cert.secret}" if cert.secret else ""


def _load_pair(ctx: ssl.SSLContext, chain: Path, key: Path, where: str, label: str) -> None:
    try:
        ctx.load_cert_chain(chain, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc).upper() or "key values mismatch" in str(exc):
            reason = "the key does not belong to the certificate"
        raise ConfigError(where, [f"{where}: {label}: {reason}"]) from None
    except OSError as exc:
        raise ConfigError(where, [f"{where}: {label}: {exc.strerror or exc}"]) from None


def _not_after(pem: bytes, where: str) -> datetime:
    from cryptography import x509

    try:
        first = x509.load_pem_x509_certificates(pem)[0]
    except ValueError as exc:
        raise ConfigError(where, [f"{where}: not a PEM certificate: {exc}"]) from None
    return first.not_valid_after_utc


def listener_context(
    current: Callable[[], ServerTLS | None], protocols: list[str] | None = None
) -> ssl.SSLContext:
    """The context of an HTTPS listener: no certificate of its own; the SNI callback
    switches each connection to the current snapshot's context for its name (its
    http/1.1-only twin when this listener offers http/1.1 only)."""
    http1_only = protocols == alpn(False)
    base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    base.set_alpn_protocols(protocols or ["http/1.1"])
    base.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    tls = current()
    if tls is not None:
        tls.configure(base)

    def choose(sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        tls = current()
        ctx = tls.select(name) if tls is not None else None
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        if http1_only and tls is not None:
            ctx = tls.http1_twins.get(id(ctx), ctx)
        sslobj.context = ctx
        _SNI[sslobj] = (name or "").lower().rstrip(".")
        return None

    base.sni_callback = choose
    return base


def connection_info(sslobj: Any) -> TLSInfo:
    """What a handshake established, for ``ctx.tls``."""
    cipher = sslobj.cipher()
    subject: str = ""
    sans: tuple[str, ...] = ()
    der = sslobj.getpeercert(binary_form=True)
    # A client certificate is only there when the listener asked for one, and then the
    # handshake succeeded only if it verified (ServerTLS.admit applies the host's CA).
    if der:
        subject, sans = _identity(der)
    return TLSInfo(
        version=sslobj.version() or "",
        cipher=cipher[0] if cipher else "",
        server_name=_SNI.get(sslobj, ""),
        peer_subject=subject,
        peer_sans=sans,
    )


def _identity(der: bytes) -> tuple[str, tuple[str, ...]]:
    """(RFC 4514 subject, SANs as ``DNS:name`` / ``IP:address`` / ``URI:...``)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cert.subject.rfc4514_string(), ()
    sans = [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
    sans += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
    sans += [f"URI:{u}" for u in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    sans += [f"email:{e}" for e in ext.get_values_for_type(x509.RFC822Name)]
    return cert.subject.rfc4514_string(), tuple(sans)


def header_value(text: str) -> bytes:
    """``text`` safe as a header value: printable ASCII, anything else escaped."""
    return text.encode("ascii", "backslashreplace").translate(None, bytes(range(32)) + b"\x7f")

"""``wasmgate cert ca|issue``: a private CA and the certificates it signs (:mod:`core.certs`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.certs import describe, issue, make_ca
from core.errors import CertError

EXAMPLES = """\
the zero-trust chain in four commands (examples/zero-trust/ runs it):
  wasmgate cert ca dev-ca                                    # certs/dev-ca.crt, .key
  wasmgate cert issue --ca certs/dev-ca --name localhost --name 127.0.0.1 --stem gateway
  wasmgate cert issue --ca certs/dev-ca --name gateway --client --stem gateway-client
  wasmgate cert issue --ca certs/dev-ca --name api.internal --stem api

then, in gateway.toml:
  [[certificates]]                   # what HTTPS clients see (they trust dev-ca.crt)
  cert = "certs/gateway.crt"
  key = "certs/gateway.key"
  [[upstreams]]                      # mTLS to the upstream, which serves certs/api.*
  tls = true                         # and requires client certificates from dev-ca
  tls_ca = "certs/dev-ca.crt"
  tls_sni = "api.internal"
  tls_cert = "certs/gateway-client.crt"
  tls_key = "certs/gateway-client.key"
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cert = sub.add_parser(
        "cert",
        help="make a private CA and the server and client certificates it signs",
        description="A private certificate authority for HTTPS listeners and mutual TLS "
        "with upstreams. Keys are EC P-256, files PEM, keys mode 0600; an existing file "
        "is never overwritten.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = cert.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    ca = csub.add_parser(
        "ca",
        help="make a self-signed CA: DIR/NAME.crt and DIR/NAME.key",
        description="Make a self-signed CA certificate (CN=NAME, CA:TRUE, pathlen 0: it "
        "signs leaves only) and its key. Peers trust DIR/NAME.crt; keep DIR/NAME.key "
        "private.",
    )
    ca.add_argument("name", metavar="NAME", help="the CA's name (CN) and file stem")
    ca.add_argument("--dir", type=Path, default=Path("certs"), help="folder (default: certs)")
    ca.add_argument(
        "--days", type=int, default=3650, help="validity in days (default: %(default)s)"
    )
    ca.set_defaults(func=cmd_ca)

    iss = csub.add_parser(
        "issue",
        help="issue a server (or --client) certificate signed by a CA",
        description="Issue a certificate signed by the CA, for every --name (a DNS name, "
        "'*.example.com', or an IP address; the first is also the CN). Writes "
        "DIR/STEM.crt, the certificate alone (peers trust the CA file, so no chain is "
        "included), and DIR/STEM.key. A server certificate (extendedKeyUsage serverAuth) "
        "by default; --client makes a client certificate (clientAuth) for mutual TLS.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    iss.add_argument(
        "--ca",
        required=True,
        metavar="CA",
        help="the CA: certs/dev-ca (meaning certs/dev-ca.crt and .key) or the .crt path, "
        "its .key beside it",
    )
    iss.add_argument(
        "--name",
        action="append",
        required=True,
        dest="names",
        metavar="HOST",
        help="a DNS name or IP address the certificate is for (repeatable)",
    )
    iss.add_argument("--client", action="store_true", help="a client certificate (mTLS)")
    iss.add_argument("--dir", type=Path, default=Path("certs"), help="folder (default: certs)")
    iss.add_argument(
        "--days",
        type=int,
        default=825,
        help="validity in days (default: %(default)s; never past the CA's)",
    )
    iss.add_argument("--stem", help="file name without suffix (default: the first --name)")
    iss.set_defaults(func=cmd_issue)


def ca_files(text: str) -> tuple[Path, Path]:
    """``certs/dev-ca`` or ``certs/dev-ca.crt`` (or ``.pem``) -> the certificate and key."""
    path = Path(text)
    if path.suffix in (".crt", ".pem"):
        return path, path.with_suffix(".key")
    return Path(f"{text}.crt"), Path(f"{text}.key")


def _report(crt: Path, key: Path) -> None:
    info = describe(crt)
    names = f"  names: {', '.join(info.names)}" if info.names else ""
    print(f"wrote {crt}  ({info.subject}{names})")
    print(f"  sha256 {info.fingerprint}")
    print(f"  expires {info.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"wrote {key}  (private key, mode 0600)")


def cmd_ca(args: argparse.Namespace) -> int:
    try:
        crt, key = make_ca(args.name, args.dir, days=args.days)
        _report(crt, key)
    except CertError as exc:
        print(f"wasmgate: {exc}", file=sys.stderr)
        return 1
    print(f"clients and upstreams that should trust it: give them {crt} (tls_ca, client_ca)")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    ca_cert, ca_key = ca_files(args.ca)
    try:
        crt, key = issue(
            ca_cert,
            ca_key,
            args.names,
            args.dir,
            client=args.client,
            days=args.days,
            stem=args.stem,
        )
        _report(crt, key)
    except CertError as exc:
        print(f"wasmgate: {exc}", file=sys.stderr)
        return 1
    kind = "client (clientAuth)" if args.client else "server (serverAuth)"
    print(f"a {kind} certificate signed by {ca_cert}")
    return 0

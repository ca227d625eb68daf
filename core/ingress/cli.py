"""``wasmgate ingress import``: Kubernetes manifests → a commented gateway.toml."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from core.config import parse_address, parse_config
from core.errors import ConfigError
from core.gatewayapi.translate import DEFAULT_CONTROLLER, combine
from core.gatewayapi.translate import translate as translate_gateway_api
from core.ingress.objects import load_manifests
from core.ingress.render import render
from core.ingress.translate import Settings, translate
from core.wording import plural

EXAMPLES = """\
examples:
  wasmgate ingress import k8s/ --ingress-class nginx -o gateway.toml
  wasmgate ingress import ingress.yaml --service default/web=127.0.0.1:8080
  wasmgate ingress import gateway-api/ --gateway-controller example.com/gateway-controller
  kubectl get ingress,ingressclass,service,endpoints -A -o yaml | \\
      wasmgate ingress import - --ingress-class nginx

Instead of importing once, gateway.toml can read the manifests at every load:
  [kubernetes]
  manifests = ["k8s/"]
  ingress_class = "nginx"
  gateway_controller = "wasmgate.dev/gateway-controller"
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingress = sub.add_parser(
        "ingress",
        help="Kubernetes Ingress manifests (with NGINX Ingress annotations) to gateway.toml",
        description="Work with Kubernetes Ingress manifests.",
    )
    isub = ingress.add_subparsers(dest="ingress_command", metavar="SUBCOMMAND", required=True)
    imp = isub.add_parser(
        "import",
        help="translate manifests into a gateway.toml",
        description="Read YAML/JSON manifests (files, folders, or - for standard input) "
        "with Ingress, IngressClass, Service, Endpoints, EndpointSlice and TLS Secret "
        "objects, and Gateway API GatewayClass, Gateway, HTTPRoute and ReferenceGrant "
        "objects; translate the Ingresses of one IngressClass, with their "
        "nginx.ingress.kubernetes.io annotations, and the HTTPRoutes of the Gateways of "
        "one GatewayClass controllerName into routes, upstreams and filters; "
        "write a gateway.toml that says where each table came from. Unsupported "
        "annotations are listed as warnings, and so is what cannot be used (a bad "
        "annotation value falls back to NGINX Ingress's default; an unusable Ingress or "
        "object is skipped), as when gateway.toml reads the manifests. The result is "
        "validated before it is written; an existing OUT is not overwritten without --force.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("files", nargs="+", metavar="FILE", help="manifest files or folders, or -")
    imp.add_argument(
        "--ingress-class",
        default="wasmgate",
        metavar="NAME",
        help="the IngressClass to serve (default: wasmgate)",
    )
    imp.add_argument(
        "--gateway-controller",
        default=DEFAULT_CONTROLLER,
        metavar="NAME",
        help=f"the GatewayClass controllerName to serve (default: {DEFAULT_CONTROLLER})",
    )
    imp.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT",
        help="write here (default: standard output); TLS Secrets go to OUT's folder, tls/",
    )
    imp.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NS/NAME[:PORT]=HOST:PORT[,HOST:PORT]",
        help="endpoints of a service the manifests lack Endpoints for (repeatable)",
    )
    imp.add_argument("--force", action="store_true", help="overwrite OUT")
    imp.set_defaults(func=cmd_import)


def _services(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, addresses = item.partition("=")
        if not sep or "/" not in name:
            raise ConfigError("--service", [f"{item!r}: expected NS/NAME[:PORT]=HOST:PORT"])
        for address in addresses.split(","):
            try:
                parse_address(address)
            except ValueError as exc:
                raise ConfigError("--service", [f"{item!r}: {exc}"]) from None
        out[name] = addresses.split(",")
    return out


def cmd_import(args: argparse.Namespace) -> int:
    out: Path | None = args.output
    if out is not None and out.exists() and not args.force:
        print(f"wasmgate: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    try:
        paths = []
        stdin_copy = None
        for f in args.files:
            if f == "-":
                import tempfile

                stdin_copy = Path(tempfile.mkstemp(suffix=".yaml")[1])
                stdin_copy.write_text(sys.stdin.read())
                paths.append(stdin_copy)
            else:
                paths.append(Path(f))
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ConfigError("ingress import", [f"not found: {', '.join(missing)}"])
        try:
            found = load_manifests(paths, lenient=True)
        finally:
            if stdin_copy is not None:
                stdin_copy.unlink(missing_ok=True)
        settings = Settings(args.ingress_class, _services(args.service))
        tr = translate(found, settings)
        gw = translate_gateway_api(found, settings, args.gateway_controller)
        combine(tr, gw)
        tr.warnings[:0] = found.skipped
        if out is not None:
            _write_secrets(tr.certificates, out)
        inputs = ["(standard input)" if f == "-" else f for f in args.files]
        command = "wasmgate ingress import " + " ".join(
            [*inputs, f"--ingress-class {args.ingress_class}"]
            + ([f"--gateway-controller {args.gateway_controller}"] if gw.routes_served else [])
        )
        also = (
            [
                f"Gateway controller served: {args.gateway_controller!r}; Gateways: "
                f"{', '.join(gw.gateways)}; HTTPRoutes: {', '.join(gw.routes_served)}"
            ]
            if gw.gateways
            else []
        )
        text = render(tr, inputs, args.ingress_class, command, also)
        source = str(out) if out is not None else "<generated>"
        parse_config(tomllib.loads(text), source)  # never write what would not load
    except ConfigError as exc:
        print(f"wasmgate: {exc}", file=sys.stderr)
        return 1
    for warning in tr.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not tr.ingresses and not gw.routes_served:
        print(
            f"warning: no Ingress of class {args.ingress_class!r} nor HTTPRoute of a Gateway "
            f"of controller {args.gateway_controller!r} in the input "
            "(see --ingress-class, --gateway-controller)",
            file=sys.stderr,
        )
    if out is None:
        sys.stdout.write(text)
        return 0
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(
        f"wrote {out}: {plural(len(tr.routes), 'route')}, "
        f"{plural(len(tr.upstreams), 'upstream')}, {plural(len(tr.filters), 'filter')} "
        f"from {plural(len(tr.ingresses), 'Ingress', 'Ingresses')}"
        + (f" and {plural(len(gw.routes_served), 'HTTPRoute')}" if gw.routes_served else ""),
        file=sys.stderr,
    )
    return 0


def _write_secrets(certificates: list[dict[str, object]], out: Path) -> None:
    """Move inline PEMs (from Secrets) into files under OUT's folder, tls/."""
    folder = out.parent / "tls"
    for cert in certificates:
        if "cert_pem" not in cert:
            continue
        stem = str(cert.get("secret", "secret")).replace("/", "-")
        folder.mkdir(mode=0o700, exist_ok=True)
        for field, suffix, mode in (("cert_pem", ".crt", 0o644), ("key_pem", ".key", 0o600)):
            path = folder / f"{stem}{suffix}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as f:
                f.write(str(cert.pop(field)))
            cert[field.removesuffix("_pem")] = f"tls/{path.name}"

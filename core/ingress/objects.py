"""Kubernetes objects as wasmgate reads them from manifest files.

:func:`load_manifests` reads YAML (several documents per file, ``---``) or JSON files,
and folders of them (``*.yaml``, ``*.yml``, ``*.json``, recursively, in name order),
keeping the objects the Ingress dialect needs:

- ``networking.k8s.io/v1`` **Ingress** and **IngressClass**;
- ``v1`` **Service**, **Endpoints** and **Secret** (type ``kubernetes.io/tls``);
- ``discovery.k8s.io/v1`` **EndpointSlice**;
- ``v1`` **List** (what ``kubectl get -o yaml`` writes), whose items are read in turn;
- the Gateway API's kinds and ``v1`` **Namespace**, kept as read for
  :mod:`core.gatewayapi`, which validates them itself.

Other kinds (Deployments, ConfigMaps, ...) are skipped without a word: manifests of a
whole application are normal input. Only the fields used are modelled; the rest is
ignored, as the API server's clients do. A malformed object is reported with the file,
the document's position, its kind and name, and the field: refused by default, or, with
``lenient`` (what ``[kubernetes]`` and ``ingress import`` use), skipped and listed in
:attr:`Manifests.skipped` while the rest is read.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConfigError

SUFFIXES = (".yaml", ".yml", ".json")
GATEWAY_API_KINDS = frozenset(
    {"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "Namespace"}
)
MAX_FILE = 16 * 1024 * 1024


class K8s(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Meta(K8s):
    name: str = Field(min_length=1)
    namespace: str = "default"
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    creation: str | None = Field(None, alias="creationTimestamp")


class ServicePort(K8s):
    number: int | None = None
    name: str | None = None


class ServiceBackend(K8s):
    name: str = Field(min_length=1)
    port: ServicePort = Field(default_factory=ServicePort)


class Backend(K8s):
    service: ServiceBackend | None = None
    resource: dict[str, Any] | None = None


class HTTPPath(K8s):
    path: str | None = None
    path_type: Literal["Exact", "Prefix", "ImplementationSpecific"] = Field(alias="pathType")
    backend: Backend


class HTTPRule(K8s):
    paths: list[HTTPPath] = Field(default_factory=list)


class Rule(K8s):
    host: str | None = None
    http: HTTPRule | None = None


class TLS(K8s):
    hosts: list[str] = Field(default_factory=list)
    secret_name: str | None = Field(None, alias="secretName")


class IngressSpec(K8s):
    ingress_class_name: str | None = Field(None, alias="ingressClassName")
    default_backend: Backend | None = Field(None, alias="defaultBackend")
    rules: list[Rule] = Field(default_factory=list)
    tls: list[TLS] = Field(default_factory=list)


class Ingress(K8s):
    metadata: Meta
    spec: IngressSpec = Field(default_factory=IngressSpec)


class IngressClassSpec(K8s):
    controller: str = ""


class IngressClass(K8s):
    metadata: Meta
    spec: IngressClassSpec = Field(default_factory=IngressClassSpec)


class SvcPort(K8s):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = Field(None, alias="targetPort")


class ServiceSpec(K8s):
    type: str = "ClusterIP"
    ports: list[SvcPort] = Field(default_factory=list)
    external_name: str | None = Field(None, alias="externalName")


class Service(K8s):
    metadata: Meta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


class Address(K8s):
    ip: str


class EndpointPort(K8s):
    name: str | None = None
    port: int = Field(ge=1, le=65535)


class Subset(K8s):
    addresses: list[Address] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)


class Endpoints(K8s):
    metadata: Meta
    subsets: list[Subset] = Field(default_factory=list)


class SliceConditions(K8s):
    ready: bool | None = None


class SliceEndpoint(K8s):
    addresses: list[str] = Field(default_factory=list)
    conditions: SliceConditions = Field(default_factory=SliceConditions)


class EndpointSlice(K8s):
    metadata: Meta
    endpoints: list[SliceEndpoint] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)


class Secret(K8s):
    metadata: Meta
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict, alias="stringData")


MODELS: dict[str, type[K8s]] = {
    "Ingress": Ingress,
    "IngressClass": IngressClass,
    "Service": Service,
    "Endpoints": Endpoints,
    "EndpointSlice": EndpointSlice,
    "Secret": Secret,
}


@dataclass(frozen=True)
class Located:
    """An object and where it was read: ``file`` and the document's 1-based position."""

    obj: Any
    file: str
    doc: int

    @property
    def where(self) -> str:
        return f"{self.file} (document {self.doc})"

    @property
    def key(self) -> str:
        m: Meta = self.obj.metadata
        return f"{m.namespace}/{m.name}"


@dataclass
class Manifests:
    """Every object read, by kind; services and the like by ``namespace/name``."""

    ingresses: list[Located] = field(default_factory=list)
    classes: list[Located] = field(default_factory=list)
    services: dict[str, Located] = field(default_factory=dict)
    endpoints: dict[str, Located] = field(default_factory=dict)
    slices: list[Located] = field(default_factory=list)
    secrets: dict[str, Located] = field(default_factory=dict)
    gateway_api: list[Located] = field(default_factory=list)  # raw mappings
    files: list[Path] = field(default_factory=list)
    # With lenient loading: what could not be read, one line each (the object skipped).
    skipped: list[str] = field(default_factory=list)

    def add(self, item: Located, problems: list[str]) -> None:
        obj = item.obj
        if isinstance(obj, Ingress):
            self.ingresses.append(item)
        elif isinstance(obj, IngressClass):
            self.classes.append(item)
        elif isinstance(obj, EndpointSlice):
            self.slices.append(item)
        else:
            table = {Service: self.services, Endpoints: self.endpoints, Secret: self.secrets}[
                type(obj)
            ]
            if item.key in table:
                kind = type(obj).__name__
                problems.append(
                    f"{item.where}: {kind} {item.key} is defined twice "
                    f"(first in {table[item.key].where}); the first is used"
                )
                return
            table[item.key] = item


def manifest_files(paths: list[Path]) -> list[Path]:
    """The files ``paths`` name: files as given, folders' manifest files in order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        else:
            out.append(path)
    return out


def load_manifests(paths: list[Path], *, lenient: bool = False) -> Manifests:
    """Read every object of interest; raises :class:`ConfigError` listing all problems,
    or, with ``lenient``, skips what cannot be read and lists it in ``skipped``."""
    found = Manifests()
    problems: list[str] = []
    for path in manifest_files(paths):
        found.files.append(path)
        for doc, obj in _documents(path, problems):
            _read_object(obj, str(path), doc, found, problems)
    if problems and not lenient:
        raise ConfigError(str(paths[0]) if len(paths) == 1 else "manifests", problems)
    found.skipped = problems
    return found


def _documents(path: Path, problems: list[str]) -> list[tuple[int, Any]]:
    try:
        if path.stat().st_size > MAX_FILE:
            problems.append(f"{path}: larger than {MAX_FILE} bytes; the file is skipped")
            return []
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}; the file is skipped")
        return []
    except UnicodeDecodeError:
        problems.append(f"{path}: not UTF-8 text; the file is skipped")
        return []
    try:
        if path.suffix == ".json":
            docs = [json.loads(text)]
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = list(yaml.load_all(text, Loader=loader))
    except (yaml.YAMLError, ValueError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        problems.append(f"{path}: not valid {kind}: {exc}; the file is skipped")
        return []
    return [(i, d) for i, d in enumerate(docs, 1) if d is not None]


def _read_object(obj: Any, file: str, doc: int, found: Manifests, problems: list[str]) -> None:
    where = f"{file} (document {doc})"
    if not isinstance(obj, dict):
        problems.append(
            f"{where}: expected a Kubernetes object (a mapping), got {type(obj).__name__}; "
            "the document is skipped"
        )
        return
    kind = obj.get("kind")
    if kind == "List":
        for item in obj.get("items") or []:
            _read_object(item, file, doc, found, problems)
        return
    if kind in GATEWAY_API_KINDS:
        found.gateway_api.append(Located(obj, file, doc))
        return
    model = MODELS.get(str(kind))
    if model is None:
        return
    name = (
        (obj.get("metadata") or {}).get("name", "?")
        if isinstance(obj.get("metadata"), dict)
        else "?"
    )
    try:
        parsed = model.model_validate(obj)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}: {kind} {name}: {loc}: {err['msg']}; the object is skipped")
        return
    if isinstance(parsed, Secret) and parsed.type != "kubernetes.io/tls":
        return
    found.add(Located(parsed, file, doc), problems)


def tls_pem(secret: Secret, where: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a ``kubernetes.io/tls`` Secret."""
    out = []
    for key in ("tls.crt", "tls.key"):
        if key in secret.string_data:
            out.append(secret.string_data[key])
            continue
        if key not in secret.data:
            raise ConfigError(where, [f"Secret {secret.metadata.name}: data.{key} is missing"])
        try:
            out.append(base64.b64decode(secret.data[key], validate=True).decode("ascii"))
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(
                where, [f"Secret {secret.metadata.name}: data.{key} is not base64 of PEM text"]
            ) from None
    return out[0], out[1]

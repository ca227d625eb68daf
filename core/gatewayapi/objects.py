"""The Gateway API objects wasmgate reads (``gateway.networking.k8s.io``, v1).

:func:`read` validates the raw mappings :func:`core.ingress.objects.load_manifests`
kept (GatewayClass, Gateway, HTTPRoute, ReferenceGrant, and ``v1`` Namespace for
``allowedRoutes`` selectors). Objects of another API group with the same kind (Istio's
``Gateway``) are left alone. An object that does not validate is skipped with a
warning naming its file, document, kind, name and field; the others are served.

The spec-level models keep fields they do not know (``extra="allow"``):
:func:`unsupported` lists them, so a field wasmgate does not implement is a warning,
never silently dropped. ``status`` and metadata beyond name, namespace, labels and
creationTimestamp are ignored, as every client of the API server does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.ingress.objects import Located, Meta

GROUP = "gateway.networking.k8s.io"


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class Top(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# ------------------------------------------------------------------ GatewayClass


class GatewayClassSpec(Spec):
    controller_name: str = Field(alias="controllerName", min_length=1)
    description: str | None = None


class GatewayClass(Top):
    metadata: Meta
    spec: GatewayClassSpec


# ------------------------------------------------------------------ Gateway


class SecretRef(Spec):
    group: str = ""
    kind: str = "Secret"
    name: str = Field(min_length=1)
    namespace: str | None = None


class ListenerTLS(Spec):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: list[SecretRef] = Field(default_factory=list, alias="certificateRefs")


class LabelSelector(Spec):
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")


class RouteNamespaces(Spec):
    from_: Literal["All", "Same", "Selector"] = Field("Same", alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(Spec):
    group: str = GROUP
    kind: str


class AllowedRoutes(Spec):
    namespaces: RouteNamespaces = Field(default_factory=lambda: RouteNamespaces())
    kinds: list[RouteGroupKind] = Field(default_factory=list)


class Listener(Spec):
    name: str = Field(min_length=1)
    hostname: str | None = None
    port: int = Field(ge=1, le=65535)
    protocol: str
    tls: ListenerTLS | None = None
    allowed_routes: AllowedRoutes = Field(
        default_factory=lambda: AllowedRoutes(), alias="allowedRoutes"
    )


class GatewaySpec(Spec):
    gateway_class_name: str = Field(alias="gatewayClassName", min_length=1)
    listeners: list[Listener] = Field(min_length=1)


class Gateway(Top):
    metadata: Meta
    spec: GatewaySpec


# ------------------------------------------------------------------ HTTPRoute


class ParentRef(Spec):
    group: str = GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: str = Field(min_length=1)
    section_name: str | None = Field(None, alias="sectionName")
    port: int | None = None


class PathMatch(Spec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


class ValueMatch(Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(min_length=1)
    value: str


class RouteMatch(Spec):
    path: PathMatch = Field(default_factory=lambda: PathMatch())
    headers: list[ValueMatch] = Field(default_factory=list)
    query_params: list[ValueMatch] = Field(default_factory=list, alias="queryParams")
    method: str | None = None


class HeaderValue(Spec):
    name: str = Field(min_length=1)
    value: str


class HeaderModifier(Spec):
    set: list[HeaderValue] = Field(default_factory=list)
    add: list[HeaderValue] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class PathModifier(Spec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = Field(None, alias="replaceFullPath")
    replace_prefix_match: str | None = Field(None, alias="replacePrefixMatch")


class RequestRedirect(Spec):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = Field(None, ge=1, le=65535)
    status_code: Literal[301, 302] = Field(302, alias="statusCode")


class URLRewrite(Spec):
    hostname: str | None = None
    path: PathModifier | None = None


class BackendObjectRef(Spec):
    group: str = ""
    kind: str = "Service"
    name: str = Field(min_length=1)
    namespace: str | None = None
    port: int | None = Field(None, ge=1, le=65535)


class Fraction(Spec):
    numerator: int = Field(ge=0)
    denominator: int = Field(100, ge=1)


class RequestMirror(Spec):
    backend_ref: BackendObjectRef = Field(alias="backendRef")
    percent: int | None = Field(None, ge=0, le=100)
    fraction: Fraction | None = None


class LocalRef(Spec):
    group: str = ""
    kind: str = ""
    name: str = Field(min_length=1)


class RouteFilter(Spec):
    type: str
    request_header_modifier: HeaderModifier | None = Field(None, alias="requestHeaderModifier")
    response_header_modifier: HeaderModifier | None = Field(None, alias="responseHeaderModifier")
    request_redirect: RequestRedirect | None = Field(None, alias="requestRedirect")
    url_rewrite: URLRewrite | None = Field(None, alias="urlRewrite")
    request_mirror: RequestMirror | None = Field(None, alias="requestMirror")
    extension_ref: LocalRef | None = Field(None, alias="extensionRef")


class BackendRef(BackendObjectRef):
    weight: int = Field(1, ge=0, le=1_000_000)
    filters: list[RouteFilter] = Field(default_factory=list)


class Timeouts(Spec):
    request: str | None = None
    backend_request: str | None = Field(None, alias="backendRequest")


class RouteRule(Spec):
    name: str | None = None
    matches: list[RouteMatch] = Field(default_factory=list)
    filters: list[RouteFilter] = Field(default_factory=list)
    backend_refs: list[BackendRef] = Field(default_factory=list, alias="backendRefs")
    timeouts: Timeouts | None = None


class HTTPRouteSpec(Spec):
    parent_refs: list[ParentRef] = Field(default_factory=list, alias="parentRefs")
    hostnames: list[str] = Field(default_factory=list)
    rules: list[RouteRule] = Field(default_factory=lambda: [RouteRule()])


class HTTPRoute(Top):
    metadata: Meta
    spec: HTTPRouteSpec = Field(default_factory=lambda: HTTPRouteSpec())


# ------------------------------------------------------------------ ReferenceGrant


class GrantFrom(Spec):
    group: str = ""
    kind: str
    namespace: str


class GrantTo(Spec):
    group: str = ""
    kind: str
    name: str | None = None


class ReferenceGrantSpec(Spec):
    from_: list[GrantFrom] = Field(alias="from", min_length=1)
    to: list[GrantTo] = Field(min_length=1)


class ReferenceGrant(Top):
    metadata: Meta
    spec: ReferenceGrantSpec


class Namespace(Top):
    metadata: Meta


MODELS: dict[str, type[Top]] = {
    "GatewayClass": GatewayClass,
    "Gateway": Gateway,
    "HTTPRoute": HTTPRoute,
    "ReferenceGrant": ReferenceGrant,
}


@dataclass
class GatewayObjects:
    classes: list[Located] = field(default_factory=list)
    gateways: list[Located] = field(default_factory=list)
    routes: list[Located] = field(default_factory=list)
    grants: list[Located] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name → labels


def read(raw: list[Located], warnings: list[str]) -> GatewayObjects:
    """Validate the raw Gateway API mappings; a bad object is skipped with a warning."""
    out = GatewayObjects()
    for item in raw:
        obj: dict[str, Any] = item.obj
        kind = str(obj.get("kind"))
        api = str(obj.get("apiVersion", ""))
        if kind == "Namespace":
            if api == "v1":
                meta = obj.get("metadata") or {}
                if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                    labels = meta.get("labels") or {}
                    out.namespaces[meta["name"]] = {str(k): str(v) for k, v in dict(labels).items()}
            continue
        if not api.startswith(GROUP + "/"):
            continue  # another API group's kind of the same name
        meta = obj.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        try:
            parsed = MODELS[kind].model_validate(obj)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                warnings.append(
                    f"{item.where}: {kind} {name}: {loc}: {err['msg']}; this {kind} is skipped"
                )
            continue
        located = Located(parsed, item.file, item.doc)
        {
            "GatewayClass": out.classes,
            "Gateway": out.gateways,
            "HTTPRoute": out.routes,
            "ReferenceGrant": out.grants,
        }[kind].append(located)
    return out


def unsupported(model: BaseModel, path: str) -> list[str]:
    """Dotted paths of the fields under ``model`` that wasmgate does not know."""
    out = [f"{path}.{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        info = type(model).model_fields[name]
        key = f"{path}.{info.alias or name}"
        if isinstance(value, Spec):
            out += unsupported(value, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Spec):
                    out += unsupported(item, f"{key}[{i}]")
    return out

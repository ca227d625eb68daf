"""The ``ip-restriction`` plugin: let clients through, or not, by their address.

::

    [server]
    trusted_hops = 1          # behind one load balancer: believe its X-Forwarded-For

    [filters.office-only]
    plugin = "ip-restriction"
    config.allow = ["10.0.0.0/8", "2001:db8::/32"]
    config.deny = ["10.66.0.0/16"]
    config.status = 403
    config.message = "forbidden"

Rules, in order:

1. an address in ``deny`` is refused (deny wins over allow);
2. if ``allow`` is not empty, an address not in it is refused;
3. anything else goes on.

The address is ``ctx.client_ip``: the TCP peer, or with ``server.trusted_hops`` the
client our trusted proxies vouch for (see docs/configuration.md, Forwarding headers).
An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) is compared as the IPv4 address.
A client address that does not parse is refused (fail closed). Entries are CIDRs or
single addresses, IPv4 or IPv6, checked at load time: a network with host bits set
(``10.0.0.1/8``) is refused as a likely typo. A refusal is a local reply with
``status`` and ``message`` (plain text, a newline added).
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from plugin_sdk import Context, Filter, LocalReply, PluginConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_network(text: str) -> Network:
    """One allow/deny entry as a network; raises ValueError with a readable reason."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValueError(f"invalid address or CIDR {text!r}: {exc}") from None
        raise ValueError(f"{text!r} has host bits set; did you mean '{loose}'?") from None
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        raise ValueError(f"{text!r} is IPv4-mapped: write the IPv4 network instead")
    return net


class IpRestrictionConfig(PluginConfig):
    allow: list[str] = Field(
        default_factory=list,
        description="CIDRs or addresses (IPv4/IPv6) allowed; when not empty, all others "
        "are refused.",
    )
    deny: list[str] = Field(
        default_factory=list,
        description="CIDRs or addresses (IPv4/IPv6) refused; deny wins over allow.",
    )
    status: int = Field(403, ge=400, le=599, description="Status of the refusal reply.")
    message: str = Field("forbidden", description="Body of the refusal reply (plain text).")

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(parse_network(v)) for v in value]


class _Matcher:
    """Networks as (network int, mask int), per IP version, for a cheap membership test."""

    __slots__ = ("v4", "v6")

    def __init__(self, entries: list[str]) -> None:
        nets = [parse_network(e) for e in entries]
        self.v4 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4)
        self.v6 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 6)

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def __contains__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        value = int(addr)
        nets = self.v4 if addr.version == 4 else self.v6
        return any(value & mask == net for net, mask in nets)


class IpRestriction(Filter[IpRestrictionConfig]):
    """Refuse clients by address: deny list first, then the allow list if there is one."""

    Config = IpRestrictionConfig

    def __init__(self, config: IpRestrictionConfig) -> None:
        super().__init__(config)
        self._allow = _Matcher(config.allow)
        self._deny = _Matcher(config.deny)
        self._reply = LocalReply(
            config.status,
            [("Content-Type", "text/plain; charset=utf-8")],
            (config.message + "\n").encode("utf-8"),
        )
        if not (self._allow or self._deny):
            self.skip_phases.add("on_request")

    def allowed(self, client_ip: str) -> bool:
        """Whether ``client_ip`` may pass (deny wins; a non-empty allow list is required)."""
        try:
            addr = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr in self._deny:
            return False
        return not self._allow or addr in self._allow

    def on_request(self, ctx: Context) -> LocalReply | None:
        # The reply is shared: the gateway copies a local reply before filters see it.
        return None if self.allowed(ctx.client_ip) else self._reply

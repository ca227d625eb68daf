"""``ip-restriction``: allow or deny clients by address (CIDR lists)."""

from plugins.ip_restriction.filter import IpRestriction, IpRestrictionConfig

__all__ = ["IpRestriction", "IpRestrictionConfig"]

"""``basic-auth``: HTTP Basic authentication against bcrypt hashes (htpasswd or inline)."""

from plugins.basic_auth.filter import BasicAuth, BasicAuthConfig

__all__ = ["BasicAuth", "BasicAuthConfig"]

"""``jwt-auth``: verify JSON Web Tokens (JWKS file or URL, or inline keys)."""

from plugins.jwt_auth.filter import JwtAuth, JwtAuthConfig, JwtKeyConfig

__all__ = ["JwtAuth", "JwtAuthConfig", "JwtKeyConfig"]

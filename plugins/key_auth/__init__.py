"""``key-auth``: API keys from a header or query parameter, one consumer per key."""

from plugins.key_auth.filter import KeyAuth, KeyAuthConfig, KeyConsumer

__all__ = ["KeyAuth", "KeyAuthConfig", "KeyConsumer"]

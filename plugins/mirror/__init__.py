"""``mirror``: send a copy of requests to another service and ignore its answers."""

from plugins.mirror.filter import Mirror, MirrorConfig

__all__ = ["Mirror", "MirrorConfig"]

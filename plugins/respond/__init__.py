"""``respond``: answer every request of a route itself, with a fixed status and body."""

from plugins.respond.filter import Respond, RespondConfig

__all__ = ["Respond", "RespondConfig"]

"""``redirect``: answer with a redirect (to a URL, HTTP to HTTPS, or an app root)."""

from plugins.redirect.filter import Redirect, RedirectConfig

__all__ = ["Redirect", "RedirectConfig"]

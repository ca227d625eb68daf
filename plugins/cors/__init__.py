"""``cors``: answer CORS preflights and add Access-Control-* headers for allowed origins."""

from plugins.cors.filter import Cors, CorsConfig

__all__ = ["Cors", "CorsConfig"]

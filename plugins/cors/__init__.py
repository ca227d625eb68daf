"""``cors``: answer CORS preflights and add Access-Control-* headers for allowed origins."""

from plugins.cors.config import CorsConfig
from plugins.cors.filter import Cors

__all__ = ["Cors", "CorsConfig"]

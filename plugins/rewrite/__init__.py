"""``rewrite``: change the path (prefix or regex) and the Host before the request goes upstream."""

from plugins.rewrite.config import PrefixReplace, RewriteConfig
from plugins.rewrite.filter import Rewrite

__all__ = ["PrefixReplace", "Rewrite", "RewriteConfig"]

"""``rewrite``: change the path (prefix or regex) and the Host before the request goes upstream."""

from plugins.rewrite.filter import PrefixReplace, Rewrite, RewriteConfig

__all__ = ["PrefixReplace", "Rewrite", "RewriteConfig"]

"""The ``canary`` plugin: route a request to a canary upstream, as NGINX Ingress does.

The decision, first rule that decides wins (``canary-by-header`` > ``canary-by-cookie``
> ``canary-weight``, NGINX Ingress's precedence)::

    [filters.checkout-canary]
    plugin = "canary"
    config.upstream = "checkout-v2"
    config.header = "x-canary"
    config.cookie = "canary"
    config.weight = 10
    config.sticky_cookie = "checkout-side"

1. **Header** (when ``header`` is set and the request carries it; the first value counts):

   * with ``header_value``: a value equal to it (case-sensitive) → canary; any other
     value falls through to the cookie;
   * with ``header_pattern``: a value in which the regular expression is found
     (``re.search``, unanchored, like NGINX's ``ngx.re.match``; write ``^...$`` for a
     full match) → canary; no match falls through. A pattern that does not compile
     is refused when the configuration loads (NGINX would route such requests to the
     mainline at run time);
   * with neither: ``always`` → canary, ``never`` → mainline, anything else falls
     through.

2. **Cookie** (when ``cookie`` is set and the request carries it): ``always`` → canary,
   ``never`` → mainline, anything else falls through.

3. **Stickiness** (when ``sticky_cookie`` is set and ``0 < weight < weight_total``): a
   request carrying that cookie with the value ``canary`` or ``mainline`` goes to that
   side. Any other value is ignored (the weight decides, and the cookie is rewritten).

4. **Weight**: canary with probability ``weight / weight_total``. With ``sticky_cookie``
   set, a decision made here answers with ``Set-Cookie: <sticky_cookie>=canary`` (or
   ``mainline``; ``Path=/; HttpOnly; SameSite=Lax``, plus ``Max-Age`` when
   ``sticky_max_age`` is set) so the client stays on its side.

With ``weight = 0`` nothing reaches the canary by weight and the sticky cookie is not
honoured (a rollback sends sticky clients home); with ``weight = weight_total``
everything that falls through goes to the canary. In both cases no cookie is set,
since no random choice was made. Canary means ``ctx.upstream = upstream``; mainline
leaves the route's upstream in place.
"""

from __future__ import annotations

import random
import re

from plugin_sdk import Context, Filter
from plugins.canary.config import CANARY, MAINLINE, CanaryConfig


class Canary(Filter[CanaryConfig]):
    """Choose the canary upstream by header, cookie or weight (in that order)."""

    Config = CanaryConfig

    def __init__(self, config: CanaryConfig) -> None:
        super().__init__(config)
        self._canary = config.upstream
        self._header = config.header
        # The header's name as it is compared on the wire (lower-cased bytes).
        self._header_key = config.header.lower().encode("latin-1") if config.header else None
        self._value = config.header_value
        self._pattern = re.compile(config.header_pattern) if config.header_pattern else None
        self._cookie = config.cookie
        self._state_key = f"canary.sticky.{id(self)}"  # two canaries in a chain stay apart
        # The weighted share: 0.0 never, 1.0 always, anything between is a random draw.
        self._share = config.weight / config.weight_total
        partial = 0.0 < self._share < 1.0
        self._sticky = config.sticky_cookie if partial else None
        if self._sticky is not None:
            attrs = "; Path=/; HttpOnly; SameSite=Lax"
            if config.sticky_max_age is not None:
                attrs += f"; Max-Age={config.sticky_max_age}"
            self._set_cookie = {
                True: f"{self._sticky}={CANARY}{attrs}",
                False: f"{self._sticky}={MAINLINE}{attrs}",
            }
        else:
            self.skip_phases.add("on_response")
        if self._header is None and self._cookie is None and self._share == 0.0:
            self.skip_phases.add("on_request")  # nothing can ever pick the canary
        # Without the header, only the weighted draw is left to decide (on_request's
        # short way, without _decide).
        self._draw_only = self._cookie is None and self._sticky is None and partial

    def upstreams(self) -> tuple[str]:
        return (self._canary,)

    def on_request(self, ctx: Context) -> None:
        # The header's first value, looked up here rather than by Headers.get: this
        # runs for every request, and a call costs more than the scan.
        value = None
        key = self._header_key
        if key is not None:
            size = len(key)
            for name, raw in ctx.request.headers.raw:
                if len(name) == size and name.lower() == key:
                    value = raw.decode("latin-1")
                    break
        if value is None and self._draw_only:
            if random.random() < self._share:
                ctx.upstream = self._canary
        elif self._decide(ctx, value):
            ctx.upstream = self._canary

    def _decide(self, ctx: Context, value: str | None) -> bool:
        """True for the canary, False for the mainline (``value``: the header's first
        value, None without it)."""
        request = ctx.request
        if value is not None:
            if self._value is not None:
                if value == self._value:
                    return True
            elif self._pattern is not None:
                if self._pattern.search(value):
                    return True
            elif value == "always":
                return True
            elif value == "never":
                return False
        if self._cookie is not None:
            value = request.cookie(self._cookie)
            if value == "always":
                return True
            if value == "never":
                return False
        share = self._share
        if share <= 0.0:
            return False
        if share >= 1.0:
            return True
        if self._sticky is not None:
            side = request.cookie(self._sticky)
            if side == CANARY:
                return True
            if side == MAINLINE:
                return False
            canary = random.random() < share
            ctx.state[self._state_key] = canary
            return canary
        return random.random() < share

    def on_response(self, ctx: Context) -> None:
        side = ctx.state.get(self._state_key)
        if side is not None and ctx.response is not None:
            ctx.response.headers.add("Set-Cookie", self._set_cookie[side])

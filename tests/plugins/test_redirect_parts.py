"""The ``redirect`` plugin's URL-parts mode (the Gateway API's ``RequestRedirect``).

Each row is a config, a request (scheme, Host, target) and the (status, Location) the
filter answers, run in process through :mod:`plugin_sdk.testing`. The prefix rows are
the Gateway API specification's table for ``ReplacePrefixMatch``.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ConfigError
from plugin_sdk.testing import make_request, run_filter
from plugins.redirect import Redirect


def answer(
    config: dict[str, Any], target: str, *, host: str = "shop.test", scheme: str = "http"
) -> tuple[int, str | None]:
    result = run_filter(
        Redirect, make_request("GET", target, host=host, scheme=scheme), config=config
    )
    assert result.reply is not None, "the parts mode redirects every request"
    return result.reply.status, result.headers.get("location")


CASES = [
    pytest.param(
        {"scheme": "https"},
        "http",
        "shop.test",
        "/a?x=1",
        (302, "https://shop.test/a?x=1"),
        id="scheme-only",
    ),
    pytest.param(
        {"scheme": "https", "code": 301},
        "http",
        "shop.test:8080",
        "/a",
        (301, "https://shop.test/a"),
        id="scheme-drops-request-port",
    ),
    pytest.param(
        {"hostname": "new.test"},
        "http",
        "shop.test:8080",
        "/a",
        (302, "http://new.test:8080/a"),
        id="hostname-keeps-listener-port",
    ),
    pytest.param(
        {"hostname": "new.test"},
        "https",
        "shop.test",
        "/a",
        (302, "https://new.test/a"),
        id="hostname-keeps-scheme",
    ),
    pytest.param(
        {"port": 8443, "scheme": "https"},
        "http",
        "shop.test",
        "/",
        (302, "https://shop.test:8443/"),
        id="explicit-port",
    ),
    pytest.param(
        {"port": 80},
        "http",
        "shop.test:8080",
        "/",
        (302, "http://shop.test/"),
        id="well-known-port-left-out",
    ),
    pytest.param(
        {"path": "/fox"},
        "http",
        "shop.test",
        "/cayenne/pepper?q=1",
        (302, "http://shop.test/fox?q=1"),
        id="full-path-keeps-query",
    ),
    pytest.param(
        {"hostname": "x.test"},
        "http",
        "[::1]:8080",
        "/",
        (302, "http://x.test:8080/"),
        id="ipv6-host-port",
    ),
    pytest.param(
        {"scheme": "http"},
        "https",
        "[::1]",
        "//evil",
        (302, "http://[::1]/evil"),
        id="never-protocol-relative",
    ),
]


@pytest.mark.parametrize(("config", "scheme", "host", "target", "expected"), CASES)
def test_parts(
    config: dict[str, Any], scheme: str, host: str, target: str, expected: tuple[int, str]
) -> None:
    assert answer(config, target, host=host, scheme=scheme) == expected


# The Gateway API's ReplacePrefixMatch table: request path, prefix, replacement, result.
PREFIX_TABLE = [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo", "/foo", "/xyz", "/xyz"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "/", "/bar"),
    ("/foo/", "/foo", "/", "/"),
    ("/foo", "/foo", "/", "/"),
]


@pytest.mark.parametrize(("path", "prefix", "to", "expected"), PREFIX_TABLE)
def test_replace_prefix_spec_table(path: str, prefix: str, to: str, expected: str) -> None:
    config = {"replace_prefix": {"from": prefix, "to": to}}
    assert answer(config, path) == (302, f"http://shop.test{expected}")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"scheme": "ftp"}, "scheme must be 'http' or 'https'"),
        ({"path": "/a", "replace_prefix": {"from": "/a", "to": "/b"}}, "choose one of path"),
        ({"hostname": "a.test", "to": "/x"}, "cannot be combined"),
        ({"hostname": "a.test/evil"}, "invalid hostname"),
        ({"path": "//evil.test"}, "single '/'"),
    ],
)
def test_bad_parts_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as err:
        run_filter(Redirect, make_request("GET", "/", host="shop.test"), config=config)
    assert message in str(err.value)

"""Bad ``gateway.toml`` files give the messages ``core/config.py`` promises.

A problem line is ``<dotted.path>: <what is wrong>[; did you mean '<x>'?]`` and the
whole message starts with the file name. ``wasmgate check`` prints the route table
for a good file and the problems, on stderr with exit status 1, for a bad one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError, GatewayError

REPO = Path(__file__).resolve().parent.parent

UPSTREAM = '[[upstreams]]\nname = "backend"\nendpoints = ["127.0.0.1:8081"]\n'


def route(extra: str = "", *, name: str = "web", upstream: str = "backend") -> str:
    return f'[[routes]]\nname = "{name}"\nupstream = "{upstream}"\n{extra}\n'


# (file contents, the one problem line; a trailing "..." means "starts with")
BAD_CONFIGS = [
    pytest.param(
        '[server]\nlistn = ["127.0.0.1:8080"]\n',
        "server.listn: unknown field 'listn'; did you mean 'listen'?",
        id="unknown-field-did-you-mean",
    ),
    pytest.param(
        "[server.limits]\nidle_timout = 5\n",
        "server.limits.idle_timout: unknown field 'idle_timout'; did you mean 'idle_timeout'?",
        id="unknown-nested-field-did-you-mean",
    ),
    pytest.param(
        UPSTREAM + "retrys = 2\n",
        "upstreams[0].retrys: unknown field 'retrys'; did you mean 'retries'?",
        id="unknown-field-in-array-table",
    ),
    pytest.param(
        UPSTREAM + route('filters = [{ plugin = "cors", fial = "open" }]'),
        "routes[0].filters[0].fial: unknown field 'fial'; did you mean 'fail'?",
        id="unknown-field-in-inline-table",
    ),
    pytest.param(
        "[server]\nzzzzz = 1\n",
        "server.zzzzz: unknown field 'zzzzz'",
        id="unknown-field-no-suggestion",
    ),
    pytest.param(
        UPSTREAM + 'global_filters = ["cors"]\n',
        "upstreams[0].global_filters: unknown field 'global_filters'; 'global_filters' is a "
        "top-level key, but TOML put it in the [[upstreams]] table above it (a key belongs "
        "to the last table header before it): move it above the first table header",
        id="top-level-key-after-array-table",
    ),
    pytest.param(
        UPSTREAM + route() + 'global_filters = ["cors"]\n',
        "routes[0].global_filters: unknown field 'global_filters'; 'global_filters' is a "
        "top-level key, but TOML put it in the [[routes]] table above it ...",
        id="top-level-key-after-route",
    ),
    pytest.param(
        '[server]\nlisten = ["127.0.0.1:8080"]\nglobal_filters = ["cors"]\n',
        "server.global_filters: unknown field 'global_filters'; 'global_filters' is a "
        "top-level key, but TOML put it in the [server] table above it ...",
        id="top-level-key-after-table",
    ),
    pytest.param(
        "[server.limits]\nidle_timeout = 5\nupstreams = []\n",
        "server.limits.upstreams: unknown field 'upstreams'; 'upstreams' is a top-level key, "
        "but TOML put it in the [server.limits] table above it ...",
        id="top-level-key-after-nested-table",
    ),
    pytest.param(
        '[kubernetes]\nmanifests = ["k8s"]\nglobal_filters = ["cors"]\n',
        "kubernetes.global_filters: unknown field 'global_filters'; 'global_filters' is a "
        "top-level key, but TOML put it in the [kubernetes] table above it ...",
        id="top-level-key-after-kubernetes-table",
    ),
    pytest.param(
        '[filters.auth]\nplugin = "key-auth"\nglobal_filters = ["auth"]\n',
        "filters.auth.global_filters: unknown field 'global_filters'; 'global_filters' is a "
        "top-level key, but TOML put it in the [filters.auth] table above it ...",
        id="top-level-key-after-named-filter-table",
    ),
    pytest.param(
        UPSTREAM + route('filters = [{ plugin = "cors", routes = [] }]'),
        "routes[0].filters[0].routes: unknown field 'routes'",  # inline: no header to blame
        id="top-level-key-in-inline-table",
    ),
    pytest.param(
        UPSTREAM + route('paths = [{ path = "/x", match = "prefx" }]'),
        "routes[0].paths[0].match: Input should be 'exact', 'prefix' or 'regex'",
        id="wrong-enum-dotted-path",
    ),
    pytest.param(
        UPSTREAM.replace("\n", '\nbalance = "fastest"\n', 1),
        "upstreams[0].balance: Input should be ...",
        id="wrong-enum-balance",
    ),
    pytest.param(
        UPSTREAM + route(upstream="bakend"),
        "routes[0].upstream: unknown upstream 'bakend'; did you mean 'backend'?",
        id="unknown-upstream-did-you-mean",
    ),
    pytest.param(
        UPSTREAM + route() + route(name="api", upstream="zzz"),
        "routes[1].upstream: unknown upstream 'zzz'",
        id="unknown-upstream-no-suggestion",
    ),
    pytest.param(
        UPSTREAM + '[default]\nupstream = "backnd"\n',
        "default.upstream: unknown upstream 'backnd'; did you mean 'backend'?",
        id="unknown-default-upstream",
    ),
    pytest.param(
        UPSTREAM + UPSTREAM,
        "upstreams[1].name: duplicate upstream 'backend' (first at upstreams[0])",
        id="duplicate-upstream",
    ),
    pytest.param(
        UPSTREAM + route() + route(name="api") + route(),
        "routes[2].name: duplicate route 'web' (first at routes[0])",
        id="duplicate-route",
    ),
    pytest.param(
        UPSTREAM + route('paths = [{ path = "/v[0-9", match = "regex" }]'),
        "routes[0].paths[0]: invalid regular expression '/v[0-9': ...",
        id="invalid-path-regex",
    ),
    pytest.param(
        UPSTREAM + route('headers = [{ name = "X-V", value = "(", match = "regex" }]'),
        "routes[0].headers[0]: invalid regular expression '(': ...",
        id="invalid-header-regex",
    ),
    pytest.param(
        UPSTREAM + route('paths = ["api"]'),
        "routes[0].paths[0]: path 'api' must start with '/'",
        id="path-without-slash",
    ),
    pytest.param(
        UPSTREAM + route('hosts = ["api.example.com:8080"]'),
        "routes[0].hosts: invalid host 'api.example.com:8080': "
        "use 'example.com' or '*.example.com' (no port)",
        id="invalid-host-with-port",
    ),
    pytest.param(
        UPSTREAM + route('hosts = ["api.*.com"]'),
        "routes[0].hosts: invalid host 'api.*.com': ...",
        id="invalid-host-inner-wildcard",
    ),
    pytest.param(
        '[[upstreams]]\nname = "backend"\nendpoints = ["127.0.0.1"]\n',
        "upstreams[0].endpoints[0].address: invalid address '127.0.0.1': expected host:port",
        id="invalid-address-no-port",
    ),
    pytest.param(
        '[[upstreams]]\nname = "backend"\nendpoints = ["127.0.0.1:8081", "10.0.0.1:99999"]\n',
        "upstreams[0].endpoints[1].address: invalid address '10.0.0.1:99999': port must be 1-65535",
        id="invalid-address-port-range",
    ),
    pytest.param(
        '[server]\nlisten = ["localhost"]\n',
        "server.listen: invalid address 'localhost': expected host:port",
        id="invalid-listen-address",
    ),
    pytest.param(
        '[[upstreams]]\nname = "Back End"\nendpoints = ["127.0.0.1:8081"]\n',
        "upstreams[0].name: 'Back End' is not a valid name (a-z 0-9 . _ -)",
        id="invalid-upstream-name",
    ),
    pytest.param(
        UPSTREAM + 'balance = "consistent_hash"\n',
        "upstreams[0]: balance = 'consistent_hash' needs hash_on = {header = ...}",
        id="consistent-hash-without-hash-on",
    ),
    pytest.param(
        UPSTREAM + 'balance = "consistent_hash"\nhash_on = { header = "X-User", cookie = "u" }\n',
        "upstreams[0].hash_on: set exactly one of 'header' or 'cookie'",
        id="hash-on-both-keys",
    ),
    pytest.param(
        "[server\nlisten = []\n",
        "TOML syntax error: ...",
        id="toml-syntax-error",
    ),
    pytest.param(
        UPSTREAM + route("timeout = 0"),
        "routes[0].timeout: Input should be greater than 0",
        id="out-of-range-number",
    ),
    pytest.param(
        route(upstream="backend").replace('upstream = "backend"\n', ""),
        "routes[0].upstream: Field required",
        id="missing-required-field",
    ),
    pytest.param(
        '[market]\nmax_package_size = "64 MB"\n',
        "market.max_package_size: '64 MB' is not a size...",
        id="market-package-size-unit",
    ),
]


@pytest.mark.parametrize(("value", "size"), [("1048576", 1048576), ('"512KiB"', 524288)])
def test_market_max_package_size_is_a_gateway_setting(
    tmp_path: Path, value: str, size: int
) -> None:
    # `wasmgate run` and `check` read the same [market] table as `wasmgate plugin`.
    path = tmp_path / "gateway.toml"
    path.write_text(f"[market]\nmax_package_size = {value}\n")
    assert load_config(path).market.max_package_size == size


def problem_matches(line: str, expected: str) -> bool:
    if expected.endswith("..."):
        return line.startswith(expected[:-3])
    return line == expected


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_names_file_field_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert isinstance(err, GatewayError)
    assert err.source == str(path)
    assert len(err.problems) == 1, err.problems
    assert problem_matches(err.problems[0], expected), err.problems[0]
    message = str(err)
    assert message.startswith(f"{path}: 1 problem:\n")
    assert err.problems[0] in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(UPSTREAM + route(upstream="bakend") + route(name="web", upstream="nope"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        "routes[0].upstream: unknown upstream 'bakend'; did you mean 'backend'?",
        "routes[1].name: duplicate route 'web' (first at routes[0])",
        "routes[1].upstream: unknown upstream 'nope'",
    ]
    assert str(info.value).startswith(f"{path}: 3 problems:\n")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.problems == ["cannot read file: No such file or directory"]


def test_good_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        UPSTREAM
        + 'balance = "consistent_hash"\nhash_on = { header = "X-User" }\n'
        + route('hosts = ["API.Example.com", "*.example.com"]\nmethods = ["get"]')
        + '[default]\nupstream = "backend"\n'
    )
    cfg = load_config(path)
    assert cfg.routes[0].hosts == ["api.example.com", "*.example.com"]
    assert cfg.routes[0].methods == ["GET"]
    assert cfg.routes[0].paths[0].path == "/"
    assert cfg.upstreams[0].endpoints[0].address == "127.0.0.1:8081"
    assert cfg.default is not None and cfg.default.upstream == "backend"


# --------------------------------------------------------------------------- wasmgate check

GOOD = """
[server]
listen = ["127.0.0.1:8080"]

[[upstreams]]
name = "shop"
endpoints = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]

[[upstreams]]
name = "api"
endpoints = ["127.0.0.1:9003"]

[[routes]]
name = "api-route"
hosts = ["api.example.com"]
paths = ["/v1", { path = "/health", match = "exact" }]
methods = ["GET"]
upstream = "api"

[[routes]]
name = "shop-route"
paths = ["/"]
upstream = "shop"

[default]
upstream = "shop"
"""


def wasmgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_good_file_prints_route_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD)
    result = wasmgate("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"{path}: OK — 2 routes, 2 upstreams"
    assert out[1].split() == ["listen:", "127.0.0.1:8080", "workers:", "1"]
    assert out[2].split() == ["ROUTE", "HOSTS", "PATHS", "METHODS", "UPSTREAM", "FILTERS"]
    rows = [line.split() for line in out[3:6]]
    assert rows == [
        ["api-route", "api.example.com", "prefix:/v1,exact:/health", "GET", "api", "-"],
        ["shop-route", "*", "prefix:/", "*", "shop", "-"],
        ["default", "*", "(anything", "unmatched)", "*", "shop", "-"],
    ]
    assert "upstream shop: round_robin over 127.0.0.1:9001, 127.0.0.1:9002 (w3)" in out
    assert "upstream api: round_robin over 127.0.0.1:9003" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            GOOD.replace('upstream = "api"', 'upstream = "apii"'),
            "routes[0].upstream: unknown upstream 'apii'; did you mean 'api'?",
            id="unknown-upstream",
        ),
        pytest.param(
            GOOD.replace("listen =", "listn ="),
            "server.listn: unknown field 'listn'; did you mean 'listen'?",
            id="unknown-field",
        ),
        pytest.param("[server", "TOML syntax error", id="toml-syntax"),
    ],
)
def test_check_bad_file_exits_1_with_error_on_stderr(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    result = wasmgate("check", "-c", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "invalid configuration" in result.stderr
    assert f"{path}: 1 problem:" in result.stderr
    assert expected in result.stderr


def test_check_missing_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    result = wasmgate("check", "-c", str(path))
    assert result.returncode == 1
    assert f"{path}: 1 problem:" in result.stderr
    assert "cannot read file" in result.stderr


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param((), ["run", "check", "--log-level", "examples:"], id="wasmgate"),
        pytest.param(("run",), ["--config", "--workers", "--listen", "--loop"], id="run"),
        pytest.param(("check",), ["--config", "route table"], id="check"),
    ],
)
def test_help_exits_0_and_names_the_options(args: tuple[str, ...], mentions: list[str]) -> None:
    result = wasmgate(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: wasmgate")
    text = " ".join(result.stdout.split())  # argparse wraps to the terminal's width
    for word in mentions:
        assert word in text


def test_no_command_prints_help_and_exits_2() -> None:
    result = wasmgate()
    assert result.returncode == 2
    assert "usage: wasmgate" in result.stdout

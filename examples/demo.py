"""The self-contained wasmgate demo (what ``make run`` executes).

It starts two small demo services on 127.0.0.1, like the httpbin pair of the
Kubernetes NGINX Ingress canary walkthrough: ``v1`` answers ``version: v1`` and
``v2`` answers ``version: v2`` (both also serve ``/headers``, a JSON echo of what
reached them). Then it runs the real CLI, ``wasmgate run -c examples/gateway.toml``,
as a child process, waits until it accepts connections, prints curl commands to try
with the answer each should give, and runs until Ctrl-C or SIGTERM. Stopping sends
the gateway SIGTERM (it drains), waits for it, then stops the demo services.

Ports (flag, environment variable, default):

    --port       WASMGATE_DEMO_PORT        8080  the gateway
    --v1-port    WASMGATE_DEMO_V1_PORT     9001  demo service v1
    --v2-port    WASMGATE_DEMO_V2_PORT     9002  demo service v2
    --down-port  WASMGATE_DEMO_DOWN_PORT   9003  where nothing listens (502/503 demo)
    --registry-port WASMGATE_DEMO_REGISTRY_PORT 8700  the example plugin registry

It also serves the example plugin registry (``examples/registry/``, built by ``make
registry``) over HTTP, as ``wasmgate market serve`` does, so that the ``wasmgate plugin
search|info|install`` commands it prints work right away.

When an upstream or registry port differs from its default, the demo serves a copy
of ``examples/gateway.toml`` with the addresses replaced (and its market paths made
absolute); the gateway port is passed with ``wasmgate run --listen``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path("examples") / "gateway.toml"  # relative to ROOT, as shown to the user
HOST = "127.0.0.1"
# The upstream ports written in examples/gateway.toml.
CONFIG_PORTS = {"v1": 9001, "v2": 9002, "down": 9003, "registry": 8700}
REGISTRY = ROOT / "examples" / "registry"
DEMO_KEY = "demo-key-0123456789abcdef"  # the key of consumer "alice" in gateway.toml
READY_TIMEOUT = 15.0  # seconds for the gateway to start accepting connections
STOP_TIMEOUT = 40.0  # seconds for it to exit after SIGTERM (drain_timeout is 30)


# ------------------------------------------------------------------ demo upstreams


def version_app(version: str) -> web.Application:
    """A service that says which version it is, and echoes headers on /headers."""

    async def hello(request: web.Request) -> web.StreamResponse:
        return web.Response(text=f"version: {version}\n")

    async def headers(request: web.Request) -> web.StreamResponse:
        body = {
            "version": version,
            "method": request.method,
            "path": request.path_qs,
            "headers": {name: value for name, value in request.headers.items()},
        }
        return web.Response(text=json.dumps(body, indent=2) + "\n", content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/headers", headers)
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def start_upstream(version: str, port: int) -> web.AppRunner:
    print(f"starting demo upstream {version} on {HOST}:{port} ...", flush=True)
    runner = web.AppRunner(version_app(version), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise PortError(f"cannot listen on {HOST}:{port} for {version}: {exc.strerror}") from None
    return runner


# ------------------------------------------------------------------ ports and config


class PortError(Exception):
    """A port the demo needs is not usable; the message says which and why."""


def check_free(what: str, port: int, hint: str) -> None:
    """Raise PortError when something already listens on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves do: a port held only by TIME_WAIT leftovers is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise PortError(
                f"port {port} on {HOST} ({what}) is not available: {exc.strerror}.\n"
                f"Is another demo or server running? Pick another port with {hint}."
            ) from None


def something_listens(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def demo_config(ports: dict[str, int], workdir: Path) -> Path:
    """examples/gateway.toml, or a copy pointing at the overridden upstream ports."""
    if all(ports[name] == port for name, port in CONFIG_PORTS.items()):
        return CONFIG
    by_port = {str(port): str(ports[name]) for name, port in CONFIG_PORTS.items()}
    text = (ROOT / CONFIG).read_text(encoding="utf-8")
    text = re.sub(
        rf"{re.escape(HOST)}:(\d+)\b",
        lambda m: f"{HOST}:{by_port.get(m.group(1), m.group(1))}",
        text,
    )
    examples = ROOT / "examples"
    text = text.replace(
        'trust = "registry/trust"',
        f'trust = "{REGISTRY / "trust"}"\n'
        f'lockfile = "{examples / "gateway.lock"}"\n'
        f'plugin_dir = "{examples / "wasmgate_plugins"}"',
    )
    path = workdir / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def start_registry(port: int) -> web.AppRunner | None:
    """Serve examples/registry/ over HTTP, or say how to build it."""
    if not (REGISTRY / "index.json").is_file():
        print("note: no example registry; `make registry` builds it", flush=True)
        return None
    from market.server import make_app

    print(f"serving the example plugin registry on {HOST}:{port} ...", flush=True)
    runner = web.AppRunner(make_app(REGISTRY), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise PortError(
            f"cannot listen on {HOST}:{port} for the registry: {exc.strerror}"
        ) from None
    return runner


def wasmgate_command() -> list[str]:
    """The installed ``wasmgate`` script next to this Python, else ``python -m core.cli``."""
    script = Path(sys.executable).with_name("wasmgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "core.cli"]


# ------------------------------------------------------------------ the gateway


async def wait_ready(proc: asyncio.subprocess.Process, port: int) -> bool:
    """True once the gateway accepts connections; False if it exits or is too slow."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while loop.time() < deadline:
        if proc.returncode is not None:
            return False
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout=0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def stop_gateway(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        print("stopping the gateway (it drains in-flight requests) ...", flush=True)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=STOP_TIMEOUT)
        except TimeoutError:
            print(f"the gateway did not stop in {STOP_TIMEOUT:.0f}s; killing it", flush=True)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def until_stopped(what: str) -> None:
    """Say how to stop, then wait for Ctrl-C (or SIGTERM)."""
    print(f"Try them yourself; Ctrl-C stops {what}.")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def shut_down(proc: asyncio.subprocess.Process, runners: Sequence[web.AppRunner]) -> None:
    """Stop the gateway (it drains), then the demo's own servers."""
    await stop_gateway(proc)
    for runner in runners:
        with contextlib.suppress(Exception):
            await runner.cleanup()


# ------------------------------------------------------------------ what to try


def market_banner(registry_port: int) -> list[str]:
    reg = f"http://{HOST}:{registry_port}"
    wg = "../.venv/bin/wasmgate"
    # gateway.toml names the default port; another one is passed on the command line.
    flag = "" if registry_port == CONFIG_PORTS["registry"] else f" --registry {reg}"
    cmds = [
        (f"{wg} plugin search{flag}", "as-headers, c-filter, headers, ip-restriction"),
        (f"{wg} plugin info as-headers{flag}", "versions, signer, digests, config schema, README"),
        (f"{wg} plugin install as-headers{flag}", "+ as-headers 0.1.0, pinned in gateway.lock"),
        (f"{wg} plugin list | grep locked", "as-headers  wasm  locked  0.1.0, signer ..."),
        (f"{wg} plugin remove as-headers", "- as-headers 0.1.0"),
    ]
    width = max(len(c) for c, _ in cmds)
    return [
        f"  # The plugin market: the example registry is served on {reg}; from examples/",
        "  # (cd examples), where gateway.toml's [market] names it and trusts its key:",
        *(f"  {c.ljust(width)}  # {a}" for c, a in cmds),
        '  # Then use it in examples/gateway.toml ([filters.x] plugin = "as-headers") and',
        "  # restart `make run`: the gateway loads it from gateway.lock, offline.",
        "",
    ]


def banner(port: int, down_port: int, registry_port: int | None = None) -> str:
    g = f"http://{HOST}:{port}"
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            'Paths: the catch-all route "stable" sends everything to v1 ...',
            [(f"curl -s {g}/", "version: v1")],
        ),
        (
            '... unless a route with more conditions matches ("canary-by-header")',
            [(f"curl -s -H 'x-canary: always' {g}/", "version: v2")],
        ),
        (
            "A prefix rule (/v2) matches whole path segments",
            [(f"curl -s {g}/v2/hello", "version: v2"), (f"curl -s {g}/v2hello", "version: v1")],
        ),
        (
            "An exact rule (/beta)",
            [(f"curl -s {g}/beta", "version: v2"), (f"curl -s {g}/beta/more", "version: v1")],
        ),
        (
            "A regex rule (^/users/[0-9]+$)",
            [(f"curl -s {g}/users/42", "version: v2"), (f"curl -s {g}/users/bob", "version: v1")],
        ),
        (
            "A methods condition: POST and PUT to /orders go to v2",
            [
                (f"curl -s -X POST {g}/orders", "version: v2"),
                (f"curl -s {g}/orders", "version: v1"),
            ],
        ),
        (
            "Hosts: an exact host beats a wildcard (*.example.com covers one label)",
            [
                (f"curl -s -H 'Host: v2.example.com' {g}/", "version: v2"),
                (f"curl -s -H 'Host: www.example.com' {g}/app", "version: v1"),
            ],
        ),
        (
            "No fallthrough: this host picks the *.example.com group, which has only /app;"
            ' the "stable" route is not tried, so the gateway answers 404 (no route)',
            [
                (
                    f"curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: www.example.com' {g}/",
                    "404",
                )
            ],
        ),
        (
            'Weighted load balancing: upstream "shop" is v1 (weight 9) + v2 (weight 1)',
            [
                (
                    f"for i in $(seq 10); do curl -s {g}/shop; done | sort | uniq -c",
                    "9 version: v1, 1 version: v2",
                )
            ],
        ),
        (
            "What v1 received: the gateway sets X-Forwarded-For/-Proto/-Host, X-Real-IP",
            [(f"curl -s {g}/headers", f'"X-Forwarded-For": "{HOST}", ...')],
        ),
        (
            "trusted_hops = 0: a client's own X-Forwarded-For is replaced, not passed on",
            [
                (
                    f"curl -s -H 'X-Forwarded-For: 203.0.113.7' {g}/headers",
                    f'"X-Forwarded-For": "{HOST}"',
                )
            ],
        ),
        (
            f"Passive health: nothing listens on {HOST}:{down_port} (502); two failures in a"
            " row eject the endpoint for 10 s (503 meanwhile)",
            [
                (
                    f"for i in 1 2 3; do curl -s -o /dev/null -w '%{{http_code}} ' {g}/broken;"
                    " done; echo",
                    "502 502 503",
                )
            ],
        ),
        (
            "A dot segment in the path is refused with 400",
            [(f"curl -s --path-as-is {g}/a/../etc/passwd", "dot segment in path")],
        ),
        (
            'Filters. The global filter "served-by" (plugin headers) adds a response header'
            " to every route",
            [
                (
                    f"curl -s -o /dev/null -D - {g}/ | grep -i '^x-served-by'",
                    "X-Served-By: wasmgate-demo",
                )
            ],
        ),
        (
            'Canary by filter (route "checkout", plugin canary): header x-canary beats cookie'
            " canary, which beats the 20% weight",
            [
                (f"curl -s -H 'x-canary: always' {g}/checkout", "version: v2"),
                (
                    f"curl -s -H 'x-canary: never' --cookie 'canary=always' {g}/checkout",
                    "version: v1",
                ),
                (f"curl -s --cookie 'canary=always' {g}/checkout", "version: v2"),
            ],
        ),
        (
            "A weighted decision is remembered in the cookie checkout-side; sending it back"
            " keeps a client on its side",
            [
                (
                    f"curl -s -o /dev/null -D - {g}/checkout | grep -i '^set-cookie'",
                    "Set-Cookie: checkout-side=mainline (or canary); Path=/; HttpOnly; ...",
                ),
                (f"curl -s --cookie 'checkout-side=canary' {g}/checkout", "version: v2"),
                (
                    f"for i in $(seq 100); do curl -s {g}/checkout; done | sort | uniq -c",
                    "about 80 version: v1, 20 version: v2 (random)",
                ),
            ],
        ),
        (
            "CORS (global filter cors): a preflight from https://app.example.com is answered by"
            " the gateway; any other origin is refused",
            [
                (
                    f"curl -s -o /dev/null -w '%{{http_code}}\\n' -X OPTIONS"
                    f" -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: PUT'"
                    f" {g}/",
                    "204",
                ),
                (
                    f"curl -s -X OPTIONS -H 'Origin: https://evil.example'"
                    f" -H 'Access-Control-Request-Method: PUT' {g}/",
                    "CORS preflight refused: origin not allowed",
                ),
            ],
        ),
        (
            "... and adds Access-Control-Allow-Origin (and Vary: Origin) to responses to it",
            [
                (
                    f"curl -s -o /dev/null -D - -H 'Origin: https://app.example.com' {g}/"
                    " | grep -i '^access-control'",
                    "Access-Control-Allow-Origin: https://app.example.com",
                ),
            ],
        ),
        (
            'API keys (route "private": key-auth, then rewrite strips /private). Without a'
            " key: 401",
            [(f"curl -s {g}/private/headers", "401 Unauthorized: an API key is required")],
        ),
        (
            "With the demo key, v1 sees /headers, X-Consumer: alice (a client's own X-Consumer"
            " is removed) and no X-Api-Key",
            [
                (
                    f"curl -s -H 'X-Api-Key: {DEMO_KEY}' -H 'X-Consumer: mallory'"
                    f" {g}/private/headers",
                    '"path": "/headers", ... "X-Consumer": "alice"',
                ),
            ],
        ),
        (
            "The response phase runs for local replies too: cors decorates key-auth's 401",
            [
                (
                    f"curl -s -o /dev/null -D - -H 'Origin: https://app.example.com'"
                    f" {g}/private/ | grep -i '^HTTP\\|^access-control'",
                    "HTTP/1.1 401 Unauthorized, Access-Control-Allow-Origin: https://app.example.com",
                ),
            ],
        ),
        (
            'Rate limit (route "limited": 3 at once per client IP, then 1 every 10 s;'
            " run it again after 30 s)",
            [
                (
                    f"for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}} ' {g}/limited;"
                    " done; echo",
                    "200 200 200 429 429",
                ),
                (
                    f"curl -s -o /dev/null -D - {g}/limited | grep -i '^retry-after\\|^ratelimit'",
                    "Retry-After: 10 (or less), RateLimit-Limit: 3, RateLimit-Remaining: 0, ...",
                ),
            ],
        ),
    ]
    lines = [
        "",
        "=" * 78,
        f"wasmgate is serving examples/gateway.toml on {g}",
        "Try these in another terminal (the expected answer follows each '#'):",
        "",
    ]
    for title, cmds in sections:
        lines += textwrap.wrap(
            title, 80, initial_indent="  # ", subsequent_indent="  # ", break_on_hyphens=False
        )
        width = max(len(cmd) for cmd, _ in cmds)
        lines += [f"  {cmd.ljust(width)}  # {answer}" for cmd, answer in cmds]
        lines.append("")
    lines += [
        "  # The admin API (read-only here): routes with their chains, metrics",
        "  curl -s http://127.0.0.1:9901/routes    # JSON: each route's filter chain",
        "  curl -s http://127.0.0.1:9901/metrics   # wasmgate_requests_total{...} ...",
        "",
    ]
    if registry_port is not None:
        lines += market_banner(registry_port)
    lines += [
        "The gateway's access log (one JSON line per request) follows below.",
        "Ctrl-C (or SIGTERM) stops the gateway, then the demo upstreams.",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ main


async def run_demo(ports: dict[str, int]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    hints = {
        "gateway": "--port N or WASMGATE_DEMO_PORT=N",
        "v1": "--v1-port N or WASMGATE_DEMO_V1_PORT=N",
        "v2": "--v2-port N or WASMGATE_DEMO_V2_PORT=N",
        "registry": "--registry-port N or WASMGATE_DEMO_REGISTRY_PORT=N",
    }
    try:
        for name, hint in hints.items():
            check_free(name, ports[name], hint)
    except PortError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    if something_listens(ports["down"]):
        print(
            f"demo: note: something listens on {HOST}:{ports['down']}, so the /broken example"
            " will not show 502/503 (use --down-port N)",
            file=sys.stderr,
        )

    runners: list[web.AppRunner] = []
    proc: asyncio.subprocess.Process | None = None
    status = 0
    with tempfile.TemporaryDirectory(prefix="wasmgate-demo-") as tmp:
        try:
            for version in ("v1", "v2"):
                runners.append(await start_upstream(version, ports[version]))
            registry = await start_registry(ports["registry"])
            if registry is not None:
                runners.append(registry)
            config = demo_config(ports, Path(tmp))
            args = ["run", "-c", str(config)]
            if ports["gateway"] != 8080:
                args += ["--listen", f"{HOST}:{ports['gateway']}"]
            print(f"starting the gateway: wasmgate {' '.join(args)} ...", flush=True)
            proc = await asyncio.create_subprocess_exec(*wasmgate_command(), *args, cwd=ROOT)
            if not await wait_ready(proc, ports["gateway"]):
                if proc.returncode is None:
                    print(f"demo: the gateway did not start in {READY_TIMEOUT:.0f}s", flush=True)
                else:
                    print(f"demo: the gateway exited with status {proc.returncode}", flush=True)
                status = 1
            else:
                registry_port = ports["registry"] if registry is not None else None
                print(banner(ports["gateway"], ports["down"], registry_port), flush=True)
                stopping = asyncio.ensure_future(stop.wait())
                exited = asyncio.ensure_future(proc.wait())
                await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not stop.is_set() and proc.returncode != 0:
                    print(f"demo: the gateway exited with status {proc.returncode}", flush=True)
                    status = 1
        except PortError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            status = 1
        finally:
            if proc is not None:
                await stop_gateway(proc)
            if runners:
                print("stopping the demo upstreams and the registry ...", flush=True)
            for runner in runners:
                await runner.cleanup()
    print("demo stopped", flush=True)
    return status


def parse_args(argv: Sequence[str] | None) -> dict[str, int]:
    parser = argparse.ArgumentParser(
        description="Start two demo services (v1, v2) and wasmgate with examples/gateway.toml; "
        "print curl commands to try; stop everything on Ctrl-C or SIGTERM.",
    )

    def port_option(flag: str, env: str, default: int, what: str) -> None:
        text = os.environ.get(env, str(default))
        try:
            value = int(text)
        except ValueError:
            parser.error(f"{env}={text!r} is not a port number")
        parser.add_argument(
            flag, type=int, default=value, metavar="N", help=f"{what} (${env}, default {default})"
        )

    port_option("--port", "WASMGATE_DEMO_PORT", 8080, "gateway port")
    port_option("--v1-port", "WASMGATE_DEMO_V1_PORT", CONFIG_PORTS["v1"], "demo upstream v1 port")
    port_option("--v2-port", "WASMGATE_DEMO_V2_PORT", CONFIG_PORTS["v2"], "demo upstream v2 port")
    port_option(
        "--down-port", "WASMGATE_DEMO_DOWN_PORT", CONFIG_PORTS["down"], "a port nothing listens on"
    )
    port_option(
        "--registry-port",
        "WASMGATE_DEMO_REGISTRY_PORT",
        CONFIG_PORTS["registry"],
        "example plugin registry port",
    )
    args = parser.parse_args(argv)
    ports = {
        "gateway": args.port,
        "v1": args.v1_port,
        "v2": args.v2_port,
        "down": args.down_port,
        "registry": args.registry_port,
    }
    for name, port in ports.items():
        if not 1 <= port <= 65535:
            parser.error(f"{name} port {port} is not in 1-65535")
    if len(set(ports.values())) != len(ports):
        parser.error(f"the ports must differ: {ports}")
    return ports


def main(argv: Sequence[str] | None = None) -> int:
    ports = parse_args(argv)
    return asyncio.run(run_demo(ports))


if __name__ == "__main__":
    sys.exit(main())

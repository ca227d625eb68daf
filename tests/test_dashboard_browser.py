"""The admin dashboard (core/dashboard/) in a real headless Chromium, against a real
``wasmgate run`` with an ``[admin]`` token and a ``[market]`` registry folder built here.

Chromium is Debian's (``/usr/bin/chromium``; ``make test`` installs it with apt-get when
it can), driven by Playwright; the test skips when either is missing. Screenshots of
each page land in the test's ``screenshots`` folder.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from market.index import RegistryDir
from market.signing import add_trusted_key
from plugin_sdk.testing import GatewayProcess, free_port
from tests.market.kit import make_publisher, make_wasm_package

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "0123456789abcdef-admin"
WAIT = 10_000  # ms: a refresh comes every 2 s

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing (apt-get install chromium chromium-driver; make test does)",
)


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"up {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def gateway_toml(port: int, admin: int, up: int, registry: Path, *, extra: str = "") -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
access_log = "off"

[admin]
listen = "127.0.0.1:{admin}"
token = "{TOKEN}"

[market]
registry = "{registry}"
trust = "trust"

[[upstreams]]
name = "app"
endpoints = ["127.0.0.1:{up}"]

[[routes]]
name = "main"
paths = ["/"]
upstream = "app"
filters = [{{ plugin = "headers", config = {{ response = {{ set = {{ x-v = "1" }} }} }} }}]
{extra}
"""


ADDED = """
[[routes]]
name = "added"
hosts = ["api.example"]
paths = [{ path = "/v1", match = "exact" }]
upstream = "app"
"""
BROKEN = ADDED.replace('upstream = "app"', 'upstream = "nope"')
TAGGED = """
[filters.tag]
plugin = "tagger"

[[routes]]
name = "tagged"
hosts = ["tag.example"]
paths = ["/"]
upstream = "app"
filters = ["tag"]
"""


def reload(admin: int) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{admin}/reload",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_dashboard_shows_live_state_and_installs_from_the_market(
    tmp_path: Path, upstream: int
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    expect = sync_api.expect
    shots = tmp_path / "screenshots"
    shots.mkdir()

    publisher = make_publisher(tmp_path / "keys")
    registry = RegistryDir(tmp_path / "registry")
    registry.add_publisher(publisher.public_path)
    registry.publish(make_wasm_package(tmp_path / "pkg", publisher, "tagger", "1.0.0"))
    site = tmp_path / "site"
    site.mkdir()
    add_trusted_key(site / "trust", publisher.public_path)
    add_trusted_key(site / "trust" / "registries", registry.root / "registry.pub")

    port, admin = free_port(), free_port()
    toml = gateway_toml(port, admin, upstream, registry.root)
    gw = GatewayProcess(toml, workdir=str(site))
    gw.start(port, env={"WASMGATE_HOME": str(tmp_path / "home")})
    base = f"http://127.0.0.1:{admin}"
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            # Before its data arrives, a card says it is loading (the answer is held).
            held: list[Any] = []

            def hold(route: Any) -> None:
                held.append(route)

            page.route("**/routes", hold)
            page.goto(f"{base}/#routes")
            expect(page.locator("#routes .loading")).to_be_visible(timeout=WAIT)
            expect(page.locator("#routes-table")).to_have_count(0)
            for route in held:
                route.continue_()
            page.unroute("**/routes")
            expect(page.locator("#routes-table")).to_be_visible(timeout=WAIT)
            expect(page.locator("#routes .loading")).to_have_count(0)

            # Overview: real data from /config.
            page.goto(f"{base}/")
            expect(page.locator("#config-version")).to_have_text("1", timeout=WAIT)
            expect(page.locator("#wasmgate-version")).not_to_be_empty()
            expect(page.locator("#overview")).to_contain_text(f"http://127.0.0.1:{port}")
            page.screenshot(path=shots / "overview.png", full_page=True)

            # Routes: a route added by a reload appears; the filter box narrows by host.
            page.goto(f"{base}/#routes")
            expect(page.locator("tr.route[data-name=main]")).to_be_visible(timeout=WAIT)
            gw.config_path.write_text(toml + ADDED)
            assert reload(admin)[0] == 200
            expect(page.locator("tr.route[data-name=added]")).to_be_visible(timeout=WAIT)
            page.fill("#route-filter", "api.example")
            expect(page.locator("tr.route")).to_have_count(1)
            expect(page.locator("tr.route[data-name=added]")).to_contain_text("exact /v1")
            page.screenshot(path=shots / "routes.png", full_page=True)
            page.fill("#route-filter", "")

            # A failed reload: refused without the token (401), shown with it.
            gw.config_path.write_text(toml + BROKEN)
            page.goto(f"{base}/#overview")
            page.click("#reload")
            expect(page.locator("#notice")).to_contain_text("401", timeout=WAIT)
            page.fill("#token", TOKEN)
            page.click("#token-save")
            page.click("#reload")
            expect(page.locator("#notice")).to_contain_text("reload failed", timeout=WAIT)
            expect(page.locator("#last-reload")).to_contain_text("failed", timeout=WAIT)
            expect(page.locator("#last-reload")).to_contain_text("upstream")
            page.screenshot(path=shots / "overview-failed-reload.png", full_page=True)
            gw.config_path.write_text(toml + ADDED)
            assert reload(admin)[0] == 200

            # Upstreams: the endpoint and its health.
            page.goto(f"{base}/#upstreams")
            row = page.locator("#upstreams-table tbody tr").first
            expect(row).to_contain_text(f"127.0.0.1:{upstream}", timeout=WAIT)
            expect(row).to_contain_text("healthy")
            page.screenshot(path=shots / "upstreams.png", full_page=True)

            # Traffic: requests move the counter and the charts.
            page.goto(f"{base}/#traffic")
            for i in range(40):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/t{i}", timeout=5) as resp:
                    assert resp.status == 200
            page.wait_for_function(
                "+document.querySelector('#total-requests').textContent >= 40", timeout=WAIT
            )
            points = page.locator("#chart-rps").get_attribute("data-points")
            assert points is not None and int(points) >= 1
            expect(page.locator("#traffic-routes-table")).to_be_visible()
            expect(page.locator("#chart-plugins + .legend")).to_contain_text("main.headers")
            expect(page.locator("#chart-route-p99 + .legend")).to_contain_text("main")
            page.screenshot(path=shots / "traffic.png", full_page=True)

            # Market: search finds the published plugin; no install button without a
            # token, and a wrong token gets 401.
            page.evaluate("sessionStorage.clear()")
            page.goto(f"{base}/#plugins")
            page.reload()
            page.fill("#market-q", "tagger")
            page.click("#market-search")
            pkg = page.locator(".pkg[data-name=tagger]")
            expect(pkg).to_contain_text("adds x-abi to requests", timeout=WAIT)
            expect(pkg).to_contain_text("enter the admin token to install")
            expect(pkg.locator("button.install")).to_have_count(0)
            expect(pkg.locator("details").last).to_contain_text("The tagger test filter")
            expect(pkg).to_contain_text("note")  # the config schema's field
            page.fill("#token", "wrong-token-wrong-token")
            page.click("#token-save")
            page.click("#market-search")
            pkg.locator("button.install").click()
            expect(page.locator("#notice")).to_contain_text("401", timeout=WAIT)
            assert not (site / "gateway.lock").exists()

            # With the token: installed, reloaded, listed; then used by a route.
            page.fill("#token", TOKEN)
            page.click("#token-save")
            page.fill("#market-q", "tagger")
            page.click("#market-search")
            page.locator(".pkg[data-name=tagger] button.install").click()
            expect(page.locator("#notice")).to_contain_text("+ tagger 1.0.0", timeout=WAIT)
            expect(page.locator("#notice")).to_contain_text("reload ok")
            expect(page.locator("#installed-table tr[data-name=tagger]")).to_contain_text("wasm")
            page.screenshot(path=shots / "plugins.png", full_page=True)
            gw.config_path.write_text(toml + ADDED + TAGGED)
            assert reload(admin)[0] == 200
            page.goto(f"{base}/#routes")
            chain = page.locator("tr.route[data-name=tagged] li.filter[data-plugin=tagger]")
            expect(chain).to_contain_text("1.0.0", timeout=WAIT)
            expect(chain).to_contain_text("wasm")
            page.screenshot(path=shots / "routes-installed.png", full_page=True)
            browser.close()
    finally:
        assert gw.terminate() == 0, gw.log()


def test_without_a_registry_the_plugins_page_says_how_to_set_one(
    tmp_path: Path, upstream: int
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    expect = sync_api.expect
    port, admin = free_port(), free_port()
    toml = gateway_toml(port, admin, upstream, tmp_path).replace(
        f'[market]\nregistry = "{tmp_path}"\ntrust = "trust"\n', ""
    )
    assert "[market]" not in toml
    gw = GatewayProcess(toml, workdir=str(tmp_path)).start(port)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{admin}/#plugins")
            note = page.locator("#market-results #no-registry")
            expect(note).to_contain_text("set [market] registry in", timeout=WAIT)
            expect(note).to_contain_text(str(gw.config_path))
            expect(page.locator("#market-results")).not_to_contain_text("pass [market]")
            expect(page.locator("#market-results .error")).to_have_count(0)
            expect(page.locator("#installed")).to_contain_text("gateway.lock pins none")
            browser.close()
    finally:
        assert gw.terminate() == 0, gw.log()

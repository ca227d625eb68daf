"""plugin_sdk's compiled modules (chain, context, headers, http): the build is used
whichever of plugin_sdk or core a process imports first, and third-party code can still
extend Context and Headers, and build, read, change, subclass and copy Request and
Response as it could when they were plain Python classes with __slots__.

These run the real build of `make install` (build/compiled/); without one (no gcc, or a
build that is not the code) they skip, naming `make compile`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import plugin_sdk.http
from core import compiled
from plugin_sdk import Context, Headers, LocalReply, Request, Response, TLSInfo

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "tests" / "fixtures" / "site"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
SDK = ("plugin_sdk.chain", "plugin_sdk.context", "plugin_sdk.headers", "plugin_sdk.http")


def real_build() -> Path:
    try:
        files = compiled.verify(compiled.DEFAULT_DIR)
    except compiled.CompiledModuleError as exc:
        pytest.skip(f"no usable compiled build ({exc}); `make compile` builds it")
    missing = [name for name in SDK if name not in files]
    assert not missing, f"scripts/compile.py's MODULES lacks {missing}"
    return compiled.DEFAULT_DIR


PROBE = """
import json, sys
{first}
import core.proxy, plugin_sdk.chain, plugin_sdk.context, plugin_sdk.headers, plugin_sdk.http
from core import compiled
mods = ("core.proxy", "plugin_sdk.chain", "plugin_sdk.context", "plugin_sdk.headers",
        "plugin_sdk.http")
print(json.dumps({{**compiled.status().as_dict(),
                  "files": {{m: sys.modules[m].__file__ for m in mods}}}}))
"""

FIRSTS = {
    # what pytest does: its entry point loads plugin_sdk.pytest_plugin before any test
    "pytest plugin first": "import plugin_sdk.pytest_plugin",
    # a third-party plugin package that imports plugin_sdk, imported before the gateway
    "third-party plugin first": "import wasmgate_testplugins",
    "chain first": "import plugin_sdk.chain",
    "core first": "import core",
}


@pytest.mark.parametrize("first", list(FIRSTS), ids=list(FIRSTS))
def test_the_build_is_used_whatever_is_imported_first(first: str) -> None:
    build = real_build()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMGATE_COMPILED")}
    env |= {compiled.ENV: "auto", compiled.DIR_ENV: str(build)}
    env["PYTHONPATH"] = os.pathsep.join([str(SITE), str(REPO)])
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=FIRSTS[first])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "running pure Python" warning
    state = json.loads(done.stdout)
    assert state["compiled"], state["reason"]
    for name, file in state["files"].items():
        assert file.endswith(SUFFIX), f"{name} ran from {file}"
    assert set(SDK) <= set(state["modules"])


def test_third_party_code_can_subclass_context_and_headers() -> None:
    """Context and Headers are public classes: compiled, they stay open to Python
    subclasses (with their own attributes and methods), as they were in pure Python."""

    class Tagged(Headers):
        def tags(self) -> list[str]:
            return self.get_all("x-tag")

    class MyContext(Context):
        def __init__(self, request: Request) -> None:
            super().__init__(request, route="r")
            self.extra = 1

    headers = Tagged.of([("X-Tag", "a"), ("x-tag", "b")])
    headers.set("x-other", "c")
    assert headers.tags() == ["a", "b"] and headers.get("X-OTHER") == "c"
    request = Request("GET", "/", headers=headers)
    ctx = MyContext(request)
    assert (ctx.route, ctx.extra, ctx.request.headers.get("x-tag")) == ("r", 1, "a")
    with pytest.raises(AttributeError):
        Context(request).not_a_field = 1  # type: ignore[attr-defined]


def test_this_run_tests_the_sdk_classes_on_the_data_path_it_runs() -> None:
    """The contract tests below run in this process: on the build when the suite runs
    compiled (`make test`, `make test-compiled`), so a compiled suite really runs the
    compiled Request and Response."""
    if compiled.status().compiled:
        real_build()
        assert plugin_sdk.http.__file__ is not None
        assert plugin_sdk.http.__file__.endswith(SUFFIX), plugin_sdk.http.__file__


def test_request_and_response_are_built_and_read_as_before() -> None:
    request = Request()
    assert (request.method, request.target, request.path, request.query) == ("GET", b"/", "/", "")
    assert (request.host, request.scheme, request.version) == ("", "http", "1.1")
    assert (request.client_ip, request.client_port, request.body) == ("127.0.0.1", 0, None)
    assert (request.trace_id, request.trailers, list(request.headers.items())) == ("", None, [])
    assert request.headers is not Request().headers  # a fresh Headers each

    request = Request(
        "POST",
        b"/a%2Fb?x=1&y",
        host="example.com:8443",
        headers=Headers.of({"Cookie": "a=1; session=s3cr3t"}),
        scheme="https",
        version="2",
        client_ip="10.0.0.9",
        client_port=40000,
        body=b"{}",
        trace_id="ab" * 16,
        trailers=Headers.of({"grpc-status": "0"}),
    )
    assert (request.path, request.query, request.target) == ("/a%2Fb", "x=1&y", b"/a%2Fb?x=1&y")
    assert request.url == "https://example.com:8443/a%2Fb?x=1&y"
    assert request.http_version == "2"
    assert (request.cookie("session"), request.cookie("nope")) == ("s3cr3t", None)
    assert repr(request) == "<Request POST example.com:8443/a%2Fb>"
    assert request.wire_target() == b"/a%2Fb?x=1&y"  # the client's bytes, untouched
    request.set_target("/v2/b", "")
    request.host = "internal"
    assert request.wire_target() == b"/v2/b" and request.url == "https://internal/v2/b"
    with pytest.raises(TypeError):
        Request("GET", "/", "example.com")  # type: ignore[misc]  # the rest is keyword-only

    response = Response()
    assert (response.status, list(response.headers.items()), response.body) == (200, [], None)
    response = Response(404, Headers.of({"x": "1"}), b"gone", trailers=Headers())
    response.status, response.body = 410, b"gone for good"
    assert (response.status, response.body, response.headers.get("X")) == (
        410,
        b"gone for good",
        "1",
    )
    assert repr(response) == "<Response 410>" and response.trailers is not None


def test_request_and_response_take_no_other_attribute() -> None:
    """As with their __slots__ in pure Python: a typo is an AttributeError, not a new
    attribute the gateway would never read; and there is no instance __dict__."""
    request, response = Request(), Response()
    with pytest.raises(AttributeError):
        request.paht = "/x"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        response.stauts = 500  # type: ignore[attr-defined]
    for message in (request, response):
        with pytest.raises(TypeError):
            vars(message)


class TracedRequest(Request):
    """A third party's subclass at module level (pickle finds it by name)."""

    def __init__(self, target: str, tag: str) -> None:
        super().__init__("GET", target, host="t.example")
        self.tag = tag

    @property
    def url(self) -> str:
        return super().url + "#" + self.tag

    def cookie(self, name: str) -> str | None:
        return "always"


class SlottedResponse(Response):
    __slots__ = ("note",)

    def __init__(self, note: str) -> None:
        super().__init__(201)
        self.note = note


def test_third_party_code_can_subclass_request_and_response() -> None:
    request = TracedRequest("/p?q", "t1")
    assert isinstance(request, Request) and request.path == "/p"
    assert request.url == "http://t.example/p?q#t1" and request.cookie("x") == "always"
    request.anything = 1  # a subclass without __slots__ has an instance __dict__
    assert vars(request) == {"tag": "t1", "anything": 1}
    ctx = Context(request, route="r")
    assert ctx.request is request and ctx.request.url.endswith("#t1")

    response = SlottedResponse("n")
    assert isinstance(response, Response) and (response.status, response.note) == (201, "n")
    with pytest.raises(AttributeError):
        response.other = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_request_and_response_copy_and_pickle(how: str) -> None:
    def clone(value: object) -> object:
        if how == "pickle":
            return pickle.loads(pickle.dumps(value))
        return copy.copy(value) if how == "copy" else copy.deepcopy(value)

    request = Request("PUT", "/a?b", host="h", headers=Headers.of({"k": "v"}), body=b"x")
    twin = clone(request)
    assert isinstance(twin, Request) and twin is not request
    assert (twin.method, twin.path, twin.query, twin.host, twin.body) == (
        "PUT",
        "/a",
        "b",
        "h",
        b"x",
    )
    assert twin.headers.get("k") == "v" and twin.wire_target() == b"/a?b"
    response = clone(Response(302, Headers.of({"location": "/"}), b""))
    assert isinstance(response, Response)
    assert (response.status, response.headers.get("location"), response.body) == (302, "/", b"")
    traced = clone(TracedRequest("/t", "x"))
    # The SDK's fields, not what a subclass keeps in its own __dict__ (lost compiled).
    assert isinstance(traced, TracedRequest) and traced.path == "/t"


def test_tls_info_and_local_reply_stay_dataclasses() -> None:
    tls = TLSInfo(version="TLSv1.3", server_name="a.example")
    assert dataclasses.is_dataclass(tls) and tls == TLSInfo("TLSv1.3", "", "a.example")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tls.version = "TLSv1.2"  # type: ignore[misc]
    reply = LocalReply(401, {"www-authenticate": "Basic"}, "no")
    assert dataclasses.asdict(reply)["status"] == 401 and reply.body_bytes() == b"no"

"""plugin_sdk's compiled modules (chain, context, headers): the build is used whichever
of plugin_sdk or core a process imports first, and third-party code can still extend
Context and Headers.

These run the real build of `make install` (build/compiled/); without one (no gcc, or a
build that is not the code) they skip, naming `make compile`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from core import compiled
from plugin_sdk import Context, Headers, Request

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "tests" / "fixtures" / "site"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
SDK = ("plugin_sdk.chain", "plugin_sdk.context", "plugin_sdk.headers")


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
import core.proxy, plugin_sdk.chain, plugin_sdk.context, plugin_sdk.headers
from core import compiled
mods = ("core.proxy", "plugin_sdk.chain", "plugin_sdk.context", "plugin_sdk.headers")
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

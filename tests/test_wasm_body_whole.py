"""A response body that is all here at once (one chunk, the end) goes through the
Proxy-Wasm body callbacks without a body pipe (core.bodies.through_whole), with
Envoy's rules all the same: a body callback per filter that exports one, in reverse
chain order, end_of_stream on it, set_buffer_bytes' new size in Content-Length, a
local reply from the callback, and a stop on the end that holds the body until
proxy_continue_stream (only then is there a pipe) or until pause_timeout.

The modules are ``tests/wasm_modules/body_stream.wat`` (its modes: see its header)
and ``body_hold_response.wat``; the upstream is test_wasm_bodies.py's, whose
``/fixed/N`` and ``/x`` answers come in one piece.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core import bodies
from core.bodies import BodyPipe
from tests.conftest import StartGateway
from tests.harness import gateway_toml, read_response
from tests.test_wasm_bodies import StreamingUpstream, streaming  # noqa: F401  (fixture)
from tests.test_wasm_host import wasm_file

# host -> the filters of its route, in chain order (response callbacks run in reverse)
ROUTES = {
    "n.test": ["n"],
    "u.test": ["u"],
    "a.test": ["a"],
    "s.test": ["s"],
    "d.test": ["d"],
    "b.test": ["b"],
    "as.test": ["a", "s"],  # s's callback first: "ok", then a's: "<<ok>>"
    "sa.test": ["s", "a"],  # a's first, then s replaces it all: "ok"
    "hold.test": ["hold"],
    "stuck.test": ["stuck"],
}

# (id, host, path, status, body, response headers that must be there)
CASES = [
    ("continue", "n.test", "/fixed/3", 200, b"xxx", {"content-length": "3"}),
    ("in-place", "u.test", "/x", 200, b"ABCXDEF", {"content-length": "7"}),
    ("grows", "a.test", "/fixed/3", 200, b"<<xxx>>", {"content-length": "7"}),
    ("shrinks", "s.test", "/fixed/5000", 200, b"ok", {"content-length": "2"}),
    ("local-reply", "d.test", "/x", 403, b"blocked\n", {}),
    ("no-x", "d.test", "/fixed/4", 200, b"xxxx", {}),
    (
        "buffered-then-end",
        "b.test",
        "/x",
        200,
        b"ABCXDEF",
        {"x-body-total": "7", "x-body-calls": "1", "x-resp-headers-eos": "0"},
    ),
    ("reverse-order-as", "as.test", "/fixed/9", 200, b"<<ok>>", {"content-length": "6"}),
    ("reverse-order-sa", "sa.test", "/fixed/9", 200, b"ok", {"content-length": "2"}),
    ("held-then-continued", "hold.test", "/x", 200, b"xxx", {"content-length": "3"}),
    ("held-past-pause-timeout", "stuck.test", "/x", 500, None, {}),
]


def _config(tmp_path: Path, up: StreamingUpstream) -> str:
    stream = wasm_file(tmp_path, "body_stream.wat")
    hold = wasm_file(tmp_path, "body_hold_response.wat")
    filters = "".join(
        f'[filters.{mode}]\nwasm = "{stream}"\nvm_config = "{mode}"\n\n' for mode in "nuasdb"
    )
    filters += f'[filters.hold]\nwasm = "{hold}"\nvm_config = "-"\n\n'
    filters += (
        f'[filters.stuck]\nwasm = "{hold}"\nvm_config = "h"\nlimits = {{ pause_timeout = 0.3 }}\n\n'
    )
    routes = "".join(
        f'[[routes]]\nname = "{host.split(".")[0]}"\nhosts = ["{host}"]\nupstream = "v1"\n'
        f"filters = {names!r}\n\n".replace("'", '"')
        for host, names in ROUTES.items()
    )
    return gateway_toml({"v1": [up.address]}, filters + routes)


async def _get(
    port: int, host: str, path: str, times: int = 1
) -> list[tuple[int, bytes, dict[str, str]]]:
    """``times`` GETs on one keep-alive connection; (status, body, headers) of each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    try:
        for _ in range(times):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            resp = await asyncio.wait_for(read_response(reader), 5)
            headers = {k.lower(): v for k, v in resp.headers}
            out.append((resp.status, resp.body, headers))
    finally:
        writer.close()
    return out


async def test_one_chunk_responses_keep_envoys_body_rules(
    tmp_path: Path,
    streaming: StreamingUpstream,  # noqa: F811
    start_gateway: StartGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = await start_gateway(_config(tmp_path, streaming))
    pipes: list[BodyPipe] = []
    opened = BodyPipe.__init__

    def counted(self: BodyPipe, *args: object, **kwargs: object) -> None:
        pipes.append(self)
        opened(self, *args, **kwargs)  # type: ignore[arg-type]

    # The pipes opened are counted where core/bodies.py runs as Python (make test's pure
    # pass runs this file too); a compiled class takes no patched __init__, so there only
    # the behaviour is checked.
    counting = bodies.__file__ is not None and bodies.__file__.endswith(".py")
    if counting:
        monkeypatch.setattr(BodyPipe, "__init__", counted)
    failures = []
    for case_id, host, path, status, body, headers in CASES:
        before = len(pipes)
        got_status, got_body, got_headers = (await _get(gw.port, host, path, 2))[-1]
        held = case_id.startswith("held")
        seen = (got_status, got_body if body is not None else None)
        wanted = {k: got_headers.get(k) for k in headers}
        # a pipe only for a body held at its end (two requests: one pipe each)
        opened_now = len(pipes) - before if counting else 2 * held
        if seen != (status, body) or wanted != headers or opened_now != 2 * held:
            failures.append((case_id, seen, wanted, len(pipes) - before))
    assert failures == []


async def test_a_response_in_pieces_still_goes_through_the_pipe(
    tmp_path: Path,
    streaming: StreamingUpstream,  # noqa: F811
    start_gateway: StartGateway,
) -> None:
    """The one-chunk path is for bodies all here with the head: a body that streams
    (chunked, in pieces) keeps a callback per piece, end_of_stream on the last."""
    gw = await start_gateway(_config(tmp_path, streaming))
    ((status, body, headers),) = await _get(gw.port, "b.test", "/parts")
    assert (status, body) == (200, b"ONE TWO THREE")
    assert int(headers["x-body-calls"]) >= 2  # (an empty last chunk may add one)

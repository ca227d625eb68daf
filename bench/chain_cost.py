"""Instructions the filter chain costs one request, piece by piece, in process.

    .venv/bin/python bench/chain_cost.py [--pieces none,context,noop,canary,...]
                                         [--iterations 4000] [--warmup 2000] [--tree DIR]

bench/instr.py counts a whole gateway; this counts the chain alone, so that its
parts can be told apart. Each piece runs in a Python process of its own under
``valgrind --tool=callgrind`` (Debian's ``valgrind``) with instrumentation off; the
process builds the filters as bench/run.py's ``wasmgate-chain`` configures them
(bench/run.py CHAIN_TOML), repeats one iteration ``--warmup`` times, then counts
``--iterations`` more (``callgrind_control -i on``, ``-z``, the loop, ``-d``). One
iteration builds the gateway's own request (``GET /api/hello``, ``User-Agent``) and
the upstream's response head (nginx's four headers) and, depending on the piece:

* ``none``: nothing more (the floor the others are measured against);
* ``context``: a :class:`~plugin_sdk.context.Context` for the request;
* a chain, filters joined by ``+`` (``canary``, ``cors``, ``rewrite``, ``headers``,
  ``noop``: a filter whose two phases return at once): a Context, the request phase
  (``run_request_sync``), the response phase (``run_response_sync``) on the head, and
  ``wire_target()`` (which a rewritten path makes work).

The figure per piece is instructions per iteration over ``none``. What it leaves out
is what the proxy does around the chain (bench/instr.py's ``wasmgate-chain`` minus
``wasmgate`` counts that too). ``--tree DIR`` measures another source tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "none,context,noop,noop+noop+noop+noop,canary,cors,rewrite,headers,"
DEFAULT += "canary+cors+rewrite+headers"


def child(piece: str, iterations: int, warmup: int) -> None:
    """Runs under callgrind: build the piece, warm it, count ``iterations`` of it."""
    import random

    from core.http1 import Request
    from core.upstream import ResponseHead
    from plugin_sdk import Context, Filter, PluginConfig
    from plugin_sdk.chain import Chain, FilterInstance
    from plugin_sdk.headers import Headers
    from plugins.canary.filter import Canary
    from plugins.cors.filter import Cors
    from plugins.headers.filter import HeadersFilter
    from plugins.rewrite.filter import Rewrite

    class Noop(Filter[PluginConfig]):
        def on_request(self, ctx: Context) -> None:
            return None

        def on_response(self, ctx: Context) -> None:
            return None

    configs: dict[str, tuple[type[Filter[Any]], dict[str, Any]]] = {  # as CHAIN_TOML
        "canary": (Canary, {"upstream": "up-canary", "header": "x-canary", "weight": 10}),
        "cors": (Cors, {"allow_origins": ["https://app.example.com"]}),
        "rewrite": (Rewrite, {"strip_prefix": "/api"}),
        "headers": (
            HeadersFilter,
            {
                "request": {"set": {"X-Gateway": "wasmgate"}},
                "response": {"set": {"X-Frame-Options": "DENY"}},
            },
        ),
        "noop": (Noop, {}),
    }

    def instance(name: str) -> FilterInstance:
        cls, config = configs[name]
        flt = cls(cls.Config.model_validate(config))
        flt.name = flt.plugin = name
        return FilterInstance(name, name, flt, False)

    def request() -> Request:
        req = Request()
        req.target = b"/api/hello"
        req.path = req._orig_path = "/api/hello"
        req.host = "127.0.0.1"
        req.headers = Headers([(b"User-Agent", b"wasm-cost")])
        return req

    def head() -> ResponseHead:
        resp = ResponseHead()
        resp.status = 200
        resp.headers.raw += [
            (b"Server", b"nginx/1.22.1"),
            (b"Date", b"Sun, 06 Dec 2026 09:00:00 GMT"),
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"6"),
        ]
        return resp

    def none() -> None:
        request().wire_target()
        head()

    def context() -> None:
        req = request()
        head()
        Context(req, "default", "up", req.client_ip, req.scheme, None)
        req.wire_target()

    simple = piece in ("none", "context")
    chain = None if simple else Chain(instance(n) for n in piece.split("+"))

    def chained() -> None:
        assert chain is not None
        req = request()
        resp = head()
        ctx = Context(req, "default", "up", req.client_ip, req.scheme, None)
        _, ran = chain.run_request_sync(ctx)
        ctx.response = resp
        chain.run_response_sync(ctx, ran)
        req.wire_target()

    one: Callable[[], None] = {"none": none, "context": context}.get(piece, chained)
    random.seed(0)
    for _ in range(warmup):
        one()
    control = shutil.which("callgrind_control") or "callgrind_control"
    pid = str(os.getpid())
    subprocess.run([control, "-i", "on", pid], capture_output=True, check=True)
    subprocess.run([control, "-z", pid], capture_output=True, check=True)
    for _ in range(iterations):
        one()
    subprocess.run([control, "-d", pid], capture_output=True, check=True)


def measure(piece: str, iterations: int, warmup: int, tree: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="wasmgate-chain-cost-") as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            sys.executable, str(Path(__file__).resolve()), "--child", piece,
            "--iterations", str(iterations), "--warmup", str(warmup),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        dump = Path(tmp) / "callgrind.out.1"  # the counted loop (callgrind_control -d)
        if dump.exists():
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1]) / iterations
        raise SystemExit(f"{piece}: callgrind wrote no dump\n{proc.stdout}{proc.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", default=DEFAULT, help="comma-separated (see the docstring)")
    parser.add_argument("--iterations", type=int, default=4000, help="counted iterations")
    parser.add_argument("--warmup", type=int, default=2000, help="iterations before counting")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to measure")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.iterations, args.warmup)
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind not found: install the Debian package valgrind", file=sys.stderr)
        return 1
    pieces = [p for p in args.pieces.split(",") if p]
    floor = measure("none", args.iterations, args.warmup, args.tree)
    print(f"{'piece':<32}{'Ir/iteration':>14}{'over none':>12}")
    for piece in pieces:
        figure = (
            floor if piece == "none" else measure(piece, args.iterations, args.warmup, args.tree)
        )
        print(f"{piece:<32}{figure:>14,.0f}{figure - floor:>12,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

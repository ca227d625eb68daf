"""A canary by weight and by header from Gateway API manifests (``make demo-gateway-api``).

It starts two local services standing in for the app's two versions, app-v1 on
127.0.0.1:9201 (answers ``version: v1``) and app-v2 on 127.0.0.1:9202 (``version: v2``),
which the manifests' Endpoints point at. Then it runs ``wasmgate run -c
examples/gateway-api/gateway.toml``: the gateway reads ``manifests/`` (a GatewayClass,
a Gateway, the Services and one HTTPRoute: ``x-canary: always`` → v2, the rest 90/10
between v1 and v2), sends the requests, prints each with its answer, counts 200
requests of the split, and keeps serving until Ctrl-C.

    --check   exit after the requests (0 if every answer was the expected one)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo import shut_down, start_upstream, until_stopped, wait_ready, wasmgate_command  # noqa: E402

PORT = 8091  # as in gateway.toml
SERVICES = {"v1": 9201, "v2": 9202}  # as in manifests/services.yaml


def get(headers: dict[str, str]) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.reason}"


def curl(headers: dict[str, str]) -> str:
    flags = " ".join(f'-H "{k}: {v}"' for k, v in headers.items())
    return f"curl {flags} http://127.0.0.1:{PORT}/"


def requests() -> bool:
    ok = True
    cases = [
        ({"host": "app.example.com", "x-canary": "always"}, "version: v2"),
        ({"host": "other.example.com"}, "404 Not Found"),
    ]
    print()
    for headers, expected in cases:
        got = get(headers)
        mark = "ok" if got == expected else f"UNEXPECTED (wanted {expected!r})"
        ok &= got == expected
        print(f"  {curl(headers):75}  -> {got}   [{mark}]")
    counts = Counter(get({"host": "app.example.com"}) for _ in range(200))
    share = counts["version: v2"] / 200
    print(
        f"  200 x {curl({'host': 'app.example.com'})}: v1 {counts['version: v1']}, "
        f"v2 {counts['version: v2']} ({share:.0%} to the canary; the HTTPRoute says 10%)"
    )
    ok &= set(counts) == {"version: v1", "version: v2"} and share <= 0.25
    print()
    return ok


async def main_async(check: bool) -> int:
    config = HERE / "gateway.toml"
    runners = [await start_upstream(name, port) for name, port in SERVICES.items()]
    proc = await asyncio.create_subprocess_exec(*wasmgate_command(), "run", "-c", str(config))
    status = 0
    try:
        if not await wait_ready(proc, PORT):
            print("demo: the gateway did not start", file=sys.stderr)
            return 1
        print(f"wasmgate serves {config.relative_to(HERE.parent.parent)} on 127.0.0.1:{PORT}")
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, requests)
        status = 0 if ok else 1
        if check:
            return status
        await until_stopped("the gateway and the services")
    finally:
        await shut_down(proc, runners)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit after the requests")
    args = parser.parse_args()
    return asyncio.run(main_async(args.check))


if __name__ == "__main__":
    sys.exit(main())

"""The canary walkthrough from Kubernetes manifests (what ``make demo-canary`` runs).

It starts two local services standing in for the walkthrough's deployments,
go-httpbin-v1 on 127.0.0.1:9101 (answers ``version: v1``) and go-httpbin-v2 on
127.0.0.1:9102 (``version: v2``), which the manifests' Endpoints point at. Then it
runs ``wasmgate run -c examples/ingress-canary/gateway.toml``: the gateway reads
``common/`` (the Services and the stable Ingress: host test.com, path /version, Exact)
and ``by-header/`` (the canary Ingress: ``canary-by-header: stage``,
``canary-by-header-value: gray``), both unchanged NGINX Ingress manifests of class
``nginx``. It sends the walkthrough's requests, prints each command with the answer it
got, and keeps serving until Ctrl-C.

    --variant weight   the weight-based canary (by-weight/: 30% to v2, "stage: gray"
                       still forces v2); the demo counts 200 requests
    --check            exit after the requests (0 if every answer was the expected one)
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

PORT = 8090  # as in gateway.toml
SERVICES = {"v1": 9101, "v2": 9102}  # as in common/services.yaml


def get(path: str, headers: dict[str, str]) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.reason}"


def curl(headers: dict[str, str]) -> str:
    flags = " ".join(f'-H "{k}: {v}"' for k, v in headers.items())
    return f"curl {flags} http://127.0.0.1:{PORT}/version"


def walkthrough(variant: str) -> bool:
    ok = True
    cases: list[tuple[dict[str, str], str]] = [
        ({"host": "test.com"}, "version: v1"),
        ({"host": "test.com", "stage": "gray"}, "version: v2"),
        ({"host": "test.com", "stage": "blue"}, "version: v1"),
        ({"host": "other.com"}, "404 Not Found"),
    ]
    if variant == "weight":
        cases = [({"host": "test.com", "stage": "gray"}, "version: v2")]
    print()
    for headers, expected in cases:
        got = get("/version", headers)
        mark = "ok" if got == expected else f"UNEXPECTED (wanted {expected!r})"
        ok &= got == expected
        print(f"  {curl(headers):70}  -> {got}   [{mark}]")
    if variant == "weight":
        counts = Counter(get("/version", {"host": "test.com"}) for _ in range(200))
        share = counts["version: v2"] / 200
        print(
            f"  200 x {curl({'host': 'test.com'})}: v1 {counts['version: v1']}, "
            f"v2 {counts['version: v2']} ({share:.0%} to the canary; the manifest says 30%)"
        )
        ok &= 0.15 <= share <= 0.45
    print()
    return ok


async def main_async(variant: str, check: bool) -> int:
    config = HERE / ("gateway-weight.toml" if variant == "weight" else "gateway.toml")
    runners = [await start_upstream(name, port) for name, port in SERVICES.items()]
    proc = await asyncio.create_subprocess_exec(*wasmgate_command(), "run", "-c", str(config))
    status = 0
    try:
        if not await wait_ready(proc, PORT):
            print("demo: the gateway did not start", file=sys.stderr)
            return 1
        print(f"wasmgate serves {config.relative_to(HERE.parent.parent)} on 127.0.0.1:{PORT}")
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, walkthrough, variant)
        status = 0 if ok else 1
        if check:
            return status
        await until_stopped("the gateway and the services")
    finally:
        await shut_down(proc, runners)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=["header", "weight"], default="header")
    parser.add_argument("--check", action="store_true", help="exit after the requests")
    args = parser.parse_args()
    return asyncio.run(main_async(args.variant, args.check))


if __name__ == "__main__":
    sys.exit(main())

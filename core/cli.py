"""The ``wasmgate`` command line.

``wasmgate run`` serves a configuration; ``wasmgate check`` validates one and prints
its route table. Further command groups (``plugin``, ``market``, ...) register
themselves through the ``wasmgate.commands`` entry-point group, so this module, like
the rest of ``core/``, imports nothing from ``market/`` or ``plugins/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import ValidationError

from core import cert_cli, compiled, gcpolicy, metrics
from core.admin import Admin, read_token
from core.config import Admin as AdminSettings
from core.config import GatewayConfig, Server, load_config
from core.errors import ConfigError
from core.gateway import Gateway, Snapshot
from core.ingress import cli as ingress_cli
from core.metrics_render import wasmgate_version
from core.plugin_cli import add_plugin_commands
from core.reload import Reloader
from core.wording import plural

log = logging.getLogger("wasmgate")

EXAMPLES = """\
examples:
  wasmgate check -c gateway.toml          validate and print the route table
  wasmgate run -c gateway.toml            serve in the foreground (Ctrl-C / SIGTERM drains)
  wasmgate run -c gateway.toml -w 4       four worker processes sharing the port
"""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise SystemExit(
                    "wasmgate: --loop uvloop asked for, but uvloop is not installed"
                ) from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _load(path: str, *, listen: list[str] | None = None) -> Snapshot:
    """Load, validate and compile a configuration (chains included), or exit 1."""
    try:
        return build_snapshot(path, listen=listen)
    except ConfigError as exc:
        print(f"wasmgate: invalid configuration\n{exc}", file=sys.stderr)
        raise SystemExit(1) from None


def build_snapshot(
    path: str, *, listen: list[str] | None = None, previous: Snapshot | None = None
) -> Snapshot:
    """Load, validate and compile a configuration; raises ConfigError. With
    ``previous`` (a reload), its unchanged upstream pools are carried over."""
    cfg = load_config(path)
    if listen:
        try:
            server = Server.model_validate({**cfg.server.model_dump(), "listen": listen})
        except ValidationError as exc:
            problems = [f"--listen: {e['msg']}" for e in exc.errors(include_url=False)]
            raise ConfigError(path, problems) from None
        cfg = cfg.model_copy(update={"server": server})
    for warning in cfg.warnings:
        log.warning("%s", warning)
    return Snapshot(cfg, path, previous=previous)


# ---------------------------------------------------------------------- check


def _counts(cfg: GatewayConfig) -> str:
    return f"{plural(len(cfg.routes), 'route')}, {plural(len(cfg.upstreams), 'upstream')}"


def cmd_check(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(GatewayConfig.model_json_schema(), indent=2))
        return 0
    snap = _load(args.config)
    cfg = snap.config
    if args.explain:
        print(f"{args.config}: OK — {_counts(cfg)}")
        explain(snap)
        _https_fallbacks(cfg)
        return 0
    rows = snap.router.table()
    print(f"{args.config}: OK — {_counts(cfg)}")
    print(f"listen: {', '.join(cfg.server.listen)}   workers: {cfg.server.workers}")
    header = ("ROUTE", "HOSTS", "PATHS", "METHODS", "UPSTREAM", "FILTERS")
    table = [header] + [
        (
            r["route"],
            ",".join(r["hosts"]),
            ",".join(r["paths"]) + (" [" + "; ".join(r["headers"]) + "]" if r["headers"] else ""),
            ",".join(r["methods"]),
            r["upstream"],
            ",".join(r["filters"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for up in cfg.upstreams:
        eps = ", ".join(
            f"{e.address}" + (f" (w{e.weight})" if e.weight != 1 else "") for e in up.endpoints
        )
        print(f"upstream {up.name}: {up.balance} over {eps}")
    _https_fallbacks(cfg)
    return 0


def _https_fallbacks(cfg: GatewayConfig) -> None:
    """Which route host names HTTPS answers without a certificate of their own."""
    if not cfg.server.tls_listen:
        return
    from core.default_cert import fallback_names

    outcome, names = fallback_names(cfg)
    if names:
        print(f"https: no certificate names {', '.join(names)}: {outcome}")
    elif not cfg.certificates:
        print(f"https: no [[certificates]]: {outcome}, for every name")


# ---------------------------------------------------------------------- run


def explain(snap: Snapshot) -> None:
    """Per route, the resolved chain in execution order (``check --explain``)."""
    targets = list(snap.router.routes)
    if snap.router.default is not None:
        targets.append(snap.router.default)
    for target in targets:
        print(f"route {target.name} -> upstream {target.upstream}")
        chain = target.chain
        if not chain:
            print("  (no filters)")
            continue
        for i, inst in enumerate(chain.filters, 1):
            phases = [
                p.removeprefix("on_")
                for p in ("on_request", "on_response", "on_log")
                if getattr(inst, p) is not None
            ]
            fail = "fail_open" if inst.fail_open else "fail_closed"
            # A WASM filter's label is its module's path as gateway.toml gives it.
            what = inst.plugin.replace("wasm:", "wasm ", 1)
            if not inst.plugin.startswith("wasm:"):
                what = f"plugin {inst.plugin}"
            print(f"  {i}. {inst.name} ({what}; {fail}; {', '.join(phases) or '-'})")
        requests = [f.name for f in chain.filters if f.on_request is not None]
        responses = [f.name for f in reversed(chain.filters) if f.on_response is not None]
        print(f"  request phase:  {' -> '.join(requests) or '-'}")
        print(f"  response phase: {' -> '.join(responses) or '-'}")
    for inst in snap.services:
        what = inst.plugin.replace("wasm:", "wasm ", 1)
        vm = getattr(inst.filter, "vm", None)
        shared = f"; vm_id {vm.vm_id}" if vm is not None else ""
        print(f"service {inst.name} ({what}{shared}; root-only, on no route)")


async def _serve(
    snap: Snapshot,
    *,
    reuse_port: bool,
    banner: bool,
    rebuild: Callable[[Snapshot], Snapshot] | None = None,
    admin: bool = True,
    supervised: bool = False,
) -> None:
    loop = asyncio.get_running_loop()
    cfg = snap.config
    gateway = Gateway(snap, loop)
    reloader = None
    if rebuild is not None:
        reloader = Reloader(gateway, Path(snap.source), rebuild)
        reloader.arm()  # before the port answers: see Reloader.arm
    # The admin listener opens first, so that it answers (``/ready`` says 503 meanwhile)
    # by the time the proxy's port does: whoever waits for that port may call it at once.
    admin_api = None
    if admin and cfg.admin is not None:
        admin_api = await _start_admin(gateway, reloader, cfg.admin, Path(snap.source), supervised)
    try:
        await gateway.start(reuse_port=reuse_port)
    except OSError as exc:
        if admin_api is not None:
            await admin_api.stop()
        raise SystemExit(f"wasmgate: cannot listen: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    gateway.install_signal_handlers(stop)
    metrics.start(loop)  # this process's metrics file, every second
    if banner:
        urls = ", ".join(
            f"{scheme}://{h}:{p}"
            for (h, p), scheme in zip(gateway.sockets, gateway.schemes, strict=True)
        )
        log.info(
            "wasmgate %d listening on %s (%s)",
            os.getpid(),
            urls,
            _counts(cfg),
        )
    watcher = None
    if reloader is not None:
        watcher = loop.create_task(reloader.watch(stop))
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    log.info("draining (up to %.0fs)", cfg.server.limits.drain_timeout)
    # The admin listener outlives the drain: /ready answers 503 and /live 200 meanwhile.
    await gateway.drain()
    if admin_api is not None:
        await admin_api.stop()
    metrics.stop()
    log.info("stopped")


async def _start_admin(
    gateway: Gateway,
    reloader: Reloader | None,
    settings: AdminSettings,
    config_path: Path,
    supervised: bool,
) -> Admin:
    render = None
    try:
        from core import metrics

        def render() -> tuple[bytes, str]:
            return metrics.render(), metrics.CONTENT_TYPE
    except ImportError:
        pass
    try:
        token = read_token(settings.token, settings.token_file, config_path.parent)
    except OSError as exc:
        raise SystemExit(f"wasmgate: admin.token_file: {exc.strerror or exc}") from None
    api = Admin(
        gateway,
        reloader,
        token=token,
        supervised=supervised,
        render_metrics=render,
        allowed_hosts=settings.allowed_hosts,
    )
    try:
        await api.start(settings.listen)
    except OSError as exc:
        raise SystemExit(
            f"wasmgate: cannot listen on admin.listen: {exc.strerror or exc}"
        ) from None
    log.info("admin API on http://%s", settings.listen)
    return api


def _run_worker(
    snap: Snapshot,
    loop_kind: str,
    *,
    reuse_port: bool,
    rebuild: Callable[[Snapshot], Snapshot] | None = None,
    admin: bool = True,
    supervised: bool = False,
) -> None:
    loop = _new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            _serve(
                snap,
                reuse_port=reuse_port,
                banner=True,
                rebuild=rebuild,
                admin=admin,
                supervised=supervised,
            )
        )
    finally:
        loop.close()


def _supervise(
    snap: Snapshot,
    loop_kind: str,
    workers: int,
    rebuild: Callable[[Snapshot], Snapshot] | None = None,
) -> int:
    """Fork ``workers`` processes on one port (SO_REUSEPORT); restart any that dies."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            code = 0
            try:
                _run_worker(
                    snap,
                    loop_kind,
                    reuse_port=True,
                    rebuild=rebuild,
                    admin=slot == 0,  # one process owns the admin port
                    supervised=True,
                )
            except SystemExit as exc:
                print(exc, file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        children[pid] = slot

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def reload_all(signum: int, _frame: object) -> None:
        for pid in children:  # each worker reloads itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload_all)
    for slot in range(workers):
        spawn(slot)
    log.info("supervisor %d started %s", os.getpid(), plural(workers, "worker"))
    failures: list[float] = []
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        slot = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            continue
        log.warning("worker %d exited with %d; restarting", pid, code)
        now = time.monotonic()
        failures = [t for t in failures if now - t < 10] + [now]
        if len(failures) > 5 * workers:
            log.error("workers keep dying; giving up")
            forward(signal.SIGTERM, None)
            status = 1
            continue
        spawn(slot)
    return status


def cmd_run(args: argparse.Namespace) -> int:
    gcpolicy.prepare()  # before the snapshot: see core/gcpolicy.py
    snap = _load(args.config, listen=args.listen)
    metrics.init_runtime(None)  # before forking: every worker writes its file there
    workers = args.workers if args.workers is not None else snap.config.server.workers
    if workers == "auto":
        workers = os.cpu_count() or 1
    assert isinstance(workers, int)
    if workers < 1:
        raise SystemExit("wasmgate: --workers must be >= 1")
    log.info("data path: %s", compiled.status().describe())

    def rebuild(previous: Snapshot) -> Snapshot:
        return build_snapshot(args.config, listen=args.listen, previous=previous)

    if workers == 1:
        _run_worker(snap, args.loop, reuse_port=False, rebuild=rebuild)
        return 0
    return _supervise(snap, args.loop, workers, rebuild)


# ---------------------------------------------------------------------- main


def _workers_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number or 'auto'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasmgate",
        description="An ingress / API gateway whose every traffic policy is a plugin.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="gateway event log level on stderr (default: info)",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"wasmgate {wasmgate_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="serve traffic with a configuration",
        description="Serve traffic as gateway.toml says. SIGTERM or Ctrl-C stops accepting "
        "new connections, lets in-flight requests finish (server.limits.drain_timeout) "
        "and exits 0. The environment variable WASMGATE_COMPILED (auto, the default; 1; 0) "
        "decides whether the data path runs the modules `make install` compiled with mypyc; "
        "a line logged at start says which.",
    )
    run.add_argument(
        "-c", "--config", default="gateway.toml", help="config file (default: %(default)s)"
    )
    run.add_argument(
        "-w", "--workers", type=_workers_arg, default=None,
        help="worker processes sharing the port (overrides server.workers; 'auto' = CPUs)",
    )  # fmt: skip
    run.add_argument(
        "-l", "--listen", action="append", metavar="HOST:PORT",
        help="listen here instead of server.listen (repeatable)",
    )  # fmt: skip
    run.add_argument(
        "--loop", choices=["auto", "uvloop", "asyncio"], default="auto",
        help="event loop implementation (default: uvloop when installed)",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check",
        help="validate a configuration and print the route table",
        description="Load and validate gateway.toml exactly as `run` would; print the "
        "compiled route table and upstreams. Exit 1 with every problem found otherwise.",
    )
    check.add_argument(
        "-c", "--config", default="gateway.toml", help="config file (default: %(default)s)"
    )
    check.add_argument(
        "--schema", action="store_true",
        help="print the JSON Schema of gateway.toml (for editors and CI) and exit",
    )  # fmt: skip
    check.add_argument(
        "--explain", action="store_true",
        help="print, per route, the resolved filter chain in execution order",
    )  # fmt: skip
    check.set_defaults(func=cmd_check)

    add_plugin_commands(sub)
    ingress_cli.register(sub)
    cert_cli.register(sub)
    for ep in entry_points(group="wasmgate.commands"):
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = ep.load()
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `wasmgate check | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())

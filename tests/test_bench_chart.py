"""bench/chart.py: the PNG `make bench` writes next to its JSON (req/s and p99 per target)."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("matplotlib")

BENCH = Path(__file__).resolve().parent.parent / "bench"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench_chart() -> Iterator[ModuleType]:
    yield load("wasmgate_bench_chart", BENCH / "chart.py")
    sys.modules.pop("wasmgate_bench_chart", None)


def row(rps: float, p50: float, p99: float, nginx_rps: float, errors: int = 0) -> dict[str, Any]:
    return {
        "rps_median": rps,
        "rps_min": rps * 0.95,
        "rps_max": rps * 1.02,
        "rps_spread": 0.07,
        "p50_ms_median": p50,
        "p99_ms_median": p99,
        "ratio_vs_nginx": round(rps / nginx_rps, 4),
        "ratio_vs_nginx_per_round": [round(rps / nginx_rps, 4)] * 3,
        "errors": errors,
        "cpu_us_per_request_median": 0.0 if rps == nginx_rps else 30.0,
    }


def report(names: list[str]) -> dict[str, Any]:
    """A bench/run.py result in its format, with the targets ``names`` only."""
    figures = {
        "nginx": (80000.0, 0.5, 0.9),
        "wasmgate": (32000.0, 1.5, 2.3),
        "wasmgate-asyncio": (26000.0, 1.9, 2.4),
        "wasmgate-chain": (28500.0, 1.7, 2.5),
        "wasmgate-wasm": (12000.0, 4.0, 6.3),
        "wasmgate-wasm-go": (9000.0, 5.0, 8.1),
        "nginx-https": (65000.0, 0.7, 1.1),
        "wasmgate-https": (30000.0, 1.6, 2.5),
        "wasmgate-pure": (25000.0, 1.9, 2.9),
        "wasmgate-chain-pure": (22000.0, 2.1, 3.2),
    }
    return {
        "machine": {
            "date_utc": "2026-11-25T20:32:47+00:00",
            "nproc": "2",
            "cpu_count": 2,
            "cpu_model": "AMD EPYC",
            "kernel": "6.1.0",
            "loadavg_at_end": [0.2, 0.3, 0.4],
            "python": "3.11.7",
            "nginx": "nginx version: nginx/1.22.1",
            "python_openssl": "OpenSSL 3.0.19 27 Jan 2026",
            "wrk": "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer",
            "wasmgate_git": "abc1234",
        },
        "settings": {
            "rounds": 3,
            "duration": 10.0,
            "warmup": 2.0,
            "wrk_threads": 1,
            "wrk_connections": 50,
            "targets": names,
        },
        "summary": {
            name: row(*figures[name], nginx_rps=80000.0, errors=int(name == "wasmgate-wasm"))
            for name in names
        },
        "verdict": {},
        "runs": {},
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


ALL = [
    "nginx",
    "nginx-https",
    "wasmgate",
    "wasmgate-https",
    "wasmgate-asyncio",
    "wasmgate-pure",
    "wasmgate-chain",
    "wasmgate-chain-pure",
    "wasmgate-wasm",
    "wasmgate-wasm-go",
]


def test_chart_of_a_full_run_is_a_png(bench_chart: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "20261125T203248Z.json"
    results.write_text(json.dumps(report(ALL)))
    out = bench_chart.chart(results, tmp_path / "out" / "chart.png")
    assert out == tmp_path / "out" / "chart.png"
    width, height = png_size(out)
    assert 1000 <= width <= 2500
    assert 400 <= height <= 1500
    assert 20_000 < out.stat().st_size < 1_000_000
    # drawn top to bottom in the documented order, whatever the JSON's (run) order
    assert bench_chart.targets(report(ALL)["summary"]) == list(bench_chart.ORDER)
    assert bench_chart.timestamp(results, {}) == "2026-11-25 20:32:48 UTC"


def test_missing_targets_are_skipped(bench_chart: ModuleType, tmp_path: Path) -> None:
    data = report(["nginx", "wasmgate-https", "wasmgate"])
    data["summary"]["broken"] = {"rps_median": None}  # no figures: skipped too
    results = tmp_path / "latest.json"
    results.write_text(json.dumps(data))
    assert bench_chart.targets(data["summary"]) == ["nginx", "wasmgate", "wasmgate-https"]
    out = bench_chart.chart(results, tmp_path / "latest.png")
    full = bench_chart.chart(_write(tmp_path / "full.json", report(ALL)), tmp_path / "full.png")
    width, height = png_size(out)
    assert width == png_size(full)[0]
    assert 250 <= height < png_size(full)[1]  # fewer bars, shorter chart
    # latest.json is not named after its run: the title takes machine.date_utc
    assert bench_chart.timestamp(results, data["machine"]) == "2026-11-25 20:32:47 UTC"


def test_no_targets_is_a_clear_error(bench_chart: ModuleType, tmp_path: Path) -> None:
    results = _write(tmp_path / "empty.json", report([]))
    with pytest.raises(ValueError, match="no target"):
        bench_chart.chart(results, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
    assert bench_chart.main([str(results)]) == 1


def test_command_line_writes_next_to_the_json(
    bench_chart: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _write(tmp_path / "latest.json", report(["nginx", "wasmgate"]))
    assert bench_chart.main([str(results)]) == 0
    assert png_size(tmp_path / "latest.png")[0] > 0
    assert "wrote" in capsys.readouterr().out


@pytest.fixture
def bench_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """bench/run.py, importable as it is when run as a script (bench/ on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    names = ("chart", "testcert", "wasmgate_bench_run")
    before = {name: sys.modules.get(name) for name in names}
    yield load("wasmgate_bench_run", BENCH / "run.py")
    for name, module in before.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


def test_run_writes_the_timestamped_png_and_latest(bench_run: ModuleType, tmp_path: Path) -> None:
    results = _write(tmp_path / "20261125T203248Z.json", report(ALL))
    png = bench_run.write_chart(results)
    assert png == tmp_path / "20261125T203248Z.png"
    assert (tmp_path / "latest.png").read_bytes() == png.read_bytes()
    png_size(png)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path

"""bench/instr.py (`make bench-instr`) in a tiny mode: callgrind counts nginx's and the
gateway's instructions per request, the run is recorded as JSON, and a target that got
worse than the last recorded run by more than 3 % is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTR = ROOT / "bench" / "instr.py"

for program, package in (("valgrind", "valgrind"), ("callgrind_control", "valgrind")):
    if shutil.which(program) is None:
        pytest.skip(f"{program} not found (Debian package {package})", allow_module_level=True)
if shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin") is None:
    pytest.skip("nginx not found (Debian package nginx)", allow_module_level=True)


def test_counts_instructions_records_them_and_names_what_got_worse(tmp_path: Path) -> None:
    # An earlier run, as bench/instr.py records it, in which wasmgate took 1,000
    # instructions per request (no real run is that cheap) and nginx ten billion.
    earlier = {
        "wasmgate_git": "earlier",
        "instructions_per_request": {"nginx": 1e10, "wasmgate": 1000.0},
    }
    (tmp_path / "instr-20000101T000000Z.json").write_text(json.dumps(earlier))
    args = ["--targets", "nginx,wasmgate", "--requests", "30", "--warmup", "20"]
    proc = subprocess.run(
        [sys.executable, str(INSTR), *args, "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = sorted(p for p in tmp_path.glob("instr-*.json") if "20000101" not in p.name)
    assert len(written) == 1
    record = json.loads(written[0].read_text())
    figures = record["instructions_per_request"]
    assert set(figures) == {"nginx", "wasmgate"}
    # Real counts: nginx proxies a request in thousands of instructions, the Python
    # gateway in many more, and neither is anywhere near the fake earlier figures.
    assert 1_000 < figures["nginx"] < figures["wasmgate"] < 1e8
    assert record["settings"]["requests"] == 30
    assert "worse by more than 3%: wasmgate" in proc.stdout
    assert "nginx" not in proc.stdout.split("worse by more than 3%:")[1]


def test_the_redis_rate_limit_target_with_concurrent_connections(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found (Debian package redis-server)")
    args = ["--targets", "wasmgate-redis-ratelimit", "--requests", "20", "--warmup", "10"]
    proc = subprocess.run(
        [sys.executable, str(INSTR), *args, "--concurrency", "5", "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    # Exit 0 also says that Redis ran the script and the gateway logged no store error.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (written,) = tmp_path.glob("instr-*.json")
    record = json.loads(written.read_text())
    assert record["settings"]["concurrency"] == 5
    assert 10_000 < record["instructions_per_request"]["wasmgate-redis-ratelimit"] < 1e8
    assert "5 at a time" in proc.stdout

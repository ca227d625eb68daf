"""bench/chain_cost.py in a tiny mode: callgrind counts what a chain of one filter
costs per iteration, in process, over the bare request and response."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

for program in ("valgrind", "callgrind_control"):
    if shutil.which(program) is None:
        pytest.skip(f"{program} not found (Debian package valgrind)", allow_module_level=True)


def test_counts_each_piece_over_the_bare_request() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/chain_cost.py", "--pieces", "noop", "--iterations", "300",
         "--warmup", "100"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    over = {
        m["piece"]: int(m["over"].replace(",", ""))
        for m in re.finditer(r"^(?P<piece>\S+)\s+[\d,]+\s+(?P<over>-?[\d,]+)$", proc.stdout, re.M)
    }
    assert set(over) == {"noop"}, proc.stdout
    # A Context, two runners and two timed phase calls: thousands of instructions
    # (about 9,000 with Python 3.11), not nothing and not the whole interpreter.
    assert 2_000 < over["noop"] < 100_000, proc.stdout

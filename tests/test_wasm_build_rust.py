"""``plugins/wasm/build.py``'s Rust toolchain, run as the real script: a missing cargo,
a missing wasm32-wasip1 target without rustup, and a missing target with rustup (which
the script asks to add it) each stop with a message that says what to do. The toolchain
is faked at the edge: small shell scripts named cargo, rustc and rustup on a PATH that
holds nothing else of Rust, and a HOME without ~/.cargo. Needs no Rust."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent.parent / "plugins" / "wasm" / "build.py"


def script(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def run_build(tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CARGO", "RUSTC", "RUSTUP")}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(tmp_path / "home"))
    # --force: reach the toolchain even when the real build output is up to date.
    return subprocess.run(
        [sys.executable, str(BUILD), "--force", "rust-headers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    (tmp_path / "home").mkdir()
    return folder


def test_without_cargo_the_build_says_what_to_install(tmp_path: Path, bin_dir: Path) -> None:
    done = run_build(tmp_path, bin_dir)
    assert done.returncode == 1
    assert "rust-headers: FAILED: rust-headers needs cargo (Rust)" in done.stderr
    assert "https://rustup.rs/" in done.stderr


def fake_rust(tmp_path: Path, bin_dir: Path) -> Path:
    """cargo (never reached here) and a rustc whose sysroot lacks every target."""
    sysroot = tmp_path / "sysroot"
    (sysroot / "lib" / "rustlib" / "x86_64-unknown-linux-gnu").mkdir(parents=True)
    script(bin_dir, "cargo", f'echo "cargo ran: $*" >> {tmp_path / "log"}; exit 1')
    script(bin_dir, "rustc", f'[ "$1 $2" = "--print sysroot" ] && echo {sysroot}')
    return sysroot


def test_a_missing_target_without_rustup_says_what_to_install(
    tmp_path: Path, bin_dir: Path
) -> None:
    fake_rust(tmp_path, bin_dir)
    done = run_build(tmp_path, bin_dir)
    assert done.returncode == 1
    assert "needs the Rust target wasm32-wasip1" in done.stderr
    assert "there is no rustup to add it" in done.stderr
    assert not (tmp_path / "log").exists()  # cargo never ran


def test_a_missing_target_is_added_with_rustup(tmp_path: Path, bin_dir: Path) -> None:
    fake_rust(tmp_path, bin_dir)
    # This rustup records what it was asked and installs nothing.
    script(bin_dir, "rustup", f'echo "rustup $*" >> {tmp_path / "log"}')
    done = run_build(tmp_path, bin_dir)
    assert "rustup target add wasm32-wasip1" in done.stdout
    assert (tmp_path / "log").read_text() == "rustup target add wasm32-wasip1\n"
    assert done.returncode == 1
    assert "`rustup target add wasm32-wasip1` did not install it" in done.stderr

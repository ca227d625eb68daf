"""core/watch.py on its own: the notifier calls back on a change to a followed file
(and not on a neighbour's), and when the notifier cannot start it polls instead."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from core.inputs import Inputs
from core.watch import FileWatch


async def changes_after(watch: FileWatch, seen: asyncio.Event, timeout: float = 6.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await seen.wait()
    except TimeoutError:
        return False
    seen.clear()
    return True


async def test_a_followed_file_counts_and_a_neighbour_does_not(tmp_path: Path) -> None:
    followed, neighbour = tmp_path / "keys", tmp_path / "access.log"
    followed.write_text("a")
    seen = asyncio.Event()
    watch = FileWatch(seen.set)
    watch.follow(Inputs(frozenset({followed})), "auto", lambda: False)
    try:
        await asyncio.sleep(1.5)  # the notifier is in place after its first timeout
        neighbour.write_text("written every 200 ms by the access log")
        assert not await changes_after(watch, seen, timeout=1.0)
        followed.write_text("b")
        assert await changes_after(watch, seen)
    finally:
        watch.close()


async def test_when_the_notifier_cannot_start_the_files_are_polled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    followed = folder / "keys"
    seen = asyncio.Event()
    watch = FileWatch(seen.set, interval=0.2)
    watch.follow(Inputs(frozenset({followed})), "auto", lambda: False)
    shutil.rmtree(folder)  # gone before the notifier starts: it cannot watch it
    try:
        with caplog.at_level(logging.WARNING, "wasmgate.reload"):
            await asyncio.sleep(0.5)
        assert "polling them every 0.2 s instead" in caplog.text
        assert watch.mode == "poll"
        folder.mkdir()
        followed.write_text("created")
        assert await changes_after(watch, seen)
    finally:
        watch.close()


@pytest.mark.parametrize(
    "built_since",
    [
        pytest.param(False, id="changed-after-follow"),
        pytest.param(True, id="changed-between-build-and-follow"),
    ],
)
async def test_a_change_before_the_notifier_is_in_place_is_not_missed(
    tmp_path: Path, built_since: bool
) -> None:
    followed = tmp_path / "module.wasm"
    followed.write_bytes(b"old")
    seen = asyncio.Event()
    watch = FileWatch(seen.set)
    watch.follow(Inputs(frozenset({followed})), "auto", lambda: built_since)
    if not built_since:
        followed.write_bytes(b"new build")  # before the notifier thread started
    try:
        assert await changes_after(watch, seen)
    finally:
        watch.close()

"""A database that cannot be written (held write lock, full disk) fails the run loudly, never the server.

Faults are released on events (the runtime logging that it will retry), never on timers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from orchestration.audit.log import AuditLog
from orchestration.audit.read import verify_chain
from orchestration.context import Outcome, RunContext
from orchestration.patterns.delegate import delegate
from orchestration.runtime import Runtime
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(a={"model": "scripted"})


class OnRetry(logging.Handler):
    """Calls `action` the first time the runtime logs that it will retry a write."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.action = action
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("could not record"):
            self.retries += 1
            if self.retries == 1:
                self.action()


@contextlib.contextmanager
def on_retry(action: Callable[[], None]) -> Iterator[OnRetry]:
    handler = OnRetry(action)
    logger = logging.getLogger("concertmaster.audit")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def gated(go: anyio.Event, *, note: str | None = None, output: str = "done") -> Callable[..., object]:
    async def body(ctx: RunContext) -> Outcome:
        await go.wait()
        if note is not None:
            await ctx.record("note", {"blob": note})
        return Outcome(output)

    return body


async def test_a_held_write_lock_fails_the_run_loudly_and_the_runtime_recovers(db: Path) -> None:
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    async with Runtime(TEAM, AuditLog(db, busy_timeout_s=0.2)) as rt:
        go = anyio.Event()
        run_id = await rt.start_run("custom", "t", gated(go, note="a step's record"))  # type: ignore[arg-type]
        other.execute("begin immediate")  # another connection takes the write lock and keeps it
        with on_retry(lambda: other.execute("rollback")) as seen:
            go.set()
            run = await rt.wait(run_id, 120)
        assert seen.retries >= 1
        assert run["status"] == "failed" and run["stop_reason"] == "audit_error"
        assert "database is locked" in run["error"]
        # the runtime was not taken down with the run: the next run works
        second = await rt.start_run("delegate", "again", delegate("a", "again"))
        assert (await rt.wait(second, 60))["status"] == "succeeded"
    other.close()
    assert verify_chain(db).ok


async def test_the_end_of_a_run_is_written_once_the_lock_is_released(db: Path) -> None:
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    async with Runtime(TEAM, AuditLog(db, busy_timeout_s=0.2)) as rt:
        go = anyio.Event()
        run_id = await rt.start_run("custom", "t", gated(go))  # type: ignore[arg-type]
        other.execute("begin immediate")
        with on_retry(lambda: other.execute("rollback")) as seen:
            go.set()
            run = await rt.wait(run_id, 120)
        assert seen.retries >= 1
        assert run["status"] == "succeeded" and run["output"] == "done" and run["ended_at"]
    other.close()
    assert verify_chain(db).ok


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root and mount); skipped with the reason where that is impossible."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * chunk):
                    pass
    return filler


def free(filler: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(filler)


async def test_a_full_disk_fails_the_run_loudly_and_the_runtime_recovers(small_disk: Path) -> None:
    db = small_disk / "audit.db"
    async with Runtime(TEAM, AuditLog(db)) as rt:
        go = anyio.Event()
        run_id = await rt.start_run("custom", "t", gated(go, note="x" * 1_500_000))  # type: ignore[arg-type]
        filler = fill(small_disk)
        with on_retry(lambda: free(filler)):
            go.set()
            run = await rt.wait(run_id, 120)
        free(filler)
        assert run["status"] == "failed" and run["stop_reason"] == "audit_error"
        assert "full" in run["error"]
        second = await rt.start_run("delegate", "again", delegate("a", "again"))
        assert (await rt.wait(second, 60))["status"] == "succeeded"
    assert verify_chain(db).ok


async def test_a_run_whose_end_hits_a_full_disk_ends_once_space_is_freed(small_disk: Path) -> None:
    db = small_disk / "audit.db"
    async with Runtime(TEAM, AuditLog(db)) as rt:
        go = anyio.Event()
        big = "y" * 1_500_000  # more than any space the write-ahead log already has
        run_id = await rt.start_run("custom", "t", gated(go, output=big))  # type: ignore[arg-type]
        filler = fill(small_disk)
        with on_retry(lambda: free(filler)) as seen:
            go.set()
            run = await rt.wait(run_id, 120)
        assert seen.retries >= 1
        assert run["status"] == "succeeded" and run["output"] == big
    assert verify_chain(db).ok

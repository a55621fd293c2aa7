"""What a run costs the audit, counted (never timed): commits and events per run and per step.

A regression that makes every record wait for its own commit, or writes more events per step, fails here on
any machine. Posted records wait for an awaited one (the delay is set out of reach), so the counts are exact.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import orchestration.audit.log as log_module
from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import verify_chain
from orchestration.context import Outcome, RunContext
from orchestration.models.base import ModelRequest, ToolSpec
from orchestration.models.scripted import Reply, ScriptedModel
from orchestration.outcomes import AgentTool, ToolCallContext, ToolOutcome
from orchestration.runtime import Runtime
from orchestration.spec import RunSpec
from tests.conftest import team

pytestmark = pytest.mark.anyio

NAMES = ("a", "b", "c", "d", "e")
TEAM = team(**{n: {"model": "scripted"} for n in NAMES})
NEVER = 3_600.0  # posted records commit with the next awaited one only


def kinds(db: Path, run_id: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [
            k for (k,) in conn.execute("select kind from events where run_id = ? order by seq", (run_id,))
        ]
    finally:
        conn.close()


async def run_counted(db: Path, spec: RunSpec) -> tuple[int, str]:
    """Commits of the run (from the call that starts it to its end) and its id."""
    audit = AuditLog(db, post_delay_s=NEVER)
    async with Runtime(TEAM, audit, providers=lambda *_: ScriptedModel()) as rt:
        before = audit.commits
        run_id = await rt.start(spec)
        assert (await rt.wait(run_id, 60))["status"] == "succeeded"
        return audit.commits - before, run_id


async def test_a_delegate_run_costs_two_commits_and_three_events_for_its_step(db: Path) -> None:
    commits, run_id = await run_counted(db, RunSpec(pattern="delegate", members=("a",), task="t"))
    # the run is recorded before its id is returned; its step and its end share the second commit
    assert commits == 2
    assert kinds(db, run_id) == [
        "run_started",
        "step_started",
        "model_called",
        "step_finished",
        "run_finished",
    ]
    assert verify_chain(db).ok


async def test_a_chain_costs_one_commit_per_step(db: Path) -> None:
    commits, run_id = await run_counted(db, RunSpec(pattern="sequential", members=NAMES, task="t"))
    # each step's reply is made durable by the next step's call (one commit), the last by the run's end
    assert commits == 1 + len(NAMES)
    steps = kinds(db, run_id)[1:-1]
    assert steps == ["step_started", "model_called", "step_finished"] * len(NAMES)


async def test_a_fan_out_commits_its_steps_together(db: Path) -> None:
    commits, run_id = await run_counted(db, RunSpec(pattern="concurrent", members=NAMES, task="t"))
    # the steps start together, answer together and end together: far fewer commits than records
    assert commits <= 3
    assert kinds(db, run_id).count("model_called") == len(NAMES)


def committed(db: Path, kind: str) -> int:
    """Events of `kind` another connection can read (committed), as a crash would leave them."""
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("select count(*) from events where kind = ?", (kind,)).fetchone()[0])
    finally:
        conn.close()


async def test_a_reply_is_durable_before_the_next_model_call_is_made(db: Path) -> None:
    """Records wait to share a commit, but what a call is sent (the previous step's reply) is committed
    before the call goes out."""
    seen: list[tuple[str, int]] = []

    def respond(request: ModelRequest) -> str:
        seen.append((request.agent or "", committed(db, "model_called")))
        return f"{request.agent} answered"

    audit = AuditLog(db, post_delay_s=NEVER)
    async with Runtime(TEAM, audit, providers=lambda *_: ScriptedModel(respond=respond)) as rt:
        run_id = await rt.start(RunSpec(pattern="sequential", members=("a", "b", "c"), task="t"))
        assert (await rt.wait(run_id, 60))["status"] == "succeeded"
    assert seen == [("a", 0), ("b", 1), ("c", 2)]


async def test_a_reply_asking_for_a_tool_is_durable_before_the_tool_runs(db: Path) -> None:
    calls: list[int] = []

    async def probe(arguments: dict[str, Any], call: ToolCallContext) -> ToolOutcome:
        calls.append(committed(db, "model_called"))
        return ToolOutcome("probed")

    tool = AgentTool(ToolSpec("probe", "Looks.", {"type": "object"}), probe)

    async def body(ctx: RunContext) -> Outcome:
        result = await ctx.step("a", "use the probe", key="0", tools=[tool])
        return Outcome(result.output)

    model = ScriptedModel([Reply("", (("probe", {}),)), "done"])
    audit = AuditLog(db, post_delay_s=NEVER)
    async with Runtime(TEAM, audit, providers=lambda *_: model) as rt:
        run_id = await rt.start_run("custom", "t", body)
        assert (await rt.wait(run_id, 60))["status"] == "succeeded"
    assert calls == [1]  # the reply that asked for the call was committed before it ran
    assert committed(db, "tool_called") == 1


async def test_a_posted_record_that_cannot_be_written_fails_the_run(db: Path) -> None:
    """A step's start is not awaited; if it cannot be written, the run must not end as if it had been."""
    async with Runtime(TEAM, AuditLog(db), providers=lambda *_: ScriptedModel()) as rt:
        conn = sqlite3.connect(db)
        conn.execute(
            "create trigger no_steps before insert on steps begin select raise(abort, 'no steps today'); end"
        )
        conn.commit()
        conn.close()
        run_id = await rt.start(RunSpec(pattern="delegate", members=("a",), task="t"))
        run = await rt.wait(run_id, 60)
    assert run["status"] == "failed" and run["stop_reason"] == "audit_error"
    assert "no steps today" in run["error"]
    assert verify_chain(db).ok


async def test_a_burst_of_model_calls_writes_the_runs_totals_once_and_right(db: Path) -> None:
    """Each call's usage reaches the run's row as an absolute total: the last one of a commit wins."""
    commits, run_id = await run_counted(db, RunSpec(pattern="concurrent", members=NAMES, task="t"))
    conn = sqlite3.connect(db)
    try:
        run = conn.execute("select input_tokens, output_tokens from runs where id = ?", (run_id,)).fetchone()
        steps = conn.execute(
            "select sum(input_tokens), sum(output_tokens), count(*) from steps where run_id = ?", (run_id,)
        ).fetchone()
    finally:
        conn.close()
    assert steps[2] == len(NAMES) and steps[0] > 0
    assert tuple(run) == (steps[0], steps[1])  # every call counted, though written together
    assert commits <= 3
    assert verify_chain(db).ok


async def test_writes_commit_on_the_loop_while_a_wal_checkpoint_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint (an fsync) runs on the writer thread's own connection: the loop's commits go on meanwhile
    instead of waiting behind it. The checkpoint is held open here until the test is done writing, so writes
    that waited for it would never commit (the test's bound, far beyond any machine, would fail them)."""
    monkeypatch.setattr(log_module, "CHECKPOINT_CHANGES", 20)
    started, release = threading.Event(), threading.Event()
    checkpoint = AuditLog._checkpoint

    def held(self: AuditLog) -> None:
        started.set()
        release.wait()
        checkpoint(self)

    monkeypatch.setattr(AuditLog, "_checkpoint", held)
    db = tmp_path / "audit.db"
    with AuditLog(db) as audit:
        try:
            for i in range(30):  # past CHECKPOINT_CHANGES: the thread starts a checkpoint, and holds it
                await audit.write(Write(events=[Event("x", None, {"i": i})]))
            await anyio.to_thread.run_sync(started.wait)
            commits = audit.commits
            with anyio.fail_after(60):
                for i in range(10):
                    await audit.write(Write(events=[Event("y", None, {"i": i})]))
            assert audit.commits == commits + 10  # each committed on the loop, none handed to the thread
        finally:
            release.set()  # before the log closes: closing waits for the thread
    # the checkpoint ran: the database file itself (read without its WAL) holds the first rows
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        assert conn.execute("select count(*) from events where kind = 'x'").fetchone()[0] == 30
    finally:
        conn.close()
    assert verify_chain(db).ok


class _Overtaken:
    """The checkpoint's connection, pausing after its first pass until the test has committed more writes."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.passes = 0
        self.first_done, self.resume, self.finished = threading.Event(), threading.Event(), threading.Event()

    def execute(self, sql: str) -> sqlite3.Cursor:
        cursor = self.conn.execute(sql)
        if "wal_checkpoint" in sql:
            self.passes += 1
            if self.passes == 1:
                self.first_done.set()
                self.resume.wait()
            else:
                self.finished.set()
        return cursor


async def test_a_checkpoint_overtaken_by_commits_still_lets_the_wal_start_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits go on while a checkpoint copies the WAL, so its first pass is always behind; its second pass,
    holding the writer's lock, catches up, and the next commit writes the WAL from its start again. Without it
    the WAL (and its index, in memory) grew by every commit for as long as writes kept coming."""
    monkeypatch.setattr(log_module, "CHECKPOINT_CHANGES", 10**9)  # only the checkpoint this test starts
    db = tmp_path / "audit.db"

    def wal_frames() -> int:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("pragma wal_checkpoint(PASSIVE)").fetchone()[1])
        finally:
            conn.close()

    with AuditLog(db) as audit:
        for i in range(100):
            await audit.write(Write(events=[Event("x", None, {"i": i})]))
        checkpointer = _Overtaken(db)
        audit._checkpointer = checkpointer  # type: ignore[assignment]
        audit._queue.put("checkpoint")
        try:
            await anyio.to_thread.run_sync(checkpointer.first_done.wait)
            for i in range(50):  # committed on the loop while the checkpoint runs: its first pass is behind
                await audit.write(Write(events=[Event("y", None, {"i": i})]))
        finally:
            checkpointer.resume.set()
        await anyio.to_thread.run_sync(checkpointer.finished.wait)
        await audit.write(Write(events=[Event("z", None, {})]))
        assert wal_frames() < 20  # one commit's pages: the WAL started over (it held 150 commits' before)
        checkpointer.conn.close()
        audit._checkpointer = None
    assert verify_chain(db).ok

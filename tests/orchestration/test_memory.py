"""Nothing of a finished run stays in memory: the runtime's per-run structures go back to their idle size and no
run context or engine outlives its run, whichever way the run ended (counts, not RSS: `bench/memory.py` measures
the bytes)."""

from __future__ import annotations

import gc
import sqlite3
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from orchestration.approvals import request_approval
from orchestration.audit.log import AuditLog
from orchestration.context import Outcome, RunContext, RunEngine
from orchestration.errors import ConcertmasterError, ProviderError
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.runtime import Runtime
from orchestration.spec import RunSpec
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(a={"model": "scripted"}, b={"model": "scripted"}, c={"model": "scripted"})


def per_run_state(rt: Runtime) -> dict[str, int]:
    """The sizes of everything the runtime keeps per run (all 0 when no run is live)."""
    return {
        "active": len(rt._active),
        "listeners": len(rt._listeners),
        "open requests": len(rt.pending.open_for()),
        "let go": len(rt.pending._let_go),
    }


IDLE = {"active": 0, "listeners": 0, "open requests": 0, "let go": 0}


async def live_run_objects() -> list[object]:
    """Run contexts and engines still reachable once every task has settled (a finished run must have none)."""
    await wait_all_tasks_blocked()  # the run tasks that set `done` have returned too
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RunContext | RunEngine)]


def execute(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


async def approval(ctx: RunContext) -> Outcome:
    verdict = await request_approval(
        ctx,
        agent="a",
        tool="files.delete_file",
        arguments={"path": "x"},
        reason="test",
        rule=None,
        human_only=False,
        ttl_s=3_600,
        step_id=None,
    )
    return Outcome("approved" if verdict.approved else "denied")


async def parked(rt: Runtime, run_id: str) -> None:
    while not rt.pending.open_for(run_id):
        await rt.pending.wait_changed()


async def test_runs_of_every_ending_leave_nothing_behind(db: Path) -> None:
    """Succeeded (one by one and started together), stopped, failed, cancelled, approved: per-run state is back to
    idle and no run context is alive, with a follower subscribed to each run."""
    release = anyio.Event()

    async def respond(request: ModelRequest) -> str:
        if "fail" in request.messages[-1].text:
            raise ProviderError("the model is down", kind="unavailable")
        if "hang" in request.messages[-1].text:
            await release.wait()
        return "done"

    async with Runtime(TEAM, AuditLog(db), providers=lambda *_: ScriptedModel(respond=respond)) as rt:
        assert await live_run_objects() == []
        seen: list[str] = []
        delegate = RunSpec(pattern="delegate", members=("a",), task="t")
        specs = [
            *[delegate] * 5,
            RunSpec(pattern="concurrent", members=("a", "b", "c"), task="t"),
            RunSpec(pattern="group_chat", members=("a", "b"), task="t", options={"max_turns": 2}),
            RunSpec(pattern="delegate", members=("a",), task="fail"),
        ]
        for spec in specs:
            run_id = await rt.start(spec)
            rt.subscribe(run_id, lambda run, kind, payload: seen.append(kind))
            await rt.wait(run_id, 30)
        together = [await rt.start(delegate) for _ in range(10)]
        for run_id in together:
            await rt.wait(run_id, 30)
        hanging = await rt.start(RunSpec(pattern="delegate", members=("a",), task="hang"))
        unsubscribe = rt.subscribe(hanging, lambda run, kind, payload: seen.append(kind))
        cancelled = await rt.cancel(hanging)
        unsubscribe()
        asked = await rt.start_run("bench", "approve", approval)
        await parked(rt, asked)
        for request in rt.pending.open_for(asked):
            await rt.approvals.decide(request.id, "approve", "test", channel="tool")
        approved = await rt.wait(asked, 30)

        assert cancelled["status"] == "cancelled" and approved["status"] == "succeeded"
        assert "run_finished" in seen
        assert per_run_state(rt) == IDLE
        assert await live_run_objects() == []


async def test_a_run_taken_over_by_another_server_leaves_nothing_behind(db: Path) -> None:
    """A run whose lease another server took stops here without `_finish`: its listeners and its let-go mark go
    too (they used to stay for the life of the process)."""
    async with Runtime(TEAM, AuditLog(db), providers=lambda *_: ScriptedModel()) as rt:
        run_id = await rt.start_run("bench", "approve", approval)
        rt.subscribe(run_id, lambda run, kind, payload: None)
        await parked(rt, run_id)
        execute(db, "update runs set owner = 'elsewhere:1:x' where id = ?", run_id)
        await rt.renew_leases()
        await rt.wait(run_id, 30)
        assert not rt.is_active(run_id)
        assert per_run_state(rt) == IDLE
        assert await live_run_objects() == []


async def test_a_start_that_could_not_be_recorded_keeps_no_listeners(db: Path) -> None:
    async with Runtime(TEAM, AuditLog(db), providers=lambda *_: ScriptedModel()) as rt:
        execute(
            db, "create trigger no_runs before insert on runs begin select raise(abort, 'disk says no'); end"
        )
        for _ in range(3):
            with pytest.raises(ConcertmasterError, match="disk says no"):
                await rt.start(RunSpec(pattern="delegate", members=("a",), task="t"))
        assert per_run_state(rt) == IDLE
        assert await live_run_objects() == []


async def test_a_question_whose_close_fails_is_not_kept_open(db: Path) -> None:
    """The run is cancelled after another process changed its question's row: recording the cancellation loses
    the compare-and-set, and the question must still leave the open requests (nobody waits on it any more)."""
    async with Runtime(TEAM, AuditLog(db), providers=lambda *_: ScriptedModel()) as rt:
        run_id = await rt.start_run("bench", "approve", approval)
        await parked(rt, run_id)
        execute(db, "update pending_requests set status = 'expired' where run_id = ?", run_id)
        run = await rt.cancel(run_id)
        assert run["status"] == "cancelled"
        assert per_run_state(rt) == IDLE
        assert await live_run_objects() == []

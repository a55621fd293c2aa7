"""Durable runs through the core: a run stopped at any point continues on the next runtime on the same file.

The runtime is left (as a host quitting does) while an agent's model call is in flight; a new runtime takes the
run over, replays what was recorded and goes on. No test waits on a clock: a blocked model call tells the test
where the run is, and leases run on an injected clock.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.config import TeamConfig
from orchestration.journal import load_journal
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.runtime import Runtime
from orchestration.spec import RunSpec
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(
    a={"model": "scripted"}, b={"model": "scripted"}, c={"model": "scripted"}, d={"model": "scripted"}
)
SEQ = RunSpec(pattern="sequential", members=("a", "b", "c"), task="write it")


class Gate:
    """A scripted model whose calls for one agent block until released; says when one arrived."""

    def __init__(self, block: str | None = None, replies: tuple[str, ...] = ()) -> None:
        self.block = block
        self.arrived = anyio.Event()
        self.release = anyio.Event()
        self.model = ScriptedModel(replies, respond=self._respond)

    async def _respond(self, request: ModelRequest) -> str:
        if request.agent == self.block:
            self.arrived.set()
            await self.release.wait()
        return f"{request.agent} did its part"


def runtime(db: Path, model: ScriptedModel, config: TeamConfig = TEAM, **kwargs: Any) -> Runtime:
    return Runtime(config, AuditLog(db), providers=lambda name, agent, ctx: model, **kwargs)


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


async def stop_while_blocked(db: Path, spec: RunSpec, block: str, **kwargs: Any) -> str:
    """Start `spec`, wait until agent `block` is asked, then stop the runtime (the host quits)."""
    gate = Gate(block)
    async with runtime(db, gate.model, **kwargs) as rt:
        run_id = await rt.start(spec)
        await gate.arrived.wait()
    return run_id


async def finish(db: Path, model: ScriptedModel, run_id: str, **kwargs: Any) -> dict[str, Any]:
    async with runtime(db, model, **kwargs) as rt:
        return await rt.wait(run_id, 30)


async def test_a_library_run_continues_on_the_next_runtime_without_redoing_finished_steps(db: Path) -> None:
    run_id = await stop_while_blocked(db, SEQ, block="b")
    assert rows(db, "select status from runs")[0]["status"] == "running"
    model = ScriptedModel(respond=lambda r: f"{r.agent} did its part")
    run = await finish(db, model, run_id)
    assert run["status"] == "succeeded" and run["output"] == "c did its part"
    assert [r.agent for r in model.requests] == ["b", "c"]  # a's recorded step was not asked again
    kinds = [e["kind"] for e in rows(db, "select kind from events where run_id = ? order by seq", (run_id,))]
    assert kinds.count("run_resumed") == 1 and kinds.count("run_started") == 1
    steps = rows(db, "select key, status from steps where run_id = ? order by started_at", (run_id,))
    assert [(s["key"], s["status"]) for s in steps] == [
        ("0.a", "succeeded"),
        ("1.b", "succeeded"),
        ("2.c", "succeeded"),
    ]


async def test_replayed_steps_move_the_scripted_model_on(db: Path) -> None:
    """Bug: a finished step replayed after a restart did not advance the scripted model's reply counter."""
    replies = ("first reply", "second reply", "third reply")
    gate = Gate("b", replies=())
    gate.model = ScriptedModel(replies[:1], respond=gate._respond)  # a answers "first reply", b blocks
    async with runtime(db, gate.model) as rt:
        run_id = await rt.start(SEQ)
        await gate.arrived.wait()
    run = await finish(db, ScriptedModel(replies), run_id)
    outputs = [
        s["output"]
        for s in rows(db, "select output from steps where run_id = ? order by started_at", (run_id,))
    ]
    assert outputs == list(replies) and run["output"] == "third reply"


async def test_the_budget_is_restored_on_resume(db: Path) -> None:
    """Bug: the budget started fresh on resume (steps, tokens, cost, run clock)."""
    spec = RunSpec(pattern="sequential", members=("a", "b", "c", "d"), task="t", limits=Limits(max_steps=3))
    run_id = await stop_while_blocked(db, spec, block="c")
    run = await finish(db, ScriptedModel(), run_id)
    # a and b were done before the stop, c after: the fourth step would pass max_steps=3
    assert run["status"] == "stopped" and run["stop_reason"] == "max_steps", run


async def test_limits_come_back_exactly_as_stored(db: Path) -> None:
    """Bug: limits were stored without their defaults and merged onto the team's on resume, so an override equal
    to the default came back as the team's value."""
    strict = TEAM.model_copy(update={"limits": Limits(max_steps=2)})
    spec = SEQ.model_copy(update={"limits": Limits(max_steps=50)})  # the default value, chosen on purpose
    run_id = await stop_while_blocked(db, spec, block="b", config=strict)
    assert json.loads(rows(db, "select spec from runs")[0]["spec"])["limits"]["max_steps"] == 50
    run = await finish(db, ScriptedModel(), run_id, config=strict)
    assert run["status"] == "succeeded", run  # three steps: not stopped at the team's max_steps=2


async def test_replay_reads_every_recorded_step_and_event(db: Path) -> None:
    """Bug: replay read steps and events through display queries capped at 500 / 1,000 rows."""
    async with runtime(db, ScriptedModel()) as rt:
        run_id = await rt.start_run("custom", "t", _never)
        writes = [
            Write(
                [
                    (
                        "insert into steps (id, run_id, key, agent, status, output, started_at) values"
                        " (?, ?, ?, 'a', 'succeeded', ?, '2026-01-01T00:00:00.000Z')",
                        (f"step_{i}", run_id, f"{i}.a", f"out {i}"),
                    )
                ],
                [Event("checkpoint", run_id, {"i": i}, f"step_{i}") for _ in range(2)],
            )
            for i in range(700)
        ]
        for write in writes:
            await rt.audit.write(write)
        steps, events = rt._journal_rows(run_id)
        await rt.cancel(run_id)
    journal = load_journal(steps, events)
    assert len(journal.steps) == 700 and sum(journal.pattern_events.values()) == 1400


async def _never(ctx: Any) -> Any:
    await anyio.sleep_forever()


async def test_pattern_events_are_not_written_twice_on_replay(db: Path) -> None:
    spec = RunSpec(
        pattern="sequential",
        members=("a", "b", "c"),
        task="t",
        options={"checkpoint": {"min_chars": 1}},
    )
    run_id = await stop_while_blocked(db, spec, block="c")
    run = await finish(db, ScriptedModel(), run_id)
    assert run["status"] == "succeeded"
    checkpoints = rows(db, "select step_id from events where kind = 'checkpoint' and run_id = ?", (run_id,))
    assert len(checkpoints) == 2 and len({c["step_id"] for c in checkpoints}) == 2


async def test_a_run_whose_agent_left_the_config_fails_on_resume_with_the_fix(db: Path) -> None:
    run_id = await stop_while_blocked(db, SEQ, block="b")
    smaller = team(a={"model": "scripted"}, b={"model": "scripted"})
    async with runtime(db, ScriptedModel(), config=smaller) as rt:
        run = await rt.wait(run_id, 5)
        other = await rt.wait(await rt.start(RunSpec(pattern="delegate", members=("a",), task="t")), 5)
    assert run["status"] == "failed" and run["stop_reason"] == "resume_failed"
    assert "'c'" in run["error"] and "known agents" in run["error"]
    assert other["status"] == "succeeded"  # the runtime is fine


async def test_a_corrupt_recorded_reply_fails_that_run_not_the_server(db: Path) -> None:
    run_id = await stop_while_blocked(db, SEQ, block="b")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "update events set payload = json_set(payload, '$.reply.v', 99) where kind = 'model_called' and run_id = ?",
            (run_id,),
        )
    conn.close()
    run = await finish(db, ScriptedModel(), run_id)
    assert run["status"] == "failed" and "format 99" in run["error"]


async def test_a_run_from_a_newer_version_fails_clearly(db: Path) -> None:
    run_id = await stop_while_blocked(db, SEQ, block="b")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("update runs set spec = json_set(spec, '$.version', 7) where id = ?", (run_id,))
    conn.close()
    run = await finish(db, ScriptedModel(), run_id)
    assert run["status"] == "failed" and "newer concertmaster" in run["error"]


# -- ownership ---------------------------------------------------------------------------------------------


def lease_team(**runs: Any) -> TeamConfig:
    return TEAM.model_copy(update={"runs": TEAM.runs.model_copy(update=runs)})


async def test_a_crashed_owner_whose_pid_we_got_is_not_mistaken_for_us(db: Path) -> None:
    """Bug: a server restarted with the crashed one's PID (PID 1 in a container) left its runs running forever."""
    run_id = await stop_while_blocked(db, SEQ, block="b")
    conn = sqlite3.connect(db)
    with conn:  # as if our own PID had run it in a previous life, with a lease still in the future
        conn.execute(
            "update runs set owner = ?, lease_expires = 9e18 where id = ?",
            (f"{socket.gethostname()}:{os.getpid()}:0ldpr0c", run_id),
        )
    conn.close()
    run = await finish(db, ScriptedModel(), run_id)
    assert run["status"] == "succeeded"


async def test_a_live_owner_keeps_its_run_until_its_lease_lapses(db: Path) -> None:
    clock = FakeClock()
    gate = Gate("b")
    async with runtime(db, gate.model, clock=clock) as first:
        run_id = await first.start(SEQ)
        await gate.arrived.wait()
        second = runtime(db, ScriptedModel(), clock=clock)
        async with second:
            assert await second.adopt_orphans() == []  # first is alive and its lease holds
            clock.now += TEAM.runs.lease_s + 1  # first stalls: its lease lapses
            assert await second.adopt_orphans() == [run_id]
            await first.renew_leases()  # first notices it lost the run and stops without writing
            run = await second.wait(run_id, 30)
        assert run["status"] == "succeeded" and run["owner"] == second.owner
    owners = {
        e["owner"]
        for e in rows(
            db, "select json_extract(payload, '$.owner') as owner from events where kind = 'run_resumed'"
        )
    }
    assert owners == {second.owner}
    assert [
        s["status"] for s in rows(db, "select status from steps where run_id = ? and key = '1.b'", (run_id,))
    ] == ["succeeded"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_manual_mode_leaves_the_run_interrupted_until_resumed(db: Path) -> None:
    manual = lease_team(resume="manual")
    run_id = await stop_while_blocked(db, SEQ, block="b", config=manual)
    async with runtime(db, ScriptedModel(), config=manual) as rt:
        run = rt.get_run(run_id)
        assert run["status"] == "interrupted" and run["stop_reason"] == "resume_required"
        assert "concertmaster resume" in run["error"]
        await rt.resume_run(run_id)
        run = await rt.wait(run_id, 30)
    assert run["status"] == "succeeded"


def crashed(db: Path) -> None:
    """As if the run's server had died instead of stopping (a crash leaves its lease unreleased)."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("update runs set lease_expires = 1 where lease_expires = 0")
    conn.close()


async def test_a_run_that_keeps_crashing_is_not_resumed_automatically_again(db: Path) -> None:
    capped = lease_team(max_auto_resumes=1)
    run_id = await stop_while_blocked(db, SEQ, block="b", config=capped)
    crashed(db)
    blocked = Gate("b")  # the first resume dies at the same point
    async with runtime(db, blocked.model, config=capped):
        await blocked.arrived.wait()
    crashed(db)
    async with runtime(db, ScriptedModel(), config=capped) as rt:
        run = rt.get_run(run_id)
    assert run["status"] == "interrupted" and run["stop_reason"] == "resume_limit"


async def test_clean_restarts_do_not_count_toward_the_automatic_resume_cap(db: Path) -> None:
    capped = lease_team(max_auto_resumes=1)
    run_id = await stop_while_blocked(db, SEQ, block="b", config=capped)
    for _ in range(3):  # the host app quit and came back three times
        again = Gate("b")
        async with runtime(db, again.model, config=capped):
            await again.arrived.wait()
    run = await finish(db, ScriptedModel(), run_id, config=capped)
    assert run["status"] == "succeeded" and run["resumes"] == 0


async def test_cancelling_a_run_whose_server_is_gone(db: Path) -> None:
    run_id = await stop_while_blocked(db, SEQ, block="b", config=lease_team(resume="manual"))
    async with runtime(db, ScriptedModel(), config=lease_team(resume="manual"), adopt=False) as rt:
        run = await rt.cancel(run_id)
    assert run["status"] == "cancelled"

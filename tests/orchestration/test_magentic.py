"""Magentic runs: ledgers, stalls and replans, limits, malformed ledgers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.magentic import MagenticOptions, magentic
from orchestration.runtime import Runtime
from tests.conftest import team

pytestmark = pytest.mark.anyio
TEAM = team(boss={"model": "scripted"}, coder={"model": "scripted"}, tester={"model": "scripted"})
LEDGER = json.dumps({"facts": ["f"], "guesses": ["g"], "plan": ["code", "test"]})


def progress(
    satisfied: bool = False, speaker: str = "coder", progress_made: bool = True, loop: bool = False
) -> str:
    return json.dumps(
        {
            "is_request_satisfied": satisfied,
            "is_in_loop": loop,
            "is_progress_being_made": progress_made,
            "next_speaker": speaker,
            "instruction": f"{speaker}, do your part",
            "reason": "because",
        }
    )


def manager(progress_replies: list[str]) -> Callable[[ModelRequest], str]:
    """A scripted manager: ledgers for 'task ledger' prompts, the given progress ledgers in order, a final."""
    queue = list(progress_replies)

    def respond(request: ModelRequest) -> str:
        prompt = request.messages[-1].text
        if "task ledger as JSON" in prompt:
            return LEDGER
        if "progress ledger" in prompt:
            return queue.pop(0) if queue else progress(progress_made=False)
        return "FINAL: shipped"

    return respond


async def run(db: Path, replies: list[str], **options: int) -> tuple[dict, list[str]]:
    models = {
        "boss": ScriptedModel(respond=manager(replies)),
        "coder": ScriptedModel(respond=lambda r: "code v1"),
        "tester": ScriptedModel(respond=lambda r: "tests pass"),
    }
    async with Runtime(TEAM, AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        body = magentic("ship it", ["coder", "tester"], MagenticOptions(manager="boss", **options))
        run_id = await rt.wait(await rt.start_run("magentic", "ship it", body), 10)
    conn = sqlite3.connect(db)
    kinds = [
        r[0] for r in conn.execute("select kind from events where run_id = ? order by seq", (run_id["id"],))
    ]
    conn.close()
    return run_id, kinds


async def test_the_manager_steers_agents_until_satisfied(db: Path) -> None:
    result, kinds = await run(
        db, [progress(speaker="coder"), progress(speaker="tester"), progress(satisfied=True)]
    )
    assert result["status"] == "succeeded" and result["output"] == "FINAL: shipped"
    assert kinds.count("task_ledger") == 1 and kinds.count("progress_ledger") == 3


async def test_a_stalled_run_replans_then_succeeds(db: Path) -> None:
    stalled = [progress(progress_made=False)] * 3
    result, kinds = await run(db, [*stalled, progress(satisfied=True)], max_stalls=2)
    assert result["status"] == "succeeded"
    assert kinds.count("magentic_reset") == 1 and kinds.count("task_ledger") == 2


async def test_a_run_that_keeps_stalling_stops_after_max_resets(db: Path) -> None:
    result, kinds = await run(db, [progress(loop=True)] * 20, max_stalls=1, max_resets=1, max_rounds=50)
    assert result["status"] == "stopped" and result["stop_reason"] == "max_resets"
    assert kinds.count("magentic_reset") == 2


async def test_max_rounds_stops_with_the_last_work(db: Path) -> None:
    result, _ = await run(db, [progress(speaker="coder")] * 10, max_rounds=3, max_stalls=10)
    assert (
        result["status"] == "stopped"
        and result["stop_reason"] == "max_rounds"
        and result["output"] == "code v1"
    )


async def test_malformed_ledgers_and_unknown_speakers_are_stalls_not_crashes(db: Path) -> None:
    replies = ["not json", "still not json", progress(speaker="ghost"), progress(satisfied=True)]
    result, _ = await run(db, replies, max_stalls=5)
    assert result["status"] == "succeeded"
    conn = sqlite3.connect(db)
    whys = [
        json.loads(r[0])["why"]
        for r in conn.execute("select payload from events where kind = 'progress_ledger'")
    ]
    conn.close()
    assert whys[0] == "the manager's progress ledger was not valid JSON" and "ghost" in whys[1]

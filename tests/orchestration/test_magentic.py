"""Magentic runs: task and progress ledgers, stalls and replans, stops with a partial answer, bad ledgers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.errors import InvalidInputError, ProviderError
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.magentic import MagenticOptions, build_team, magentic
from orchestration.patterns.sequential import sequential
from orchestration.runtime import Runtime
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(boss={"model": "scripted"}, coder={"model": "scripted"}, tester={"model": "scripted"})
LEDGER = {"facts": ["the repo builds"], "guesses": ["tests are missing"], "plan": ["code it", "test it"]}
REPLAN = {"facts": ["the repo builds", "coding alone stalls"], "guesses": [], "plan": ["test first"]}


def progress(
    speaker: str = "coder", *, satisfied: bool = False, made: bool = True, loop: bool = False
) -> str:
    return json.dumps(
        {
            "is_request_satisfied": satisfied,
            "is_in_loop": loop,
            "is_progress_being_made": made,
            "next_speaker": speaker,
            "instruction": f"{speaker}, do your part",
            "reason": "because",
        }
    )


DONE = progress(satisfied=True)


class Manager:
    """A scripted manager that answers by what the prompt asks: task ledger, progress ledger, final, partial."""

    def __init__(
        self,
        progress_replies: list[str],
        ledgers: list[str] | None = None,
        partial: str = "PARTIAL: coded, untested",
    ) -> None:
        self.progress = list(progress_replies)
        self.ledgers = list(ledgers) if ledgers is not None else [json.dumps(LEDGER), json.dumps(REPLAN)]
        self.partial = partial

    def __call__(self, request: ModelRequest) -> str:
        prompt = request.messages[-1].text
        if "could not be used as the task ledger" in prompt or "TASK LEDGER" in prompt:
            return self.ledgers.pop(0) if self.ledgers else json.dumps(LEDGER)
        if "could not be used as the progress ledger" in prompt or "PROGRESS LEDGER" in prompt:
            return self.progress.pop(0) if self.progress else progress(made=False)
        if "request is satisfied" in prompt:
            return "FINAL: shipped"
        if "stopping before the goal" in prompt:
            return self.partial
        raise AssertionError(f"unexpected manager prompt: {prompt}")


class Failing:
    name = "scripted"

    async def complete(self, request: ModelRequest) -> Any:
        raise ProviderError("the model is down", kind="server")


class Run:
    """One finished magentic run: its result, steps, events, and what each model received."""

    def __init__(self, result: dict[str, Any], db: Path, models: dict[str, Any]) -> None:
        self.result, self.models = result, models
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        try:
            rid = result["id"]
            self.steps = conn.execute(
                "select * from steps where run_id = ? order by rowid", (rid,)
            ).fetchall()
            self.events = [
                (r["kind"], json.loads(r["payload"]))
                for r in conn.execute(
                    "select kind, payload from events where run_id = ? order by seq", (rid,)
                )
            ]
        finally:
            conn.close()

    def keys(self) -> list[str]:
        return [s["key"] for s in self.steps]

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        return [p for k, p in self.events if k == kind]

    def prompts(self, agent: str) -> list[str]:
        return [r.messages[-1].text for r in self.models[agent].requests]


async def run(
    db: Path,
    manager: Manager,
    *,
    limits: Limits | None = None,
    config: TeamConfig = TEAM,
    body: Any = None,
    failing: str | None = None,
    **options: int,
) -> Run:
    models: dict[str, Any] = {
        "boss": ScriptedModel(respond=manager),
        "coder": ScriptedModel(respond=lambda r: "code v1"),
        "tester": ScriptedModel(respond=lambda r: "tests pass"),
    }
    if failing is not None:
        models[failing] = Failing()
    body = body or magentic("ship it", ["coder", "tester"], MagenticOptions(manager="boss", **options))
    async with Runtime(config, AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        result = await rt.wait(await rt.start_run("magentic", "ship it", body, limits=limits), 10)
    return Run(result, db, models)


async def test_the_manager_plans_steers_one_agent_and_answers_in_two_rounds(db: Path) -> None:
    r = await run(db, Manager([progress("coder"), DONE]))
    assert r.result["status"] == "succeeded" and r.result["output"] == "FINAL: shipped"
    assert r.keys() == ["plan0.boss", "1.boss:progress", "1.coder", "2.boss:progress", "2.boss:final"]
    plan_prompt = r.prompts("boss")[0]
    assert "Goal: ship it" in plan_prompt and "- coder: coder agent" in plan_prompt
    # the agent sees the goal and the plan as history, and the manager's instruction as its prompt
    (coder,) = r.models["coder"].requests
    assert (
        coder.messages[0].text.startswith("Goal: ship it")
        and "1. code it\n2. test it" in coder.messages[0].text
    )
    assert coder.messages[-1].text == "Instruction from the manager: coder, do your part"
    # the manager's next ledger is made with the agent's work in view
    round2 = r.models["boss"].requests[2]
    assert "[coder]: code v1" in round2.messages[0].text and "Round 2" in round2.messages[-1].text
    assert r.payloads("magentic_terminated") == [
        {"round": 2, "resets": 0, "why": "satisfied", "reason": "because"}
    ]
    assert r.result["stop_reason"] == "completed"


async def test_the_ledgers_are_recorded_in_full_in_the_audit(db: Path) -> None:
    r = await run(db, Manager([progress("coder"), progress("tester"), DONE]))
    kinds = [k for k, _ in r.events]
    assert kinds.count("task_ledger") == 1 and kinds.count("progress_ledger") == 3
    (task,) = r.payloads("task_ledger")
    assert task == {"reset": 0, "replan": False, "ledger": LEDGER, "valid": True}
    ledgers = r.payloads("progress_ledger")
    assert [p["round"] for p in ledgers] == [1, 2, 3]
    assert ledgers[1]["ledger"] == json.loads(progress("tester")) and ledgers[1]["stalls"] == 0
    assert ledgers[2]["ledger"]["is_request_satisfied"] is True
    # each ledger event points at the manager step that wrote it
    step_of = {s["id"]: s["key"] for s in r.steps}
    conn = sqlite3.connect(db)
    rows = conn.execute("select step_id from events where kind = 'progress_ledger' order by seq").fetchall()
    conn.close()
    assert [step_of[sid] for (sid,) in rows] == ["1.boss:progress", "2.boss:progress", "3.boss:progress"]


async def test_stalls_past_max_stalls_make_the_manager_replan_then_it_succeeds(db: Path) -> None:
    stalled = progress("coder", made=False)
    r = await run(db, Manager([stalled, stalled, DONE]), max_stalls=1)
    assert r.result["status"] == "succeeded" and r.result["output"] == "FINAL: shipped"
    # round 1 stalls but the coder still works; round 2 is the second stall in a row: a reset instead
    assert r.keys() == [
        "plan0.boss",
        "1.boss:progress",
        "1.coder",
        "2.boss:progress",
        "plan1.boss",
        "3.boss:progress",
        "3.boss:final",
    ]
    assert [p["stalls"] for p in r.payloads("progress_ledger")] == [1, 2, 0]
    (reset,) = r.payloads("magentic_reset")
    assert reset == {"round": 2, "reset": 1, "stalls": 2, "why": "no progress: because", "action": "replan"}
    first, second = r.payloads("task_ledger")
    assert (first["replan"], second["replan"], second["ledger"]) == (False, True, REPLAN)
    # the replan sees the stalled work; the new inner loop starts over from the new plan
    replan = r.models["boss"].requests[3]
    assert "stalled (no progress: because)" in replan.messages[-1].text
    assert "[coder]: code v1" in replan.messages[0].text
    round3 = r.models["boss"].requests[4].messages[0].text
    assert "1. test first" in round3 and "code v1" not in round3


async def test_a_run_that_keeps_stalling_stops_after_max_resets_with_a_partial_answer(db: Path) -> None:
    r = await run(db, Manager([progress("coder", loop=True)] * 10), max_stalls=1, max_resets=1)
    res = r.result
    assert res["status"] == "stopped" and res["stop_reason"] == "max_resets"
    assert res["output"] == "PARTIAL: coded, untested"
    assert "max_resets=1" in res["error"] and "the work is looping" in res["error"]
    assert [p["action"] for p in r.payloads("magentic_reset")] == ["replan", "stop"]
    assert len(r.payloads("task_ledger")) == 2  # no replan after the last reset
    assert r.keys()[-1] == "4.boss:partial"
    assert r.payloads("magentic_terminated")[0]["output_from"] == "the manager's partial answer"


async def test_max_rounds_stops_with_the_managers_best_partial_answer(db: Path) -> None:
    r = await run(db, Manager([progress("coder")] * 10), max_rounds=3)
    res = r.result
    assert res["status"] == "stopped" and res["stop_reason"] == "max_rounds"
    assert res["output"] == "PARTIAL: coded, untested" and "max_rounds=3" in res["error"]
    assert [k for k in r.keys() if k.endswith(".coder")] == ["1.coder", "2.coder", "3.coder"]
    # the partial answer is written with all the work in view
    partial = r.models["boss"].requests[-1]
    assert "stopping before the goal" in partial.messages[-1].text
    assert partial.messages[0].text.count("[coder]: code v1") == 3


async def test_max_rounds_defaults_to_the_max_turns_limit(db: Path) -> None:
    r = await run(db, Manager([progress("coder")] * 10), limits=Limits(max_turns=2))
    assert r.result["stop_reason"] == "max_rounds" and "max_rounds=2" in r.result["error"]
    assert len(r.payloads("progress_ledger")) == 2


async def test_without_a_partial_answer_the_last_work_product_is_the_output(db: Path) -> None:
    r = await run(db, Manager([progress("coder"), progress("tester")], partial=""), max_rounds=2)
    assert r.result["stop_reason"] == "max_rounds" and r.result["output"] == "tests pass"
    assert "the last work product" in r.result["error"]


async def test_a_malformed_ledger_is_asked_for_again_with_the_error(db: Path) -> None:
    r = await run(db, Manager(["I think the coder should go", progress("coder"), DONE]))
    assert r.result["status"] == "succeeded"
    assert r.keys()[:4] == ["plan0.boss", "1.boss:progress", "1.boss:progress.retry", "1.coder"]
    retry = r.models["boss"].requests[2]
    assert "no JSON object found" in retry.messages[-1].text
    assert retry.messages[-2].text == "I think the coder should go"  # it sees its own bad reply
    assert r.payloads("progress_ledger")[0]["stalled"] is False


async def test_a_ledger_malformed_twice_is_a_recorded_stall_not_a_crash(db: Path) -> None:
    bad_shape = json.dumps({"is_request_satisfied": "maybe"})
    r = await run(db, Manager(["not json", bad_shape, DONE], ledgers=["[1, 2]", "no"]))
    assert r.result["status"] == "succeeded" and r.result["output"] == "FINAL: shipped"
    (task,) = r.payloads("task_ledger")
    assert task["valid"] is False and task["ledger"]["plan"] == ["ship it"] and "error" in task
    first = r.payloads("progress_ledger")[0]
    assert first["ledger"] is None and first["stalled"] is True and first["stalls"] == 1
    assert "unusable twice" in first["why"] and "is_request_satisfied" in first["why"]
    assert not [k for k in r.keys() if k.endswith(".coder")]


async def test_an_unknown_next_speaker_is_a_recorded_stall(db: Path) -> None:
    r = await run(db, Manager([progress("ghost"), progress("Tester"), DONE]))
    assert r.result["status"] == "succeeded"
    first, second, _ = r.payloads("progress_ledger")
    assert first["stalled"] is True and "'ghost', who is not on the team" in first["why"]
    assert second["stalled"] is False and second["stalls"] == 0  # a case slip still names the tester
    assert [s["agent"] for s in r.steps if s["agent"] != "boss"] == ["tester"]


async def test_a_failed_agent_step_is_shown_to_the_manager_who_redirects(db: Path) -> None:
    r = await run(db, Manager([progress("coder"), progress("tester"), DONE]), failing="coder")
    assert r.result["status"] == "succeeded"
    round2 = r.models["boss"].requests[2].messages[0].text
    assert "[coder]: (the step failed: agent 'coder' failed: the model is down)" in round2
    assert [s["status"] for s in r.steps if s["agent"] == "coder"] == ["failed"]


async def test_a_limit_stops_the_run_with_the_last_work_product(db: Path) -> None:
    r = await run(db, Manager([progress("coder")] * 5), limits=Limits(max_steps=3))
    res = r.result
    assert res["status"] == "stopped" and res["stop_reason"] == "max_steps"
    assert res["output"] == "code v1"  # not the manager's JSON of the step before the limit
    assert r.payloads("magentic_terminated")[0]["why"] == "max_steps"


async def test_magentic_runs_as_a_sub_team_with_the_manager_among_its_members(db: Path) -> None:
    config = TeamConfig.model_validate(
        {
            "agents": {n: {"description": n, "instructions": n, "model": "scripted"} for n in TEAM.agents},
            "teams": {
                "squad": {
                    "description": "a managed squad",
                    "pattern": "magentic",
                    "agents": ["boss", "coder", "tester"],
                    "options": {"manager": "boss"},
                }
            },
        }
    )
    r = await run(
        db, Manager([progress("tester"), DONE]), config=config, body=sequential(["squad"], "ship it")
    )
    assert r.result["status"] == "succeeded" and r.result["output"] == "FINAL: shipped"
    assert "0.squad/1.tester" in r.keys() and "0.squad/plan0.boss" in r.keys()


@pytest.mark.parametrize(
    ("agents", "options", "fragment"),
    [
        ([], {"manager": "boss"}, "at least one agent"),
        (["coder", "coder"], {"manager": "boss"}, "once"),
        (["coder"], {"manager": "boss", "max_stalls": -1}, "max_stalls"),
        (["coder"], {"manager": "boss", "max_rounds": 500}, "max_rounds"),
        (["coder"], {"boss": "boss"}, "manager"),
    ],
)
def test_bad_options_are_clear_errors(agents: list[str], options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        build_team(agents, "t", options)


def test_the_manager_cannot_also_be_a_directed_agent() -> None:
    with pytest.raises(InvalidInputError, match="'boss' is the manager"):
        magentic("t", ["boss", "coder"], MagenticOptions(manager="boss"))

"""Concurrent runs: real parallelism, every reconciliation rule, disagreements, failed agents, bad options."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.context import RunBody, RunContext
from orchestration.errors import InvalidInputError, ProviderError
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.concurrent import (
    ConcurrentOptions,
    build_team,
    concurrent,
    normalise,
    stated_confidence,
)
from orchestration.patterns.sequential import sequential
from orchestration.runtime import Runtime
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio
NAMES = ("a", "b", "c", "d", "e", "judge")
TEAM = team(**{n: {"model": "scripted"} for n in NAMES})


class Down:
    """A provider that always fails."""

    name = "scripted"

    async def complete(self, request):
        raise ProviderError("the model is down", kind="server")


def replies(**by_agent: str) -> dict[str, Any]:
    """One scripted model per agent with one reply each; the judge merges."""
    models: dict[str, Any] = {n: ScriptedModel([text]) for n, text in by_agent.items()}
    models.setdefault("judge", ScriptedModel(["the judge's answer"]))
    return models


def without_approvals(body: RunBody) -> RunBody:
    """The body in a context with no approval channel (a library caller without a runtime's pending)."""

    async def wrapped(ctx: RunContext) -> Any:
        return await body(replace(ctx, engine=replace(ctx.engine, pending=None)))

    return wrapped


async def run(
    db: Path,
    models: dict[str, Any],
    body: RunBody,
    *,
    config: TeamConfig = TEAM,
    limits: Limits | None = None,
    decide: str | None = None,
) -> dict[str, Any]:
    """Run `body`; if it asks for an approval and `decide` is given, decide it (as through approve_action)."""
    async with Runtime(config, AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        run_id = await rt.start_run("concurrent", "t", body, limits=limits)
        result = await rt.wait(run_id, 10, wake_on_pending=("approval",))
        if decide is not None and result["status"] == "awaiting_approval":
            (request,) = rt.pending.open_for(run_id, "approval")
            await rt.approvals.decide(request.id, decide, "my call", channel="tool")  # type: ignore[arg-type]
            result = await rt.wait(run_id, 10)
    return result


def panel(options: ConcurrentOptions, agents: str = "abc", task: str = "t") -> RunBody:
    return concurrent(list(agents), task, options)


def events(db: Path, run_id: str, kind: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "select payload from events where run_id = ? and kind = ? order by seq", (run_id, kind)
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(p) for (p,) in rows]


def reconciled(db: Path, run_id: str) -> dict[str, Any]:
    (payload,) = events(db, run_id, "reconciled")
    return payload


def data(db: Path, run_id: str) -> dict[str, Any]:
    (payload,) = events(db, run_id, "run_finished")
    return payload.get("data", {})


# -- parallelism -------------------------------------------------------------------------------------------
async def test_agents_run_in_parallel_not_one_after_another(db: Path) -> None:
    # each agent answers only once all five are asking at the same time: one after another would never finish
    asking, everyone = 0, anyio.Event()

    async def together(request: Any) -> str:
        nonlocal asking
        asking += 1
        if asking == 5:
            everyone.set()
        await everyone.wait()
        return f"{request.agent} answered"

    models = {n: ScriptedModel(respond=together) for n in "abcde"}
    with anyio.fail_after(60):  # bounds a deadlock (the sequential case); not what the test measures
        result = await run(db, models, panel(ConcurrentOptions(), agents="abcde"))
    assert result["status"] == "succeeded"
    assert all(len(models[n].requests) == 1 for n in "abcde")


# -- the rules ---------------------------------------------------------------------------------------------
async def test_all_returns_every_answer_labelled_by_agent(db: Path) -> None:
    result = await run(db, replies(a="one", b="two", c="three"), panel(ConcurrentOptions(reconcile="all")))
    assert result["status"] == "succeeded"
    assert result["output"] == "## a\none\n\n## b\ntwo\n\n## c\nthree"
    assert [(x["agent"], x["output"]) for x in data(db, result["id"])["answers"]] == [
        ("a", "one"),
        ("b", "two"),
        ("c", "three"),
    ]


async def test_majority_votes_on_normalised_answers(db: Path) -> None:
    models = replies(a="Paris.", b="  PARIS \n", c="Lyon")
    result = await run(db, models, panel(ConcurrentOptions(reconcile="majority")))
    assert result["status"] == "succeeded" and result["output"] == "Paris."
    event = reconciled(db, result["id"])
    assert event["rule"] == "majority" and event["votes"] == {"paris": 2, "lyon": 1}
    assert event["winner"] == "a" and event["disagreement"] is None
    assert [x["normalised"] for x in event["answers"]] == ["paris", "paris", "lyon"]
    assert "FINAL ANSWER:" in models["a"].requests[0].messages[-1].text  # asked for a parseable line


async def test_majority_votes_on_the_final_answer_line_when_there_is_one(db: Path) -> None:
    models = replies(
        a="It is 4 because 2+2.\nFINAL ANSWER: 4",
        b="Let me add them up...\nFinal answer:  4!",
        c="FINAL ANSWER: 5",
    )
    result = await run(db, models, panel(ConcurrentOptions(reconcile="majority")))
    assert result["status"] == "succeeded" and result["output"].startswith("It is 4")
    assert reconciled(db, result["id"])["votes"] == {"4": 2, "5": 1}


async def test_confidence_picks_the_most_confident_answer(db: Path) -> None:
    models = replies(a="A\nCONFIDENCE: 0.4", b="B\nconfidence: 0.9", c="C")
    result = await run(db, models, panel(ConcurrentOptions(reconcile="confidence")))
    assert result["status"] == "succeeded" and result["output"] == "B\nconfidence: 0.9"
    event = reconciled(db, result["id"])
    assert [x["confidence"] for x in event["answers"]] == [0.4, 0.9, None] and event["winner"] == "b"
    assert "CONFIDENCE:" in models["a"].requests[0].messages[-1].text


async def test_judge_rule_gives_the_judge_every_answer_and_returns_its_verdict(db: Path) -> None:
    models = replies(a="draft one", b="draft two", c="draft three")
    options = ConcurrentOptions(reconcile="judge", judge="judge")
    result = await run(db, models, panel(options, task="name the product"))
    assert result["status"] == "succeeded" and result["output"] == "the judge's answer"
    seen = models["judge"].requests[0].messages[-1].text
    assert "name the product" in seen and all(f"## {n}\ndraft" in seen for n in "abc")
    assert reconciled(db, result["id"])["why"] == "the judge judge decided"


# -- disagreements -----------------------------------------------------------------------------------------
async def test_a_majority_tie_fails_with_the_split_explained(db: Path) -> None:
    models = replies(a="yes", b="no", c="Yes.", d="no")
    result = await run(db, models, panel(ConcurrentOptions(reconcile="majority"), agents="abcd"))
    assert result["status"] == "stopped" and result["stop_reason"] == "disagreement"
    assert "a tie" in result["error"] and "'yes' (a, c) vs 'no' (b, d)" in result["error"]
    assert result["output"] == "## a\nyes\n\n## b\nno\n\n## c\nYes.\n\n## d\nno"
    event = reconciled(db, result["id"])
    assert event["votes"] == {"yes": 2, "no": 2} and event["winner"] is None
    assert "a tie" in event["disagreement"] and event["settled_by"] == "fail"


async def test_a_majority_tie_escalated_without_approvals_stops_for_a_human(db: Path) -> None:
    options = ConcurrentOptions(reconcile="majority", on_disagreement="escalate")
    result = await run(db, replies(a="yes", b="no"), without_approvals(panel(options, agents="ab")))
    assert result["status"] == "stopped" and result["stop_reason"] == "escalation_required"
    assert "needs a human decision" in result["error"] and "'yes' (a) vs 'no' (b)" in result["error"]
    assert result["output"] == "## a\nyes\n\n## b\nno"
    assert reconciled(db, result["id"])["settled_by"] == "escalate"


async def test_an_escalated_tie_is_settled_by_the_humans_decision(db: Path) -> None:
    options = ConcurrentOptions(reconcile="majority", on_disagreement="escalate")
    accepted = await run(db, replies(a="yes", b="no"), panel(options, agents="ab"), decide="approve")
    assert accepted["status"] == "succeeded" and accepted["output"] == "yes"
    (asked,) = events(db, accepted["id"], "input_requested")
    assert asked["kind"] == "approval"
    refused = await run(db, replies(a="yes", b="no"), panel(options, agents="ab"), decide="deny")
    assert refused["status"] == "stopped" and refused["stop_reason"] == "disagreement"
    assert "did not accept a's answer: my call" in refused["error"]


async def test_a_majority_tie_is_resolved_by_the_judge(db: Path) -> None:
    models = replies(a="yes", b="no")
    options = ConcurrentOptions(reconcile="majority", on_disagreement="judge", judge="judge")
    result = await run(db, models, panel(options, agents="ab", task="ship it?"))
    assert result["status"] == "succeeded" and result["output"] == "the judge's answer"
    seen = models["judge"].requests[0].messages[-1].text
    assert "ship it?" in seen and "## a\nyes" in seen and "## b\nno" in seen
    assert reconciled(db, result["id"])["settled_by"] == "judge"


async def test_confidence_below_the_threshold_is_a_disagreement(db: Path) -> None:
    models = replies(a="A\nCONFIDENCE: 0.2", b="B\nCONFIDENCE: 30%", c="C")
    result = await run(db, models, panel(ConcurrentOptions(reconcile="confidence", threshold=0.5)))
    assert result["status"] == "stopped" and result["stop_reason"] == "disagreement"
    assert "0.3 (b), is below the threshold 0.5" in result["error"]


async def test_no_stated_confidence_at_all_is_a_disagreement(db: Path) -> None:
    result = await run(db, replies(a="A", b="B", c="C"), panel(ConcurrentOptions(reconcile="confidence")))
    assert result["status"] == "stopped" and "no agent stated a confidence" in result["error"]


# -- failures ----------------------------------------------------------------------------------------------
async def test_a_failed_agent_is_left_out_of_the_vote(db: Path) -> None:
    models = replies(a="x", c="x")
    models["b"] = Down()
    result = await run(db, models, panel(ConcurrentOptions(reconcile="majority")))
    assert result["status"] == "succeeded" and result["output"] == "x"
    event = reconciled(db, result["id"])
    assert event["votes"] == {"x": 2} and [x["agent"] for x in event["answers"]] == ["a", "c"]
    assert "the model is down" in event["failed"]["b"]


async def test_the_run_fails_when_every_agent_fails(db: Path) -> None:
    result = await run(db, {n: Down() for n in "abc"}, panel(ConcurrentOptions(reconcile="majority")))
    assert result["status"] == "failed" and result["stop_reason"] == "all_agents_failed"
    assert "every agent failed" in result["error"] and "c: agent 'c' failed" in result["error"]


async def test_a_limit_stops_the_run_instead_of_losing_an_answer(db: Path) -> None:
    result = await run(
        db, replies(a="x", b="x", c="y"), panel(ConcurrentOptions()), limits=Limits(max_steps=2)
    )
    assert result["status"] == "stopped" and result["stop_reason"] == "max_steps"


# -- options and sub-teams ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"reconcile": "judge"}, "reconcile='judge' needs a judge agent"),
        ({"reconcile": "majority", "on_disagreement": "judge"}, "on_disagreement='judge' needs a judge"),
        ({"reconcile": "confidence", "threshold": 1.5}, "threshold"),
        ({"reconcile": "vote"}, "reconcile"),
        ({"quorum": 2}, "quorum: unknown field"),
    ],
)
def test_bad_options_are_refused_naming_the_field(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match="concurrent options") as caught:
        build_team(["a", "b"], "t", options)
    assert fragment in caught.value.message


async def test_a_concurrent_team_runs_as_one_member_of_another_pattern(db: Path) -> None:
    config = TeamConfig.model_validate(
        {
            "agents": {n: {"description": n, "instructions": n, "model": "scripted"} for n in NAMES},
            "teams": {
                "panel": {
                    "description": "a vote",
                    "pattern": "concurrent",
                    "agents": ["a", "b", "c"],
                    "options": {"reconcile": "majority"},
                }
            },
        }
    )
    models = replies(a="blue", b="Blue", c="red", d="done")
    result = await run(db, models, sequential(["panel", "d"], "pick a colour"), config=config)
    assert result["status"] == "succeeded" and result["output"] == "done"
    assert "blue" in models["d"].requests[0].messages[-1].text
    assert reconciled(db, result["id"])["votes"] == {"blue": 2, "red": 1}


def test_answers_are_normalised_for_the_vote() -> None:
    assert normalise("  The   Answer...  ") == "the answer"
    assert normalise("reasoning\nFINAL ANSWER: **Forty Two.**\nCONFIDENCE: 0.8") == "forty two"
    assert normalise("42\nCONFIDENCE: 0.8") == "42"


def test_stated_confidence_is_read_from_its_line() -> None:
    assert stated_confidence("x\nCONFIDENCE: 0.75") == 0.75
    assert stated_confidence("x\n**Confidence:** 85%") == 0.85
    assert stated_confidence("x\nCONFIDENCE: 7") is None  # out of range: not a confidence
    assert stated_confidence("I am confident") is None

"""Concurrent runs: real parallelism, and every reconciliation rule with its failure paths."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.errors import InvalidInputError, ProviderError
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.concurrent import Answer, ConcurrentOptions, build_team, concurrent
from orchestration.runtime import Runtime
from tests.conftest import team

pytestmark = pytest.mark.anyio
TEAM = team(
    a={"model": "scripted"},
    b={"model": "scripted"},
    c={"model": "scripted"},
    d={"model": "scripted"},
    e={"model": "scripted"},
    judge={"model": "scripted"},
)


class Down:
    name = "scripted"

    async def complete(self, request):
        raise ProviderError("the model is down", kind="server")


async def run(
    db: Path, models: dict, options: ConcurrentOptions, agents=("a", "b", "c")
) -> tuple[dict, Runtime]:
    rt = Runtime(TEAM, AuditLog(db), providers=lambda n, a, c: models[n])
    async with rt:
        run_id = await rt.start_run("concurrent", "t", concurrent(list(agents), "t", options))
        result = await rt.wait(run_id, 10, wake_on_pending=("approval",))
        if result["status"] == "awaiting_approval":
            (request,) = rt.pending.open_for(run_id, "approval")
            await rt.approvals.decide(request.id, "approve", "the first one", channel="tool")
            result = await rt.wait(run_id, 10)
    return result, rt


def replies(**by_agent: str) -> dict:
    models = {n: ScriptedModel([text]) for n, text in by_agent.items()}
    models.setdefault("judge", ScriptedModel(["the judge's merged answer"]))
    return models


async def test_agents_really_run_in_parallel(db: Path) -> None:
    models = {n: ScriptedModel(latency=0.3) for n in "abcde"}
    started = time.perf_counter()
    result, _ = await run(db, models, ConcurrentOptions(), agents="abcde")
    assert result["status"] == "succeeded"
    assert time.perf_counter() - started < 0.3 * 5 * 0.6


async def test_all_returns_every_answer_labelled(db: Path) -> None:
    result, _ = await run(db, replies(a="one", b="two", c="three"), ConcurrentOptions(reconcile="all"))
    assert result["output"] == "## a\none\n\n## b\ntwo\n\n## c\nthree"


async def test_majority_votes_on_normalised_answers(db: Path) -> None:
    models = replies(a="Paris.", b="  paris ", c="Lyon")
    result, _ = await run(db, models, ConcurrentOptions(reconcile="majority"))
    assert result["status"] == "succeeded" and result["output"] == "Paris."


async def test_a_majority_tie_is_escalated_to_a_human(db: Path) -> None:
    models = replies(a="yes", b="no", c="yes", d="no")
    result, _ = await run(
        db, models, ConcurrentOptions(reconcile="majority", on_disagreement="escalate"), agents="abcd"
    )
    assert result["status"] == "succeeded" and result["output"] == "yes"


async def test_a_majority_tie_can_fail_or_go_to_the_judge(db: Path) -> None:
    result, _ = await run(db, replies(a="yes", b="no"), ConcurrentOptions(reconcile="majority"), agents="ab")
    assert (
        result["status"] == "stopped" and result["stop_reason"] == "disagreement" and "tie" in result["error"]
    )
    options = ConcurrentOptions(reconcile="majority", on_disagreement="judge", judge="judge")
    result, _ = await run(db, replies(a="yes", b="no"), options, agents="ab")
    assert result["status"] == "succeeded" and result["output"] == "the judge's merged answer"


async def test_confidence_picks_the_highest_and_refuses_low_confidence(db: Path) -> None:
    models = replies(a="A\nCONFIDENCE: 0.4", b="B\nCONFIDENCE: 0.9", c="C")
    result, _ = await run(db, models, ConcurrentOptions(reconcile="confidence"))
    assert result["output"].startswith("B")
    models = replies(a="A\nCONFIDENCE: 0.2", b="B\nconfidence: 0.3", c="C")
    result, _ = await run(db, models, ConcurrentOptions(reconcile="confidence", threshold=0.5))
    assert result["status"] == "stopped" and "below the threshold" in result["error"]


async def test_a_failed_agent_is_left_out_and_all_failing_fails_the_run(db: Path) -> None:
    models = replies(a="x", c="x")
    models["b"] = Down()
    result, _ = await run(db, models, ConcurrentOptions(reconcile="majority"))
    assert result["status"] == "succeeded" and result["output"] == "x"
    result, _ = await run(db, {n: Down() for n in "abc"}, ConcurrentOptions())
    assert result["status"] == "failed" and "every agent failed" in result["error"]


def test_answers_normalise_and_state_confidence() -> None:
    answer = Answer("a", "Thinking...\nFINAL ANSWER:  The  Answer.\nCONFIDENCE: 0.75", "s")
    assert answer.normalised == "the answer" and answer.confidence == 0.75


def test_a_judge_rule_without_a_judge_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="judge"):
        build_team(["a", "b"], "t", {"reconcile": "judge"})

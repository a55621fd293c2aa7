"""Planner-executor runs: DAG execution in parallel, plan validation, evaluation and replans, dry runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.errors import ProviderError
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.plan import PlanError, PlanOptions, plan_and_execute, validate_plan
from orchestration.runtime import Runtime
from tests.conftest import team

pytestmark = pytest.mark.anyio
TEAM = team(
    planner={"model": "scripted"},
    judge={"model": "scripted"},
    x={"model": "anthropic:claude-sonnet-4-5", "max_tokens": 1000},
    y={"model": "scripted"},
)


def plan(*subtasks: tuple[str, str, list[str]]) -> str:
    return json.dumps(
        {"subtasks": [{"id": i, "agent": a, "task": f"do {i}", "depends_on": d} for i, a, d in subtasks]}
    )


DIAMOND = plan(("a", "x", []), ("b", "x", ["a"]), ("c", "y", ["a"]), ("d", "y", ["b", "c"]))


def worker(latency: float = 0.0) -> ScriptedModel:
    def respond(request: ModelRequest) -> str:
        first = request.messages[-1].text.split("Your subtask: do ")[1].split()[0]
        return f"out-{first}"

    return ScriptedModel(respond=respond, latency=latency)


async def run(db: Path, models: dict, options: PlanOptions) -> dict:
    async with Runtime(TEAM, AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        body = plan_and_execute("launch", ["x", "y"], options)
        return await rt.wait(await rt.start_run("plan", "launch", body), 10)


async def test_a_diamond_runs_in_dependency_order_with_the_middle_in_parallel(db: Path) -> None:
    models = {"planner": ScriptedModel([DIAMOND]), "x": worker(0.3), "y": worker(0.3)}
    started = time.perf_counter()
    result = await run(db, models, PlanOptions(planner="planner"))
    elapsed = time.perf_counter() - started
    assert result["status"] == "succeeded" and result["output"] == "out-d"
    assert elapsed < 4 * 0.3 * 0.95  # b and c overlapped: three latencies, not four
    d_prompt = next(r for r in models["y"].requests if "do d" in r.messages[-1].text).messages[-1].text
    assert "<output of b>\nout-b" in d_prompt and "<output of c>\nout-c" in d_prompt


async def test_a_plan_with_a_cycle_is_asked_for_again_then_fails_clearly(db: Path) -> None:
    cyclic = plan(("a", "x", ["c"]), ("b", "x", ["a"]), ("c", "y", ["b"]))
    models = {"planner": ScriptedModel([cyclic, cyclic]), "x": worker(), "y": worker()}
    result = await run(db, models, PlanOptions(planner="planner"))
    assert result["status"] == "failed" and "invalid twice" in result["error"] and "cycle" in result["error"]
    assert "Your previous plan was invalid" in models["planner"].requests[1].messages[-1].text
    assert not models["x"].requests


async def test_malformed_json_then_a_valid_plan_on_retry(db: Path) -> None:
    models = {
        "planner": ScriptedModel(["here is my plan: step one, step two", plan(("a", "y", []))]),
        "x": worker(),
        "y": worker(),
    }
    result = await run(db, models, PlanOptions(planner="planner"))
    assert result["status"] == "succeeded" and result["output"] == "out-a"


def test_plan_validation_names_the_problem() -> None:
    with pytest.raises(PlanError, match="unknown agent 'z'"):
        validate_plan(json.loads(plan(("a", "z", []))), ["x", "y"])
    with pytest.raises(PlanError, match="a -> b -> a"):
        validate_plan(json.loads(plan(("a", "x", ["b"]), ("b", "x", ["a"]))), ["x"])
    with pytest.raises(PlanError, match="unknown subtask"):
        validate_plan(json.loads(plan(("a", "x", ["q"]))), ["x"])
    with pytest.raises(PlanError, match="subtasks"):
        validate_plan({"subtasks": []}, ["x"])


async def test_a_low_score_replans_with_the_feedback_then_passes(db: Path) -> None:
    models = {
        "planner": ScriptedModel([plan(("a", "x", [])), plan(("a", "x", []), ("b", "y", ["a"]))]),
        "judge": ScriptedModel(['{"score": 0.3, "feedback": "add a review"}', '{"score": 0.9}']),
        "x": worker(),
        "y": worker(),
    }
    result = await run(db, models, PlanOptions(planner="planner", evaluator="judge"))
    assert result["status"] == "succeeded" and result["output"] == "out-b"
    assert "add a review" in models["planner"].requests[1].messages[-1].text


async def test_max_replans_stops_with_the_best_result(db: Path) -> None:
    models = {
        "planner": ScriptedModel(respond=lambda r: plan(("a", "x", []))),
        "judge": ScriptedModel(respond=lambda r: '{"score": 0.2, "feedback": "no"}'),
        "x": worker(),
        "y": worker(),
    }
    result = await run(db, models, PlanOptions(planner="planner", evaluator="judge", max_replans=1))
    assert (
        result["status"] == "stopped"
        and result["stop_reason"] == "max_replans"
        and result["output"] == "out-a"
    )


async def test_a_failed_subtask_skips_its_dependents(db: Path) -> None:
    class Down:
        name = "scripted"

        async def complete(self, request):
            raise ProviderError("down", kind="server")

    models = {"planner": ScriptedModel([DIAMOND]), "x": Down(), "y": worker()}
    result = await run(db, models, PlanOptions(planner="planner"))
    assert result["status"] == "succeeded" and "not done: skipped" in result["output"]


async def test_a_dry_run_estimates_without_executing(db: Path) -> None:
    models = {"planner": ScriptedModel([DIAMOND]), "x": worker(), "y": worker()}
    result = await run(db, models, PlanOptions(planner="planner", dry_run=True))
    assert result["status"] == "succeeded" and result["stop_reason"] == "dry_run"
    estimate = json.loads(result["output"])["estimate"]
    assert [s["id"] for s in estimate["subtasks"]] == ["a", "b", "c", "d"]
    assert estimate["subtasks"][0]["cost_usd"] > 0  # x is on a priced Anthropic model
    assert estimate["cost_usd"] is None  # y is scripted: no price, so no total
    assert not models["x"].requests and not models["y"].requests

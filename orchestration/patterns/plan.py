"""Planner-executor: plan -> execute as a DAG -> evaluate -> replan.

The planner returns an explicit plan (subtasks, the agent for each, dependencies), validated against a schema
and checked for cycles; a bad plan is asked for again once with the error. Independent subtasks run in
parallel. An optional evaluator scores the result; below the threshold the planner revises the plan with the
feedback, up to `max_replans`. `dry_run` returns the plan and its estimated cost without executing it.
The result is the output of the plan's final subtasks (those nothing depends on), under their ids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.config import TeamConfig, describe_validation_error, validated
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import GuardrailTripped
from orchestration.models.base import Usage
from orchestration.models.pricing import load_prices
from orchestration.outcomes import StepFailed
from orchestration.parsing import extract_json


class Subtask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., pattern=r"^[A-Za-z0-9_\-]{1,32}$", description="Unique id, e.g. s1.")
    agent: str = Field(..., description="The executor that does it.")
    task: str = Field(..., min_length=1, description="What to do.")
    depends_on: list[str] = Field(default_factory=list, description="Ids whose outputs it needs.")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subtasks: list[Subtask] = Field(..., min_length=1, max_length=50)


class PlanOptions(BaseModel):
    """Options of a planner-executor run."""

    model_config = ConfigDict(extra="forbid")

    planner: str = Field(..., min_length=1, description="The planner agent.")
    evaluator: str | None = Field(None, description="An evaluator agent that scores the result (optional).")
    threshold: float = Field(0.7, ge=0, le=1, description="Lowest passing score from the evaluator.")
    max_replans: int = Field(2, ge=0, le=10, description="Plan revisions after a failing evaluation.")
    dry_run: bool = Field(False, description="Return the plan and its estimated cost without executing it.")


class PlanError(ValueError):
    """A plan that does not validate; the message says what is wrong."""


def validate_plan(data: Any, executors: Sequence[str]) -> Plan:
    """A valid plan from the planner's JSON, or `PlanError` naming the problem (unknown agent, cycle...)."""
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(describe_validation_error(exc)) from None
    ids = [s.id for s in plan.subtasks]
    duplicate = sorted({i for i in ids if ids.count(i) > 1})
    if duplicate:
        raise PlanError(f"subtask ids must be unique: {', '.join(duplicate)}")
    for s in plan.subtasks:
        if s.agent not in executors:
            raise PlanError(f"subtask {s.id}: unknown agent {s.agent!r}; use one of {', '.join(executors)}")
        missing = [d for d in s.depends_on if d not in ids]
        if missing:
            raise PlanError(f"subtask {s.id} depends on unknown subtask(s) {', '.join(missing)}")
    cycle = find_cycle(plan)
    if cycle:
        raise PlanError(f"the plan has a cycle: {' -> '.join(cycle)}")
    return plan


def find_cycle(plan: Plan) -> list[str] | None:
    """A dependency cycle as a path (s1 -> s2 -> s1), or None."""
    deps = {s.id: s.depends_on for s in plan.subtasks}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in deps[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if state.get(dep) is None and (found := visit(dep, [*path, dep])):
                return found
        state[node] = 2
        return None

    for node in deps:
        if state.get(node) is None and (found := visit(node, [node])):
            return found
    return None


def estimate(plan: Plan, goal: str, config: TeamConfig) -> dict[str, Any]:
    """Estimated tokens and cost of executing `plan` (prompts at 4 characters a token, replies at max_tokens)."""
    prices = load_prices()
    rows, total_cost, known = [], 0.0, True
    for s in plan.subtasks:
        agent = config.agents.get(s.agent)
        max_out = agent.max_tokens if agent else 2048
        instructions = agent.instructions if agent else ""
        input_tokens = (len(goal) + len(s.task) + len(instructions)) // 4 + max_out * len(s.depends_on)
        model = (
            agent.model.removeprefix("anthropic:") if agent and agent.model.startswith("anthropic:") else None
        )
        if agent and agent.model == "auto":
            model = config.default_model
        cost = prices.cost(model, Usage(input_tokens, max_out)) if model else None
        known = known and cost is not None
        total_cost += cost or 0.0
        rows.append(
            {
                "id": s.id,
                "agent": s.agent,
                "input_tokens": input_tokens,
                "output_tokens": max_out,
                "cost_usd": cost,
            }
        )
    return {
        "subtasks": rows,
        "input_tokens": sum(r["input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "cost_usd": round(total_cost, 6) if known else None,
        "note": "upper estimate: every reply at the agent's max_tokens; cost null when a model's price is unknown",
    }


def plan_and_execute(goal: str, executors: Sequence[str], options: PlanOptions) -> RunBody:
    """A run body in which the planner plans `goal` for `executors` and the plan is executed."""

    async def body(ctx: RunContext) -> Outcome:
        feedback, best, best_score = "", "", -1.0
        for round_ in range(options.max_replans + 1):
            plan, error = await get_plan(ctx, goal, executors, options.planner, feedback, round_)
            if plan is None:
                return Outcome(best, "failed", "invalid_plan", error)
            await ctx.record("plan", {"round": round_, "plan": plan.model_dump()}, durable="later")
            if options.dry_run:
                cost = estimate(plan, goal, ctx.config)
                text = json.dumps({"plan": plan.model_dump(), "estimate": cost}, indent=2)
                return Outcome(text, reason="dry_run", data={"plan": plan.model_dump(), "estimate": cost})
            result = await execute(ctx, goal, plan, round_)
            if options.evaluator is None:
                return Outcome(result, data={"rounds": round_ + 1})
            score, feedback = await evaluate(ctx, goal, result, options.evaluator, round_)
            if score > best_score:
                best, best_score = result, score
            if score >= options.threshold:
                return Outcome(result, data={"rounds": round_ + 1, "score": score})
        return Outcome(
            best,
            "stopped",
            "max_replans",
            f"the best score {best_score} stayed below {options.threshold} after "
            f"{options.max_replans} replans",
            data={"score": best_score},
        )

    return body


async def get_plan(
    ctx: RunContext, goal: str, executors: Sequence[str], planner: str, feedback: str, round_: int
) -> tuple[Plan | None, str]:
    """Ask for a plan; ask once more with the validation error; `(None, why)` if still bad."""
    team = "\n".join(
        f"- {a}: {ctx.config.agents[a].description if a in ctx.config.agents else 'a team'}"
        for a in executors
    )
    prompt = (
        f"Goal: {goal}\n\nExecutors:\n{team}\n\n"
        + (f"Feedback on the previous result: {feedback}\nRevise the plan.\n\n" if feedback else "")
        + 'Reply with a plan as JSON only: {"subtasks": [{"id": "s1", "agent": "<executor>", "task": "...", '
        '"depends_on": []}]}. Subtasks without dependencies between them run in parallel.'
    )
    error = ""
    for attempt in range(2):
        retry = (
            f"\n\nYour previous plan was invalid: {error}. Fix it and reply with the JSON only."
            if error
            else ""
        )
        reply = await ctx.step(planner, prompt + retry, key=f"r{round_}.plan" + (".retry" if attempt else ""))
        try:
            return validate_plan(extract_json(reply.output), executors), ""
        except (ValueError, PlanError) as exc:
            error = str(exc)
            await ctx.record(
                "plan_rejected", {"round": round_, "attempt": attempt + 1, "error": error}, durable="later"
            )
    return None, f"the planner's plan was invalid twice; last problem: {error}"


async def execute(ctx: RunContext, goal: str, plan: Plan, round_: int) -> str:
    """Run the plan as a DAG; returns the final subtasks' outputs."""
    outputs: dict[str, str] = {}
    failed: dict[str, str] = {}
    done = {s.id: asyncio.Event() for s in plan.subtasks}
    tripped: list[GuardrailTripped] = []

    async def run(s: Subtask) -> None:
        try:
            for dep in s.depends_on:
                await done[dep].wait()
            broken = [d for d in s.depends_on if d in failed]
            if broken:
                failed[s.id] = f"skipped: {', '.join(broken)} failed"
                await ctx.record(
                    "subtask_finished",
                    {"id": s.id, "status": "skipped", "why": failed[s.id]},
                    durable="later",
                )
                return
            inputs = "\n\n".join(f"<output of {d}>\n{outputs[d]}\n</output>" for d in s.depends_on)
            prompt = f"Overall goal: {goal}\n\nYour subtask: {s.task}" + (f"\n\n{inputs}" if inputs else "")
            try:
                result = await ctx.step(s.agent, prompt, key=f"r{round_}.{s.id}")
            except StepFailed as exc:
                failed[s.id] = exc.message
                await ctx.record(
                    "subtask_finished", {"id": s.id, "status": "failed", "why": exc.message}, durable="later"
                )
                return
            outputs[s.id] = result.output
            await ctx.record(
                "subtask_finished",
                {"id": s.id, "status": "succeeded"},
                step_id=result.step_id,
                durable="later",
            )
        except GuardrailTripped as exc:
            tripped.append(exc)
            failed[s.id] = exc.message
        finally:
            done[s.id].set()

    async with asyncio.TaskGroup() as tg:  # native tasks: a fraction of anyio's per-task cost
        for s in plan.subtasks:
            tg.create_task(run(s))
    if tripped:
        raise tripped[0]
    needed = {d for s in plan.subtasks for d in s.depends_on}
    finals = [s.id for s in plan.subtasks if s.id not in needed]
    if len(finals) == 1 and finals[0] in outputs:
        return outputs[finals[0]]
    return "\n\n".join(
        f"## {i}\n{outputs[i] if i in outputs else f'(not done: {failed.get(i)})'}" for i in finals
    )


async def evaluate(ctx: RunContext, goal: str, result: str, evaluator: str, round_: int) -> tuple[float, str]:
    """The evaluator's score (0..1) and feedback; an unparseable verdict scores 0 with that as feedback."""
    reply = await ctx.step(
        evaluator,
        f"Goal: {goal}\n\nResult:\n{result}\n\nScore how well the result meets the goal. Reply with JSON only: "
        '{"score": <0 to 1>, "feedback": "what to improve"}',
        key=f"r{round_}.evaluate",
    )
    try:
        verdict = extract_json(reply.output)
        score = max(0.0, min(1.0, float(verdict["score"])))
        feedback = str(verdict.get("feedback", ""))
    except (ValueError, KeyError, TypeError):
        score, feedback = 0.0, "the evaluator's verdict could not be read; make the result clearer"
    await ctx.record("evaluation", {"round": round_, "score": score, "feedback": feedback}, durable="later")
    return score, feedback


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    opts = validated(PlanOptions, options, "plan options")
    executors = [m for m in members if m not in (opts.planner, opts.evaluator)]
    return plan_and_execute(task, executors, opts)

"""Magentic: a manager plans with a task ledger and steers each round with a progress ledger.

Task ledger (on plan and replan): facts, guesses and a plan. Progress ledger (every round): is the request
satisfied, are we looping, is progress being made, who speaks next with which instruction. Rounds without
progress are stalls; past `max_stalls` the manager replans (a reset), past `max_resets` or `max_rounds` the run
stops with its best partial answer. Every ledger is recorded in the audit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.config import describe_validation_error
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import InvalidInputError
from orchestration.parsing import extract_json


class MagenticOptions(BaseModel):
    """Options of a magentic run."""

    model_config = ConfigDict(extra="forbid")

    manager: str = Field(..., min_length=1, description="The manager agent that keeps the ledgers.")
    max_rounds: int | None = Field(
        None, ge=1, le=200, description="Rounds before stopping (default: max_turns)."
    )
    max_stalls: int = Field(3, ge=0, le=50, description="Rounds without progress before the manager replans.")
    max_resets: int = Field(2, ge=0, le=20, description="Replans before the run stops.")


class TaskLedger(BaseModel):
    facts: list[str] = Field(default_factory=list)
    guesses: list[str] = Field(default_factory=list)
    plan: list[str] = Field(default_factory=list)


class ProgressLedger(BaseModel):
    is_request_satisfied: bool = False
    is_in_loop: bool = False
    is_progress_being_made: bool = True
    next_speaker: str = ""
    instruction: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Work:
    agent: str
    instruction: str
    output: str


def _team(ctx: RunContext, agents: Sequence[str]) -> str:
    agents_cfg = ctx.config.agents
    return "\n".join(f"- {a}: {agents_cfg[a].description if a in agents_cfg else 'a team'}" for a in agents)


def _work(work: Sequence[Work]) -> str:
    if not work:
        return "No work has been done yet."
    return "\n\n".join(f"[{w.agent}] asked: {w.instruction}\nanswered: {w.output}" for w in work)


async def _ask_json(ctx: RunContext, manager: str, prompt: str, key: str, model: type[BaseModel]) -> Any:
    """Ask the manager for JSON of `model`'s shape; ask once more with the error; None if still bad."""
    error = ""
    for attempt in range(2):
        suffix = f"\n\nYour previous reply was not valid: {error}. Reply with the JSON only." if error else ""
        reply = await ctx.step(manager, prompt + suffix, key=key if attempt == 0 else f"{key}.retry")
        try:
            return model.model_validate(extract_json(reply.output))
        except (ValueError, ValidationError) as exc:
            error = str(exc).splitlines()[0]
    return None


def magentic(goal: str, agents: Sequence[str], options: MagenticOptions) -> RunBody:
    """A run body in which the manager steers `agents` toward `goal`."""

    async def body(ctx: RunContext) -> Outcome:
        max_rounds = options.max_rounds or ctx.budget.limits.max_turns
        work: list[Work] = []
        resets, stalls, rounds = 0, 0, 0
        ledger = await plan(ctx, goal, agents, options.manager, work, resets)
        while True:
            if rounds >= max_rounds:
                return stop(
                    work, "max_rounds", f"the goal was not reached in {max_rounds} rounds (max_rounds)"
                )
            rounds += 1
            progress = await _ask_json(
                ctx,
                options.manager,
                progress_prompt(ctx, goal, agents, ledger, work),
                f"r{rounds}.progress",
                ProgressLedger,
            )
            stalled, why = _stalled(progress, agents)
            stalls = stalls + 1 if stalled else 0
            await ctx.record(
                "progress_ledger",
                {
                    "round": rounds,
                    "ledger": progress.model_dump() if progress else None,
                    "stalled": stalled,
                    "why": why,
                    "stalls": stalls,
                },
            )
            if progress is not None and progress.is_request_satisfied:
                final = await ctx.step(
                    options.manager,
                    f"Goal: {goal}\n\n{_work(work)}\n\nThe goal is reached. "
                    "Write the final answer for the user.",
                    key="final",
                )
                return Outcome(final.output, data={"rounds": rounds, "resets": resets})
            if stalls > options.max_stalls:
                resets += 1
                await ctx.record("magentic_reset", {"round": rounds, "resets": resets, "stalls": stalls})
                if resets > options.max_resets:
                    return stop(
                        work, "max_resets", f"no progress after {options.max_resets} replans (max_resets)"
                    )
                ledger = await plan(ctx, goal, agents, options.manager, work, resets)
                stalls = 0
                continue
            if progress is not None and progress.next_speaker in agents:
                result = await ctx.step(
                    progress.next_speaker,
                    f"Goal: {goal}\nPlan: {'; '.join(ledger.plan)}\n\n{_work(work)}\n\nYour instruction: "
                    f"{progress.instruction}",
                    key=f"r{rounds}.{progress.next_speaker}",
                )
                work.append(Work(progress.next_speaker, progress.instruction, result.output))

    return body


def _stalled(progress: ProgressLedger | None, agents: Sequence[str]) -> tuple[bool, str]:
    if progress is None:
        return True, "the manager's progress ledger was not valid JSON"
    if progress.is_request_satisfied:
        return False, "satisfied"
    if progress.next_speaker not in agents:
        return True, f"unknown next speaker {progress.next_speaker!r}"
    if progress.is_in_loop:
        return True, "the manager says the work is looping"
    if not progress.is_progress_being_made:
        return True, "no progress"
    return False, "progress"


async def plan(
    ctx: RunContext, goal: str, agents: Sequence[str], manager: str, work: Sequence[Work], resets: int
) -> TaskLedger:
    """Build (or, after a reset, rebuild) the task ledger."""
    again = (
        "" if not resets else f"\n\nThe previous plan stalled. What was done so far:\n{_work(work)}\nReplan."
    )
    prompt = (
        f"Goal: {goal}\n\nTeam:\n{_team(ctx, agents)}{again}\n\nWrite the task ledger as JSON only: "
        '{"facts": [...given or verified facts...], "guesses": [...educated guesses...], "plan": [...steps...]}'
    )
    ledger = await _ask_json(ctx, manager, prompt, f"plan{resets}", TaskLedger) or TaskLedger(plan=[goal])
    await ctx.record("task_ledger", {"resets": resets, "ledger": ledger.model_dump()})
    return ledger


def progress_prompt(
    ctx: RunContext, goal: str, agents: Sequence[str], ledger: TaskLedger, work: Sequence[Work]
) -> str:
    return (
        f"Goal: {goal}\nTask ledger: {json.dumps(ledger.model_dump())}\n\nTeam:\n{_team(ctx, agents)}\n\n"
        f"{_work(work)}\n\nUpdate the progress ledger. Reply with JSON only: "
        '{"is_request_satisfied": bool, "is_in_loop": bool, "is_progress_being_made": bool, '
        '"next_speaker": "<team member>", "instruction": "...", "reason": "..."}'
    )


def stop(work: Sequence[Work], reason: str, error: str) -> Outcome:
    """Stop with the best partial answer: the last work product (no extra model call)."""
    partial = work[-1].output if work else ""
    return Outcome(partial, "stopped", reason, error, data={"work": len(work)})


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    try:
        opts = MagenticOptions.model_validate(options)
    except ValidationError as exc:
        raise InvalidInputError(f"magentic options: {describe_validation_error(exc)}") from None
    return magentic(task, [m for m in members if m != opts.manager], opts)

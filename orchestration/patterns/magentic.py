"""Magentic: a manager plans with a task ledger and steers every round with a progress ledger.

Outer loop: the manager writes the TASK LEDGER (facts, guesses, plan) from the goal and the team. Inner loop:
each round the manager fills a PROGRESS LEDGER (is the request satisfied, is the work looping, is progress
being made, who acts next with which instruction) and the chosen agent carries the instruction out, seeing the
goal, the plan and the work of the current loop as history. A round without progress (or a loop) is a stall;
progress resets the count. Past `max_stalls` the manager replans (a reset: it updates the ledger with what was
learned and the inner loop starts over); past `max_resets` resets, or at `max_rounds`, the run stops with the
manager's best partial answer (or, if it cannot give one, the last work product).

Robustness: a ledger that does not parse is asked for once more with the error; still bad, the round is a stall
(a task ledger keeps the previous one). An unknown next speaker is a stall. A failed agent step is shown to the
manager as the round's work product, so it can redirect; a failed manager step fails the run (nobody steers).
A limit (`GuardrailTripped`) stops the run with the last work product. Every ledger, reset and the termination
are recorded in the audit (`task_ledger`, `progress_ledger`, `magentic_reset`, `magentic_terminated`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestration.config import describe_validation_error, validated
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import GuardrailTripped, InvalidInputError
from orchestration.models.base import Message
from orchestration.outcomes import StepFailed
from orchestration.parsing import extract_json
from orchestration.patterns.group_chat import describe, speak
from orchestration.visibility import visible_text

MAX_ROUNDS = 200


class MagenticOptions(BaseModel):
    """How a magentic run is steered."""

    model_config = ConfigDict(extra="forbid")

    manager: str = Field(..., min_length=1, description="The manager agent that keeps both ledgers.")
    max_rounds: int | None = Field(
        None,
        ge=1,
        le=MAX_ROUNDS,
        description="Rounds (progress ledgers) in the whole run, resets included (default: the run's max_turns).",
    )
    max_stalls: int = Field(
        3, ge=0, le=50, description="Stalled rounds in a row tolerated; one more makes the manager replan."
    )
    max_resets: int = Field(
        2, ge=0, le=20, description="Replans allowed; one more stops the run (reason max_resets)."
    )


class TaskLedger(BaseModel):
    """The manager's picture of the task: what is known, what is assumed, and the plan."""

    facts: list[str] = Field(default_factory=list, description="Given or verified facts.")
    guesses: list[str] = Field(default_factory=list, description="Educated guesses still to verify.")
    plan: list[str] = Field(default_factory=list, description="The steps, in order.")


class ProgressLedger(BaseModel):
    """The manager's verdict on one round and its next instruction."""

    is_request_satisfied: bool = False
    is_in_loop: bool = False
    is_progress_being_made: bool = True
    next_speaker: str | None = None
    instruction: str = ""
    reason: str = ""

    @field_validator("*", mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        # Magentic-One's own format nests each answer as {"reason": ..., "answer": ...}: accept it too
        if isinstance(value, dict) and "answer" in value:
            return value["answer"]
        return value


TASK_LEDGER_FORMAT = (
    '{"facts": ["<given or verified fact>", ...], "guesses": ["<educated guess>", ...], '
    '"plan": ["<step, and who does it>", ...]}'
)
PROGRESS_LEDGER_FORMAT = (
    '{"is_request_satisfied": <bool>, "is_in_loop": <bool>, "is_progress_being_made": <bool>, '
    '"next_speaker": "<team member>", "instruction": "<what they should do now>", "reason": "<why>"}'
)


@dataclass(frozen=True)
class Work:
    """One round's work product."""

    round: int
    agent: str
    instruction: str
    output: str
    step_id: str
    failed: bool = False


# -- what each reader sees -----------------------------------------------------------------------------------------


def transcript(
    ctx: RunContext, goal: str, ledger: TaskLedger, work: Sequence[Work], reader: str, *, orchestrator: bool
) -> list[Message]:
    """The goal, the plan and the work so far as `reader` may see them (its own outputs as `assistant`)."""
    groups = ctx.config.groups()
    plan = "\n".join(f"{i}. {s}" for i, s in enumerate(ledger.plan, 1)) or "(no plan)"
    messages = [Message("user", f"Goal: {goal}\n\nPlan:\n{plan}")]
    for w in work:
        ask = f"[round {w.round}] {w.agent} was asked: {w.instruction}"
        text = visible_text(
            w.output, groups.get(w.agent), groups.get(reader), ctx.control, orchestrator=orchestrator
        )
        if w.agent == reader:
            messages += [Message("user", ask), Message("assistant", text)]
        else:
            messages.append(Message("user", f"{ask}\n[{w.agent}]: {text}"))
    merged: list[Message] = []
    for m in messages:  # adjacent messages of one role become one
        if merged and merged[-1].role == m.role:
            merged[-1] = Message(m.role, f"{merged[-1].text}\n\n{m.text}")
        else:
            merged.append(m)
    return merged


def team_list(ctx: RunContext, agents: Sequence[str]) -> str:
    """`- name: description` per team member, for the manager."""
    return "\n".join(describe(ctx, a) for a in agents)


def pick_speaker(name: str | None, agents: Sequence[str]) -> str | None:
    """The team member the manager named (exact, else a unique case-insensitive match), or None."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    if name in agents:
        return name
    folded = [a for a in agents if a.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


# -- the manager ---------------------------------------------------------------------------------------------------

L = TypeVar("L", TaskLedger, ProgressLedger)


@dataclass(frozen=True)
class Asked:
    """A ledger as parsed from the manager (None if it never parsed), the step that wrote it, and the error."""

    ledger: Any
    step_id: str
    error: str | None = None


async def ask_ledger(
    ctx: RunContext,
    manager: str,
    prompt: str,
    *,
    key: str,
    history: Sequence[Message],
    shape: type[L],
    what: str,
) -> Asked:
    """Ask the manager for a `shape` ledger; on a bad reply ask once more, showing it the error."""
    result = await speak(ctx, manager, prompt, key=key, history=history)
    ledger, error = _parse(result.output, shape)
    if ledger is not None:
        return Asked(ledger, result.step_id)
    retry = (
        f"Your reply could not be used as the {what}: {error}.\n"
        f"Reply again with the {what} JSON object only, in this format: "
        f"{TASK_LEDGER_FORMAT if shape is TaskLedger else PROGRESS_LEDGER_FORMAT}"
    )
    again = [*history, Message("user", prompt), Message("assistant", result.output or "(empty)")]
    result = await speak(ctx, manager, retry, key=f"{key}.retry", history=again)
    ledger, error = _parse(result.output, shape)
    return Asked(ledger, result.step_id, None if ledger is not None else error)


def _parse(text: str, shape: type[L]) -> tuple[L | None, str]:
    try:
        value = extract_json(text)
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(value, dict):
        return None, "the reply is not a JSON object"
    try:
        return shape.model_validate(value), ""
    except ValidationError as exc:
        return None, describe_validation_error(exc)


# -- the run -------------------------------------------------------------------------------------------------------


def magentic(goal: str, agents: Sequence[str], options: MagenticOptions) -> RunBody:
    """A run body in which `options.manager` steers `agents` toward `goal` with task and progress ledgers."""
    agents = list(agents)
    if not agents:
        raise InvalidInputError("agents: the manager needs at least one agent to direct")
    if len(set(agents)) != len(agents):
        raise InvalidInputError("agents: list each agent once")
    if options.manager in agents:
        raise InvalidInputError(
            f"agents: {options.manager!r} is the manager; list only the agents it directs, or name another manager"
        )
    manager = options.manager

    async def body(ctx: RunContext) -> Outcome:
        max_rounds = options.max_rounds or ctx.budget.limits.max_turns
        sees_all = ctx.config.groups().get(manager) is None  # the manager outside every group orchestrates
        work: list[Work] = []
        start = 0  # first work item of the current inner loop (a reset starts the loop over)
        rounds = resets = stalls = 0
        ledger = TaskLedger()

        def seen(reader: str, orchestrator: bool = False) -> list[Message]:
            return transcript(ctx, goal, ledger, work[start:], reader, orchestrator=orchestrator)

        def data(**extra: Any) -> dict[str, Any]:
            return {
                "rounds": rounds,
                "resets": resets,
                "task_ledger": ledger.model_dump(),
                "speakers": [w.agent for w in work],
                **extra,
            }

        async def finish(why: str, step_id: str | None, **extra: Any) -> None:
            await ctx.record(
                "magentic_terminated",
                {"round": rounds, "resets": resets, "why": why, **extra},
                step_id=step_id,
                durable="later",
            )

        async def stopped(reason: str, error: str) -> Outcome:
            # the partial answer sums up all the work, not only the current loop's
            history = transcript(ctx, goal, ledger, work, manager, orchestrator=sees_all)
            key = f"{rounds}.{manager}:partial"
            output, how, step_id = await best_partial(ctx, manager, error, work, history, key=key)
            await finish(reason, step_id, output_from=how)
            return Outcome(
                output, "stopped", reason, f"{error}; the output is {how}", data=data(output_from=how)
            )

        try:
            ledger = await plan(ctx, goal, agents, manager, ledger, seen(manager, sees_all), resets, None)
            while True:
                if rounds >= max_rounds:
                    error = f"the goal was not reached within max_rounds={max_rounds}"
                    return await stopped("max_rounds", error)
                rounds += 1
                asked = await ask_ledger(
                    ctx,
                    manager,
                    progress_prompt(ctx, agents, rounds),
                    key=f"{rounds}.{manager}:progress",
                    history=seen(manager, sees_all),
                    shape=ProgressLedger,
                    what="progress ledger",
                )
                progress: ProgressLedger | None = asked.ledger
                speaker = pick_speaker(progress.next_speaker, agents) if progress else None
                stalled, why = judge(progress, speaker, asked.error)
                stalls = stalls + 1 if stalled else 0
                await ctx.record(
                    "progress_ledger",
                    {
                        "round": rounds,
                        "ledger": progress.model_dump() if progress else None,
                        "stalled": stalled,
                        "why": why,
                        "stalls": stalls,
                        "resets": resets,
                    },
                    step_id=asked.step_id,
                    durable="later",
                )
                if progress is not None and progress.is_request_satisfied:
                    final = await speak(
                        ctx,
                        manager,
                        "The request is satisfied. Write the final answer for the user from the work above: "
                        "the answer itself, not a report on the process.",
                        key=f"{rounds}.{manager}:final",
                        history=seen(manager, sees_all),
                    )
                    await finish("satisfied", final.step_id, reason=progress.reason)
                    return Outcome(final.output, data=data())
                if stalls > options.max_stalls:
                    resets += 1
                    action = "stop" if resets > options.max_resets else "replan"
                    await ctx.record(
                        "magentic_reset",
                        {"round": rounds, "reset": resets, "stalls": stalls, "why": why, "action": action},
                        step_id=asked.step_id,
                        durable="later",
                    )
                    if action == "stop":
                        error = (
                            f"no progress after {options.max_resets} replan(s) (max_resets={options.max_resets}); "
                            f"last stall: {why}"
                        )
                        return await stopped("max_resets", error)
                    ledger = await plan(
                        ctx, goal, agents, manager, ledger, seen(manager, sees_all), resets, why
                    )
                    start, stalls = len(work), 0
                    continue
                if progress is not None and speaker is not None:
                    work.append(await execute(ctx, speaker, progress.instruction, rounds, seen(speaker)))
        except GuardrailTripped as exc:
            # a limit leaves no room for more model calls: the last work product is the partial answer
            await finish(exc.limit, work[-1].step_id if work else None)
            partial = next((w.output for w in reversed(work) if not w.failed), "")
            return Outcome(partial, "stopped", exc.limit, exc.message, data=data())

    return body


def judge(progress: ProgressLedger | None, speaker: str | None, error: str | None) -> tuple[bool, str]:
    """(stalled, why) for one round's progress ledger."""
    if progress is None:
        return True, f"the progress ledger was unusable twice: {error}"
    if progress.is_request_satisfied:
        return False, "the request is satisfied"
    if speaker is None:
        return True, f"the manager named {progress.next_speaker!r}, who is not on the team"
    if progress.is_in_loop:
        return True, f"the work is looping: {progress.reason}" if progress.reason else "the work is looping"
    if not progress.is_progress_being_made:
        return True, f"no progress: {progress.reason}" if progress.reason else "no progress"
    return False, "progress"


async def plan(
    ctx: RunContext,
    goal: str,
    agents: Sequence[str],
    manager: str,
    previous: TaskLedger,
    history: Sequence[Message],
    resets: int,
    why: str | None,
) -> TaskLedger:
    """Write the task ledger (`why` None) or, after a reset, update it with what the stalled loop taught."""
    team = team_list(ctx, agents)
    shown: Sequence[Message] = ()  # the first plan is made before any work: no history
    if why is None:
        prompt = f"Goal: {goal}\n\nTeam:\n{team}\n\nWrite the TASK LEDGER for this goal."
    else:
        prompt = (
            f"The work has stalled ({why}). Team:\n{team}\n\nPrevious task ledger: "
            f"{json.dumps(previous.model_dump())}\n\nUpdate the TASK LEDGER: keep the facts, add what was learned, "
            "revise the guesses, and write a new plan that avoids what did not work."
        )
        shown = history
    prompt += f"\nReply with JSON only: {TASK_LEDGER_FORMAT}"
    asked = await ask_ledger(
        ctx,
        manager,
        prompt,
        key=f"plan{resets}.{manager}",
        history=shown,
        shape=TaskLedger,
        what="task ledger",
    )
    # an unusable ledger never stops the run: keep the previous one (or plan to work on the goal itself)
    ledger = asked.ledger or (previous if previous.plan else TaskLedger(plan=[goal]))
    await ctx.record(
        "task_ledger",
        {
            "reset": resets,
            "replan": why is not None,
            "ledger": ledger.model_dump(),
            "valid": asked.ledger is not None,
            **({"error": asked.error} if asked.error else {}),
        },
        step_id=asked.step_id,
        durable="later",
    )
    return ledger


def progress_prompt(ctx: RunContext, agents: Sequence[str], round_: int) -> str:
    """The manager's question for one round."""
    return (
        f"Round {round_}. Team:\n{team_list(ctx, agents)}\n\nFill in the PROGRESS LEDGER about the work above. "
        f"next_speaker must be one of: {', '.join(agents)}.\nReply with JSON only: {PROGRESS_LEDGER_FORMAT}"
    )


async def execute(
    ctx: RunContext, agent: str, instruction: str, round_: int, history: Sequence[Message]
) -> Work:
    """The chosen agent carries out the instruction; a failure becomes the round's (failed) work product."""
    prompt = f"Instruction from the manager: {instruction or 'continue with the plan.'}"
    try:
        result = await speak(ctx, agent, prompt, key=f"{round_}.{agent}", history=history)
    except StepFailed as exc:
        # the manager sees the failure next round and may redirect; it is not hidden and not fatal
        return Work(round_, agent, instruction, f"(the step failed: {exc.message})", exc.step_id, failed=True)
    return Work(round_, agent, instruction, result.output, result.step_id)


async def best_partial(
    ctx: RunContext, manager: str, why: str, work: Sequence[Work], history: Sequence[Message], *, key: str
) -> tuple[str, str, str | None]:
    """(output, how it was made, step id) when the run stops early: the manager's best partial answer, or the
    last work product when there is no work to sum up or the manager cannot give one (a limit, a failure)."""
    last = next((w for w in reversed(work) if not w.failed), None)
    fallback = (last.output, "the last work product", last.step_id) if last else ("", "no work product", None)
    if last is None:
        return fallback
    prompt = (
        f"The run is stopping before the goal is reached ({why}). From the work above, write the best partial "
        "answer you can: what is done, and what is still open."
    )
    try:
        result = await speak(ctx, manager, prompt, key=key, history=history)
    except (StepFailed, GuardrailTripped):
        return fallback
    if not result.output.strip():
        return fallback
    return result.output, "the manager's partial answer", result.step_id


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    """The run body of a sub-team whose pattern is magentic: `options` as in `MagenticOptions`; the manager may
    be listed among the members (it is taken out of the team it directs)."""
    opts = validated(MagenticOptions, options, "magentic options")
    return magentic(task, [m for m in members if m != opts.manager], opts)

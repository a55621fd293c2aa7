"""Group chat: participants take turns on a shared transcript; round robin or a manager picks who speaks.

The chat ends when the manager declares a conclusion, when a message contains the termination phrase, or at
`max_turns`, where the default resolution applies (the manager summarises, or the last proposal stands): it
never loops forever. Under federated control each reader sees the transcript only as
`orchestration.visibility` lets its group see it. A failed participant step fails the run (the transcript would
have a hole); limits (`GuardrailTripped`) propagate and the run stops with the last output as partial result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestration.config import validated
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import InvalidInputError
from orchestration.models.base import Message
from orchestration.outcomes import StepFailed, StepResult
from orchestration.parsing import extract_json
from orchestration.visibility import visible_text

MAX_TURNS = 100


class GroupChatOptions(BaseModel):
    """How a group chat is run."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int | None = Field(
        None,
        ge=1,
        le=MAX_TURNS,
        description="Participant turns before the chat is resolved (default: the run's max_turns limit).",
    )
    speaker_selection: Literal["round_robin", "manager"] = Field(
        "round_robin",
        description="round_robin: participants speak in the order given; manager: the manager picks each speaker.",
    )
    manager: str | None = Field(
        None,
        description="The chat manager agent: picks speakers (speaker_selection='manager') and/or writes the "
        "summary at max_turns. Without a group it acts as the orchestrator and sees everything.",
    )
    termination_phrase: str = Field(
        "TERMINATE",
        min_length=1,
        description="A participant message containing it (case-sensitive) ends the chat.",
    )
    resolution: Literal["summarize", "last_proposal"] | None = Field(
        None,
        description="At max_turns: summarize (the manager states the conclusion so far; default with a manager) "
        "or last_proposal (the last message stands; default without one).",
    )

    @model_validator(mode="after")
    def _manager(self) -> GroupChatOptions:
        if self.speaker_selection == "manager" and not self.manager:
            raise ValueError(
                "manager: name a manager agent for speaker_selection='manager', or use round_robin"
            )
        if self.resolution == "summarize" and not self.manager:
            raise ValueError("manager: resolution='summarize' needs a manager to write the summary")
        return self


@dataclass(frozen=True)
class Turn:
    """One message of the transcript."""

    speaker: str
    group: str | None
    text: str
    step_id: str


@dataclass(frozen=True)
class Choice:
    """The manager's decision for one turn, as parsed from its reply."""

    speaker: str | None = None
    """A valid participant to speak next; None when the chat is done or the reply was unusable."""
    done: bool = False
    conclusion: str = ""
    reason: str = ""


# -- what each reader sees ---------------------------------------------------------------------------------------


def transcript(
    ctx: RunContext, topic: str, turns: Sequence[Turn], reader: str, *, orchestrator: bool = False
) -> list[Message]:
    """The topic and the transcript as `reader` may see it: its own messages as `assistant`, the others' as
    `user` messages labelled with the speaker (adjacent messages of one role merged)."""
    reader_group = ctx.config.groups().get(reader)
    parts: list[tuple[Literal["user", "assistant"], str]] = [("user", f"Topic of the discussion: {topic}")]
    for t in turns:
        shown = visible_text(t.text, t.group, reader_group, ctx.control, orchestrator=orchestrator)
        parts.append(("assistant", shown) if t.speaker == reader else ("user", f"[{t.speaker}]: {shown}"))
    merged: list[Message] = []
    for role, text in parts:
        if merged and merged[-1].role == role:
            merged[-1] = Message(role, f"{merged[-1].text}\n\n{text}")
        else:
            merged.append(Message(role, text))
    return merged


async def speak(
    ctx: RunContext, name: str, prompt: str, *, key: str, history: Sequence[Message]
) -> StepResult:
    """One step of `name` after `history`; a sub-team takes no history, so it gets the transcript in its task."""
    if ctx.is_team(name):
        lines = [m.text if m.role == "user" else f"[{name}]: {m.text}" for m in history]
        return await ctx.step(name, "\n\n".join([*lines, prompt]), key=key)
    return await ctx.step(name, prompt, key=key, history=history)


# -- the manager -------------------------------------------------------------------------------------------------


def describe(ctx: RunContext, name: str) -> str:
    """`name: description` of a participant (agent or sub-team) for the manager."""
    member = ctx.config.agents.get(name) or ctx.config.teams.get(name)
    return f"- {name}: {member.description if member is not None else 'a participant'}"


def parse_choice(text: str, agents: Sequence[str]) -> Choice:
    """The manager's reply as a `Choice`; an unusable reply gives a Choice with no speaker and the reason."""
    try:
        value = extract_json(text)
    except ValueError:
        return Choice(reason="the manager's reply was not JSON")
    if not isinstance(value, dict):
        return Choice(reason="the manager's reply was not a JSON object")
    done = value.get("done")
    if done is True or (isinstance(done, str) and done.strip().lower() == "true"):
        return Choice(done=True, conclusion=str(value.get("conclusion") or "").strip(), reason="concluded")
    name = value.get("next")
    if isinstance(name, str) and name in agents:
        return Choice(speaker=name, reason=str(value.get("reason") or "picked by the manager"))
    if name is None:
        return Choice(reason="the manager named no next speaker")
    return Choice(reason=f"the manager picked {name!r}, who is not a participant")


async def ask_manager(
    ctx: RunContext, manager: str, agents: Sequence[str], topic: str, turns: Sequence[Turn], turn: int
) -> tuple[Choice, str]:
    """The manager's choice for `turn`, and the id of the step that made it."""
    team = "\n".join(describe(ctx, a) for a in agents)
    prompt = (
        f"You manage this discussion. Participants:\n{team}\n\n"
        'Answer with JSON only: {"next": "<participant name>", "reason": "<why>"} to pick who speaks next, '
        'or {"done": true, "conclusion": "<the conclusion>"} once the discussion has reached its conclusion.'
    )
    history = transcript(ctx, topic, turns, manager, orchestrator=ctx.config.groups().get(manager) is None)
    result = await speak(ctx, manager, prompt, key=f"{turn}.{manager}:select", history=history)
    return parse_choice(result.output, agents), result.step_id


# -- the chat ----------------------------------------------------------------------------------------------------


def next_in_order(agents: Sequence[str], last: str | None) -> str:
    """Round robin: the participant after the last speaker (the first one to start)."""
    if last is None or last not in agents:
        return agents[0]
    return agents[(list(agents).index(last) + 1) % len(agents)]


def group_chat(agents: Sequence[str], topic: str, options: GroupChatOptions) -> RunBody:
    """A run body in which `agents` discuss `topic` until a conclusion, the termination phrase or max_turns."""
    if len(agents) < 2:
        raise InvalidInputError("agents: a group chat needs at least 2 participants")
    if len(set(agents)) != len(agents):
        raise InvalidInputError("agents: list each participant once")
    agents = list(agents)

    async def body(ctx: RunContext) -> Outcome:
        groups = ctx.config.groups()
        max_turns = options.max_turns or ctx.budget.limits.max_turns
        turns: list[Turn] = []

        def data(**extra: Any) -> dict[str, Any]:
            return {"turns": len(turns), "speakers": [t.speaker for t in turns], **extra}

        for turn in range(max_turns):
            last = turns[-1].speaker if turns else None
            speaker, how, reason = next_in_order(agents, last), "round_robin", "next in order"
            manager_step = None
            if options.speaker_selection == "manager":
                assert options.manager is not None  # the options validator guarantees it
                choice, manager_step = await ask_manager(ctx, options.manager, agents, topic, turns, turn)
                if choice.done:
                    # a conclusion without text: the last message is the best statement of it
                    conclusion = choice.conclusion or (turns[-1].text if turns else "")
                    await ctx.record(
                        "chat_terminated",
                        {"turn": turn + 1, "by": options.manager, "why": "conclusion"},
                        step_id=manager_step,
                        durable="later",
                    )
                    return Outcome(conclusion, data=data(ended_by="conclusion"))
                if choice.speaker is not None:
                    speaker, how, reason = choice.speaker, "manager", choice.reason
                else:
                    how, reason = "round_robin_fallback", f"{choice.reason}; round robin instead"
            await ctx.record(
                "speaker_selected",
                {"turn": turn + 1, "speaker": speaker, "how": how, "reason": reason},
                step_id=manager_step,
                durable="later",
            )
            prompt = (
                # the phrase stays off the first line: a model echoing the request must not end the chat
                f"Your turn, {speaker}: give your contribution to the discussion.\n"
                f"If the group has reached its conclusion, state it and end with {options.termination_phrase}."
            )
            history = transcript(ctx, topic, turns, speaker)
            result = await speak(ctx, speaker, prompt, key=f"{turn}.{speaker}", history=history)
            turns.append(Turn(speaker, groups.get(speaker), result.output, result.step_id))
            if options.termination_phrase in result.output:
                await ctx.record(
                    "chat_terminated",
                    {"turn": turn + 1, "by": speaker, "why": "termination_phrase"},
                    step_id=result.step_id,
                    durable="later",
                )
                text = result.output.replace(options.termination_phrase, "").strip()
                return Outcome(text, data=data(ended_by="termination_phrase"))
        return await resolve(ctx, topic, turns, options, max_turns, data)

    return body


async def resolve(
    ctx: RunContext,
    topic: str,
    turns: Sequence[Turn],
    options: GroupChatOptions,
    max_turns: int,
    data: Callable[..., dict[str, Any]],
) -> Outcome:
    """The default resolution at max_turns: the manager's summary, or the last proposal. Always `stopped`."""
    resolution = options.resolution or ("summarize" if options.manager else "last_proposal")
    output, how = (turns[-1].text if turns else ""), "the last message stands"
    step_id = turns[-1].step_id if turns else None
    if resolution == "summarize" and options.manager:
        manager = options.manager
        history = transcript(
            ctx, topic, turns, manager, orchestrator=ctx.config.groups().get(manager) is None
        )
        prompt = (
            "The discussion is out of turns. State the conclusion reached so far, and what is still open, "
            "in a few sentences."
        )
        try:
            summary = await speak(ctx, manager, prompt, key=f"{max_turns}.{manager}:summary", history=history)
            output, how, step_id = summary.output, "the manager's summary", summary.step_id
        except StepFailed as exc:
            # the resolution is a courtesy on top of a finished chat: keep the last message rather than fail
            how = f"the last message stands (the summary failed: {exc.message})"
    await ctx.record(
        "chat_terminated",
        {"turn": max_turns, "by": "limit", "why": "max_turns", "resolution": resolution, "how": how},
        step_id=step_id,
        durable="later",
    )
    return Outcome(
        output,
        "stopped",
        "max_turns",
        error=f"the chat did not conclude within max_turns={max_turns}; resolution {resolution}: {how}",
        data=data(ended_by="max_turns", resolution=resolution),
    )


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    """The run body of a sub-team whose pattern is group_chat (`options` as in `GroupChatOptions`)."""
    opts = validated(GroupChatOptions, options, "group_chat options")
    return group_chat(members, task, opts)

"""Group chat: participants take turns on a shared transcript; a manager (or round robin) picks who speaks.

The chat ends when the manager declares a conclusion, when a message contains the termination phrase, or at
`max_turns`, where the default resolution applies (the manager summarises, or the last proposal stands): it
never loops forever. Under federated control each participant sees only what `orchestration.visibility` lets
its group see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestration.config import describe_validation_error
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import InvalidInputError
from orchestration.parsing import extract_json
from orchestration.visibility import visible_text


class GroupChatOptions(BaseModel):
    """How a group chat is run."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int | None = Field(
        None, ge=1, le=100, description="Turns before the chat is resolved (default: the run's max_turns)."
    )
    speaker_selection: Literal["round_robin", "manager"] = Field(
        "round_robin", description="round_robin: in order; manager: the manager picks each next speaker."
    )
    manager: str | None = Field(
        None, description="The chat manager (needed for speaker_selection='manager')."
    )
    termination_phrase: str = Field(
        "TERMINATE", min_length=1, description="A message containing it ends the chat."
    )
    resolution: Literal["summarize", "last_proposal"] | None = Field(
        None,
        description="At max_turns: the manager summarises (default with a manager), or the last message stands.",
    )

    @model_validator(mode="after")
    def _manager(self) -> GroupChatOptions:
        if self.speaker_selection == "manager" and not self.manager:
            raise ValueError("manager: name a manager agent for speaker_selection='manager'")
        if self.resolution == "summarize" and not self.manager:
            raise ValueError("manager: resolution='summarize' needs a manager to write the summary")
        return self


@dataclass(frozen=True)
class Turn:
    speaker: str
    group: str | None
    text: str


def transcript_for(ctx: RunContext, topic: str, turns: Sequence[Turn], reader: str) -> str:
    """The topic and the transcript as `reader` may see it."""
    reader_group = ctx.config.groups().get(reader) if reader in ctx.config.groups() else None
    lines = [f"Topic: {topic}", "", "Conversation so far:" if turns else "Nobody has spoken yet."]
    for t in turns:
        shown = visible_text(t.text, author_group=t.group, reader_group=reader_group, control=ctx.control)
        lines.append(f"[{t.speaker}]: {shown}")
    return "\n".join(lines)


def group_chat(agents: Sequence[str], topic: str, options: GroupChatOptions) -> RunBody:
    """A run body in which `agents` discuss `topic`."""

    async def body(ctx: RunContext) -> Outcome:
        groups = ctx.config.groups()
        max_turns = options.max_turns or ctx.budget.limits.max_turns
        turns: list[Turn] = []
        for turn in range(max_turns):
            speaker, how, reason = agents[turn % len(agents)], "round_robin", "next in order"
            if options.speaker_selection == "manager":
                assert options.manager is not None
                choice = await ask_manager(ctx, options.manager, agents, topic, turns, turn)
                if choice.get("done"):
                    conclusion = str(choice.get("conclusion") or (turns[-1].text if turns else ""))
                    await ctx.record("chat_terminated", {"turn": turn, "by": "manager", "why": "conclusion"})
                    return Outcome(conclusion, data={"turns": turn, "ended_by": "manager"})
                if choice.get("next") in agents:
                    speaker, how, reason = str(choice["next"]), "manager", str(choice.get("reason", ""))
                else:
                    reason = f"the manager's choice {choice.get('next')!r} is not a participant; round robin instead"
            await ctx.record(
                "speaker_selected", {"turn": turn, "speaker": speaker, "how": how, "reason": reason}
            )
            prompt = (
                f"{transcript_for(ctx, topic, turns, speaker)}\n\nYou are {speaker}. Add your contribution to the "
                f"discussion. If the group has reached its conclusion, say so and end with {options.termination_phrase}."
            )
            result = await ctx.step(speaker, prompt, key=f"{turn}.{speaker}")
            turns.append(Turn(speaker, groups.get(speaker), result.output))
            if options.termination_phrase in result.output:
                await ctx.record(
                    "chat_terminated", {"turn": turn, "by": speaker, "why": "termination phrase"}
                )
                text = result.output.replace(options.termination_phrase, "").strip()
                return Outcome(text, data={"turns": turn + 1, "ended_by": speaker})
        return await resolve(ctx, topic, turns, options, max_turns)

    return body


async def ask_manager(
    ctx: RunContext, manager: str, agents: Sequence[str], topic: str, turns: Sequence[Turn], turn: int
) -> dict[str, Any]:
    """The manager's pick: `{"next": name}` or `{"done": true, "conclusion": ...}`; `{}` when unparseable."""
    team = "\n".join(
        f"- {a}: {ctx.config.agents[a].description if a in ctx.config.agents else 'a team'}" for a in agents
    )
    prompt = (
        f"{transcript_for(ctx, topic, turns, manager)}\n\nYou manage this discussion. Participants:\n{team}\n\n"
        'Reply with JSON only: {"next": "<participant>", "reason": "..."} to pick who speaks next, or '
        '{"done": true, "conclusion": "..."} if the discussion has reached its conclusion.'
    )
    result = await ctx.step(manager, prompt, key=f"{turn}.manager")
    try:
        value = extract_json(result.output)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def resolve(
    ctx: RunContext, topic: str, turns: Sequence[Turn], options: GroupChatOptions, max_turns: int
) -> Outcome:
    """The default resolution at max_turns: the manager's summary, or the last proposal."""
    resolution = options.resolution or ("summarize" if options.manager else "last_proposal")
    if resolution == "summarize" and options.manager:
        summary = await ctx.step(
            options.manager,
            f"{transcript_for(ctx, topic, turns, options.manager)}\n\nThe discussion is out of turns. State the "
            "conclusion reached so far, and what is still open, in a few sentences.",
            key="resolution",
        )
        output = summary.output
    else:
        output = turns[-1].text if turns else ""
    await ctx.record(
        "chat_terminated", {"turn": max_turns, "by": "limit", "why": "max_turns", "resolution": resolution}
    )
    return Outcome(
        output,
        "stopped",
        "max_turns",
        f"the chat did not conclude in {max_turns} turns; resolved by {resolution.replace('_', ' ')}",
        data={"turns": max_turns, "resolution": resolution},
    )


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    try:
        opts = GroupChatOptions.model_validate(options)
    except ValidationError as exc:
        raise InvalidInputError(f"group_chat options: {describe_validation_error(exc)}") from None
    if len(members) < 2:
        raise InvalidInputError("a group chat needs at least 2 participants")
    return group_chat(members, task, opts)

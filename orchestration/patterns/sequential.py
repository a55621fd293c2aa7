"""Sequential: each agent's output is the next one's input, with an optional checkpoint between steps.

A checkpoint (a rule, a check agent, or both) looks at each output before it is passed on; a failed check
stops the chain with the reason instead of handing a bad output to the next agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestration.config import validated
from orchestration.context import Outcome, RunBody, RunContext
from policies import linear


class Checkpoint(BaseModel):
    """A validation checkpoint between steps: every rule given must hold."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(
        None, description="A check agent; it is asked to answer PASS or FAIL: <reason> about each output."
    )
    must_match: str | None = Field(
        None,
        description="A regular expression each output must contain a match of (RE2 syntax, linear time: "
        "backreferences and lookaround are refused).",
    )
    must_not_match: str | None = Field(
        None, description="A regular expression no output may match (RE2 syntax, as must_match)."
    )
    min_chars: int = Field(1, ge=0, description="Shortest acceptable output (1: not empty).")
    max_chars: int | None = Field(None, ge=1, description="Longest acceptable output.")
    check_last: bool = Field(False, description="Also check the last agent's output.")

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        # refused here when it needs backtracking: the output it is matched against is a model's
        return None if value is None else linear.checked(value)


class SequentialOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: Checkpoint | None = None


def next_prompt(task: str, previous_agent: str, previous_output: str) -> str:
    """What the next agent in the chain receives: the task and the previous agent's output."""
    return f'{task}\n\n<previous agent="{previous_agent}">\n{previous_output}\n</previous>\n\nDo your part of the task.'


async def run_checkpoint(
    ctx: RunContext, checkpoint: Checkpoint, output: str, *, key: str
) -> tuple[bool, str]:
    """(passed, reason) for one output: the rules first (free), then the check agent."""
    if len(output.strip()) < checkpoint.min_chars:
        return False, f"the output is shorter than {checkpoint.min_chars} characters"
    if checkpoint.max_chars is not None and len(output) > checkpoint.max_chars:
        return False, f"the output is longer than {checkpoint.max_chars} characters"
    if checkpoint.must_match and not linear.compile_pattern(checkpoint.must_match).search(output):
        return False, f"the output does not match {checkpoint.must_match!r}"
    if checkpoint.must_not_match and linear.compile_pattern(checkpoint.must_not_match).search(output):
        return False, f"the output matches {checkpoint.must_not_match!r}"
    if checkpoint.agent:
        verdict = await ctx.step(
            checkpoint.agent,
            "Check the output below. Answer with PASS, or FAIL: <the reason>, on the first line.\n\n"
            f"<output>\n{output}\n</output>",
            key=key,
        )
        first = verdict.output.strip().splitlines()[0] if verdict.output.strip() else ""
        if not first.upper().startswith("PASS"):
            reason = first.split(":", 1)[1].strip() if ":" in first else (first or "no verdict")
            return False, f"{checkpoint.agent} said: {reason}"
    return True, "passed"


def sequential(agents: Sequence[str], task: str, checkpoint: Checkpoint | None = None) -> RunBody:
    """A run body in which `agents` work in order on `task`."""

    async def body(ctx: RunContext) -> Outcome:
        text, done = task, []
        for i, agent in enumerate(agents):
            prompt = task if i == 0 else next_prompt(task, agents[i - 1], text)
            result = await ctx.step(agent, prompt, key=f"{i}.{agent}")
            done.append({"agent": agent, "step_id": result.step_id})
            if checkpoint is not None and (i < len(agents) - 1 or checkpoint.check_last):
                passed, reason = await run_checkpoint(ctx, checkpoint, result.output, key=f"{i}.check")
                await ctx.record(
                    "checkpoint",
                    {"after": agent, "passed": passed, "reason": reason},
                    step_id=result.step_id,
                    durable="later",
                )
                if not passed:
                    following = f" before {agents[i + 1]}" if i < len(agents) - 1 else ""
                    return Outcome(
                        result.output,
                        "stopped",
                        "checkpoint_failed",
                        f"the checkpoint after {agent} failed: {reason}; the chain stopped{following}",
                        data={"steps": done},
                    )
            text = result.output
        return Outcome(text, data={"steps": done})

    return body


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    opts = validated(SequentialOptions, options, "sequential options")
    return sequential(members, task, opts.checkpoint)

"""Concurrent: every agent works on the same task at once; their answers are reconciled by a rule.

Rules: `all` (every answer), `majority` (a vote on normalised answers), `confidence` (each agent states one;
the highest wins), `judge` (a judge agent picks or merges). A disagreement (a tied vote, low confidence) is
settled by `on_disagreement`: the judge, `fail`, or `escalate` to a human through the approval channels.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestration.config import describe_validation_error
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import GuardrailTripped, InvalidInputError
from orchestration.step import StepFailed

CONFIDENCE_LINE = re.compile(r"CONFIDENCE:\s*([0-9]*\.?[0-9]+)", re.IGNORECASE)
FINAL_LINE = re.compile(r"^\s*FINAL ANSWER:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


class ConcurrentOptions(BaseModel):
    """How the answers of agents working in parallel are reconciled."""

    model_config = ConfigDict(extra="forbid")

    reconcile: Literal["all", "majority", "confidence", "judge"] = Field(
        "all", description="all: every answer; majority: vote; confidence: highest stated confidence; judge."
    )
    judge: str | None = Field(
        None, description="The judge agent (for reconcile='judge' or on_disagreement='judge')."
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="Lowest confidence that can win (reconcile='confidence')."
    )
    on_disagreement: Literal["judge", "fail", "escalate"] = Field(
        "fail", description="A tie or low confidence: ask the judge, fail the run, or escalate to a human."
    )

    @model_validator(mode="after")
    def _judge_needed(self) -> ConcurrentOptions:
        if (self.reconcile == "judge" or self.on_disagreement == "judge") and not self.judge:
            raise ValueError("judge: name a judge agent for reconcile='judge' or on_disagreement='judge'")
        return self


@dataclass(frozen=True)
class Answer:
    agent: str
    text: str
    step_id: str

    @property
    def normalised(self) -> str:
        """The answer as votes compare it: the FINAL ANSWER line if any, casefolded, spaces and end dots folded."""
        final = FINAL_LINE.search(self.text)
        text = CONFIDENCE_LINE.sub("", final.group(1) if final else self.text)
        return re.sub(r"\s+", " ", text).strip().rstrip(".!").casefold()

    @property
    def confidence(self) -> float | None:
        found = CONFIDENCE_LINE.findall(self.text)
        return min(float(found[-1]), 1.0) if found else None


def listing(answers: Sequence[Answer]) -> str:
    return "\n\n".join(f"## {a.agent}\n{a.text}" for a in answers)


def concurrent(agents: Sequence[str], task: str, options: ConcurrentOptions) -> RunBody:
    """A run body in which `agents` answer `task` in parallel and the answers are reconciled."""

    async def body(ctx: RunContext) -> Outcome:
        prompt = task
        if options.reconcile == "confidence":
            prompt += "\n\nEnd your answer with a line `CONFIDENCE: <a number from 0 to 1>`."
        answers, failures = await fan_out(ctx, agents, prompt)
        if not answers:
            return Outcome("", "failed", "all_failed", "every agent failed: " + "; ".join(failures.values()))
        winner, why = await reconcile(ctx, answers, options)
        await ctx.record(
            "reconciled",
            {
                "rule": options.reconcile,
                "answers": [
                    {"agent": a.agent, "normalised": a.normalised[:200], "confidence": a.confidence}
                    for a in answers
                ],
                "votes": dict(Counter(a.normalised for a in answers))
                if options.reconcile == "majority"
                else None,
                "failed": failures,
                "winner": winner.agent if isinstance(winner, Answer) else None,
                "why": why,
            },
        )
        data = {"answers": {a.agent: a.text for a in answers}, "failed": failures, "why": why}
        if isinstance(winner, Answer):
            return Outcome(winner.text, data={**data, "winner": winner.agent})
        if isinstance(winner, str):
            return Outcome(winner, data=data)
        return await settle(ctx, answers, options, why, data)

    return body


async def fan_out(ctx: RunContext, agents: Sequence[str], prompt: str) -> tuple[list[Answer], dict[str, str]]:
    """Every agent on the same prompt at once; answers in the agents' order, failures by agent."""
    results: dict[str, Answer] = {}
    failures: dict[str, str] = {}
    tripped: list[GuardrailTripped] = []

    async def one(i: int, agent: str) -> None:
        try:
            result = await ctx.step(agent, prompt, key=f"{i}.{agent}")
            results[agent] = Answer(agent, result.output, result.step_id)
        except StepFailed as exc:
            failures[agent] = exc.message
        except GuardrailTripped as exc:
            tripped.append(exc)

    async with anyio.create_task_group() as tg:
        for i, agent in enumerate(agents):
            tg.start_soon(one, i, agent)
    if tripped:
        raise tripped[0]
    return [results[a] for a in agents if a in results], failures


async def reconcile(
    ctx: RunContext, answers: list[Answer], options: ConcurrentOptions
) -> tuple[Answer | str | None, str]:
    """The winning answer (or merged text), or None for a disagreement; and why."""
    if options.reconcile == "all":
        return listing(answers), f"all {len(answers)} answers returned"
    if options.reconcile == "majority":
        counts = Counter(a.normalised for a in answers).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return None, f"tie: {counts[0][1]} votes each for the top answers"
        top = counts[0][0]
        return next(a for a in answers if a.normalised == top), f"{counts[0][1]} of {len(answers)} votes"
    if options.reconcile == "confidence":
        rated = sorted((a for a in answers if a.confidence is not None), key=lambda a: -(a.confidence or 0))
        if not rated:
            return None, "no agent stated a confidence"
        best = rated[0]
        if (best.confidence or 0) < options.threshold:
            return (
                None,
                f"the highest confidence {best.confidence} is below the threshold {options.threshold}",
            )
        if (
            len(rated) > 1
            and rated[1].confidence == best.confidence
            and rated[1].normalised != best.normalised
        ):
            return None, f"tie at confidence {best.confidence}"
        return best, f"confidence {best.confidence}"
    return await judged(ctx, answers, options), "the judge decided"


async def judged(ctx: RunContext, answers: list[Answer], options: ConcurrentOptions) -> str:
    assert options.judge is not None
    verdict = await ctx.step(
        options.judge,
        "Several agents answered the same task. Pick the best answer, or merge them into a better one. "
        f"Reply with the final answer only.\n\n{listing(answers)}",
        key="judge",
    )
    return verdict.output


async def settle(
    ctx: RunContext, answers: list[Answer], options: ConcurrentOptions, why: str, data: dict[str, Any]
) -> Outcome:
    """Resolve a disagreement as `on_disagreement` says."""
    if options.on_disagreement == "judge":
        return Outcome(await judged(ctx, answers, options), data={**data, "settled_by": "judge"})
    if options.on_disagreement == "escalate":
        return await escalate(ctx, answers, why, data)
    return Outcome(listing(answers), "stopped", "disagreement", f"the agents disagree ({why})", data=data)


async def escalate(ctx: RunContext, answers: list[Answer], why: str, data: dict[str, Any]) -> Outcome:
    """Ask a human, through the approval channels, to accept the leading answer."""
    from orchestration.approvals import request_approval

    leading = max(
        answers, key=lambda a: (sum(b.normalised == a.normalised for b in answers), a.confidence or 0)
    )
    verdict = await request_approval(
        ctx,
        agent=leading.agent,
        tool="concurrent.accept_answer",
        arguments={
            "answer": leading.text,
            "alternatives": {a.agent: a.text for a in answers if a is not leading},
        },
        reason=f"the agents disagree ({why}); accept {leading.agent}'s answer?",
        rule="on_disagreement",
        human_only=False,
        ttl_s=ctx.budget.limits.run_timeout_s,
        step_id=leading.step_id,
    )
    if verdict.approved:
        return Outcome(leading.text, data={**data, "winner": leading.agent, "settled_by": verdict.channel})
    return Outcome(
        listing(answers),
        "stopped",
        "disagreement",
        f"the agents disagree ({why}) and the human did not accept {leading.agent}'s answer"
        + (f": {verdict.reason}" if verdict.reason else ""),
        data=data,
    )


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    try:
        opts = ConcurrentOptions.model_validate(options)
    except ValidationError as exc:
        raise InvalidInputError(f"concurrent options: {describe_validation_error(exc)}") from None
    return concurrent(members, task, opts)

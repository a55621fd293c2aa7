"""Concurrent: every agent works on the same task at once; a rule reconciles their answers.

Rules: `all` (every answer, labelled), `majority` (a vote on normalised answers), `confidence` (each agent
states one; the highest wins), `judge` (a judge agent picks or merges). A disagreement (a tied vote, no
confident answer) is settled by `on_disagreement`: the judge, `fail`, or `escalate` to a human. A failed
agent is left out of the vote; only when every agent fails does the run fail.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestration.approvals import request_approval
from orchestration.config import validated
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import ConcertmasterError
from orchestration.outcomes import StepFailed
from policies import linear

# `**` is tolerated because models like to bold these lines. Linear time (RE2): with `re` a reply of many
# blank lines took quadratic time on the event loop.
CONFIDENCE_LINE = linear.compile_pattern(r"(?im)^[\s*_]*CONFIDENCE[*_]*\s*:[\s*_]*([0-9]*\.?[0-9]+)\s*(%?)")
FINAL_LINE = linear.compile_pattern(r"(?im)^[\s*_]*FINAL ANSWER[*_]*\s*:[\s*_]*(.*?)[\s*_]*$")
TRAILING_PUNCTUATION = ".,;:!?…"

Rule = Literal["all", "majority", "confidence", "judge"]


class ConcurrentOptions(BaseModel):
    """How the answers of agents working in parallel are reconciled."""

    model_config = ConfigDict(extra="forbid")

    reconcile: Rule = Field(
        "all",
        description="all: every answer, labelled by agent; majority: a vote on normalised answers (a tie is "
        "a disagreement); confidence: each agent ends with `CONFIDENCE: <0..1>`, the highest wins; judge: the "
        "judge agent picks or merges.",
    )
    judge: str | None = Field(
        None, description="The judge agent; required by reconcile='judge' and on_disagreement='judge'."
    )
    threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="reconcile='confidence': the lowest confidence that can win; below it is a disagreement.",
    )
    on_disagreement: Literal["judge", "fail", "escalate"] = Field(
        "fail",
        description="A tied vote or no confident answer: the judge decides, the run stops (`disagreement`), "
        "or a human decides (`escalate`).",
    )

    @model_validator(mode="after")
    def _judge_needed(self) -> ConcurrentOptions:
        for name, value in (("reconcile", self.reconcile), ("on_disagreement", self.on_disagreement)):
            if value == "judge" and not self.judge:
                raise ValueError(f"judge: {name}='judge' needs a judge agent; name one in `judge`")
        return self


# -- answers -----------------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """An answer as votes compare it: its `FINAL ANSWER:` line if any (else the text without a confidence
    line), whitespace collapsed, trailing punctuation dropped, casefolded."""
    # a search (the automaton alone) first: most answers have neither line, and extracting costs more
    finals = FINAL_LINE.findall(text) if FINAL_LINE.search(text) else []
    chosen = finals[-1] if finals else CONFIDENCE_LINE.sub("", text) if CONFIDENCE_LINE.search(text) else text
    return re.sub(r"\s+", " ", chosen).strip().rstrip(TRAILING_PUNCTUATION).strip().casefold()


def stated_confidence(text: str) -> float | None:
    """The last `CONFIDENCE:` line as 0..1 (`85%` is 0.85); None when absent or out of range."""
    if not CONFIDENCE_LINE.search(text):  # the automaton alone answers "none" (most answers), no groups
        return None
    found = CONFIDENCE_LINE.findall(text)
    if not found:
        return None
    number, percent = found[-1]
    value = float(number) / (100 if percent else 1)
    return value if 0 <= value <= 1 else None


@dataclass(frozen=True)
class Answer:
    """One agent's successful answer."""

    agent: str
    text: str
    step_id: str

    @functools.cached_property
    def normalised(self) -> str:
        return normalise(self.text)

    @functools.cached_property
    def confidence(self) -> float | None:
        return stated_confidence(self.text)


def listing(answers: Sequence[Answer]) -> str:
    """Every answer, labelled by agent."""
    return "\n\n".join(f"## {a.agent}\n{a.text}" for a in answers)


def split(answers: Sequence[Answer]) -> str:
    """Who answered what, in one line: `'yes' (a, c) vs 'no' (b, d)`."""
    groups: dict[str, list[str]] = {}
    for a in answers:
        groups.setdefault(a.normalised, []).append(a.agent)
    return " vs ".join(f"{short(text)!r} ({', '.join(agents)})" for text, agents in groups.items())


def short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What a rule made of the answers: a winner, a combined output, or a disagreement (and why)."""

    why: str
    winner: Answer | None = None
    output: str | None = None
    """The output when no single answer won (`all`, the judge's verdict)."""
    disagreement: bool = False
    votes: dict[str, int] | None = None
    leading: Answer | None = None
    """In a disagreement, the answer a human is asked to accept."""


def decide(answers: Sequence[Answer], options: ConcurrentOptions) -> Decision:
    """Apply the `all`, `majority` or `confidence` rule (no model call); `judge` is `judged`."""
    if options.reconcile == "all":
        return Decision(f"all {len(answers)} answers returned", output=listing(answers))
    if options.reconcile == "majority":
        return majority(answers)
    return by_confidence(answers, options.threshold)


def majority(answers: Sequence[Answer]) -> Decision:
    """The normalised answer with a strict plurality wins; a tie at the top is a disagreement."""
    votes = dict(Counter(a.normalised for a in answers))
    ranked = sorted(votes.items(), key=lambda kv: -kv[1])
    top, count = ranked[0]
    first = next(a for a in answers if a.normalised == top)
    if len(ranked) > 1 and ranked[1][1] == count:
        tied = sum(1 for _, c in ranked if c == count)
        return Decision(
            f"a tie: {tied} answers have {count} vote(s) each", disagreement=True, votes=votes, leading=first
        )
    return Decision(f"{count} of {len(answers)} votes", winner=first, votes=votes)


def by_confidence(answers: Sequence[Answer], threshold: float) -> Decision:
    """The most confident answer wins if it reaches `threshold` and no different answer is as confident."""
    rated = sorted((a for a in answers if a.confidence is not None), key=lambda a: -(a.confidence or 0))
    if not rated:
        return Decision("no agent stated a confidence", disagreement=True, leading=answers[0])
    best, level = rated[0], rated[0].confidence or 0
    if level < threshold:
        return Decision(
            f"the highest confidence, {level:g} ({best.agent}), is below the threshold {threshold:g}",
            disagreement=True,
            leading=best,
        )
    rivals = [a.agent for a in rated[1:] if a.confidence == level and a.normalised != best.normalised]
    if rivals:
        return Decision(
            f"{best.agent} and {', '.join(rivals)} give different answers at the same confidence {level:g}",
            disagreement=True,
            leading=best,
        )
    return Decision(f"highest confidence {level:g}", winner=best)


def judge_prompt(task: str, answers: Sequence[Answer]) -> str:
    return (
        f"Several agents answered the same task independently.\n\n<task>\n{task}\n</task>\n\n"
        f"{listing(answers)}\n\nPick the best answer, or merge them into a better one. "
        "Reply with the final answer only."
    )


async def judged(ctx: RunContext, task: str, answers: Sequence[Answer], judge: str) -> str:
    """The judge agent's verdict on the answers: its reply is the output."""
    verdict = await ctx.step(judge, judge_prompt(task, answers), key="judge")
    return verdict.output


# -- the pattern -------------------------------------------------------------------------------------------
def agent_prompt(task: str, rule: Rule) -> str:
    """What each agent receives: the task, plus the line the rule parses."""
    if rule == "majority":
        return f"{task}\n\nEnd with a line `FINAL ANSWER: <your answer, as short as possible>`."
    if rule == "confidence":
        return f"{task}\n\nEnd with a line `CONFIDENCE: <a number from 0 to 1>` saying how sure you are."
    return task


def concurrent(agents: Sequence[str], task: str, options: ConcurrentOptions) -> RunBody:
    """A run body in which `agents` answer `task` in parallel and `options` reconciles their answers."""

    async def body(ctx: RunContext) -> Outcome:
        answers, failed = await fan_out(ctx, agents, agent_prompt(task, options.reconcile))
        if not answers:
            await ctx.record(
                "reconciled", {"rule": options.reconcile, "answers": [], "failed": failed}, durable="later"
            )
            return Outcome(
                "",
                "failed",
                "all_agents_failed",
                "every agent failed: " + "; ".join(f"{a}: {e}" for a, e in failed.items()),
                data={"answers": [], "failed": failed},
            )
        if options.reconcile == "judge":
            assert options.judge is not None  # the options validator makes sure
            verdict = await judged(ctx, task, answers, options.judge)
            decision = Decision(f"the judge {options.judge} decided", output=verdict)
        else:
            decision = decide(answers, options)
        settled_by = options.on_disagreement if decision.disagreement else None
        # derived from the steps' records (a resumed run derives it again); the run's end is awaited after it
        await ctx.record("reconciled", event(options, answers, failed, decision, settled_by), durable="later")
        data = outcome_data(answers, failed, decision, settled_by)
        if decision.winner is not None:
            return Outcome(decision.winner.text, data=data)
        if not decision.disagreement:
            return Outcome(decision.output or "", data=data)
        return await settle(ctx, task, answers, options, decision, data)

    return body


async def fan_out(ctx: RunContext, agents: Sequence[str], prompt: str) -> tuple[list[Answer], dict[str, str]]:
    """Every agent on the same prompt at once: the answers in the agents' order, and failures by agent.

    A failed step is a missing answer. A limit (or a bad member) is raised once every running step has
    ended, so the steps already paid for are recorded rather than cut off.
    """
    results: list[Answer | None] = [None] * len(agents)
    failed: dict[str, str] = {}
    raised: list[ConcertmasterError] = []

    async def one(i: int, agent: str) -> None:
        try:
            result = await ctx.step(agent, prompt, key=f"{i}.{agent}")
            results[i] = Answer(agent, result.output, result.step_id)
        except StepFailed as exc:
            failed[agent] = exc.message
        except ConcertmasterError as exc:  # GuardrailTripped and friends end the run, after the others
            raised.append(exc)

    async with asyncio.TaskGroup() as tg:
        for i, agent in enumerate(agents):
            tg.create_task(one(i, agent))
    if raised:
        raise raised[0]
    return [a for a in results if a is not None], {a: failed[a] for a in agents if a in failed}


def event(
    options: ConcurrentOptions,
    answers: Sequence[Answer],
    failed: dict[str, str],
    decision: Decision,
    settled_by: str | None,
) -> dict[str, Any]:
    """The `reconciled` audit event: the rule, every normalised answer, the votes, the result."""
    return {
        "rule": options.reconcile,
        "answers": [
            {
                "agent": a.agent,
                "step_id": a.step_id,
                "normalised": short(a.normalised, 200),
                "confidence": a.confidence,
            }
            for a in answers
        ],
        "failed": failed,
        "votes": decision.votes,
        "threshold": options.threshold if options.reconcile == "confidence" else None,
        "winner": decision.winner.agent if decision.winner else None,
        "disagreement": decision.why if decision.disagreement else None,
        "settled_by": settled_by,
        "why": decision.why,
    }


def outcome_data(
    answers: Sequence[Answer], failed: dict[str, str], decision: Decision, settled_by: str | None
) -> dict[str, Any]:
    return {
        "answers": [
            {"agent": a.agent, "output": a.text, "step_id": a.step_id, "confidence": a.confidence}
            for a in answers
        ],
        "failed": failed,
        "votes": decision.votes,
        "winner": decision.winner.agent if decision.winner else None,
        "disagreement": decision.why if decision.disagreement else None,
        "settled_by": settled_by,
    }


async def settle(
    ctx: RunContext,
    task: str,
    answers: Sequence[Answer],
    options: ConcurrentOptions,
    decision: Decision,
    data: dict[str, Any],
) -> Outcome:
    """Resolve a disagreement as `on_disagreement` says."""
    if options.on_disagreement == "judge":
        assert options.judge is not None
        return Outcome(await judged(ctx, task, answers, options.judge), data=data)
    if options.on_disagreement == "escalate":
        return await escalate(ctx, answers, decision, data)
    return Outcome(
        listing(answers),
        "stopped",
        "disagreement",
        f"the agents disagree: {decision.why}; answers: {split(answers)}",
        data=data,
    )


async def escalate(
    ctx: RunContext, answers: Sequence[Answer], decision: Decision, data: dict[str, Any]
) -> Outcome:
    """A human settles the disagreement: they accept the leading answer, or the run stops.

    The question goes through the approval channels (approve_action, elicitation, the CLI). Without them
    (a context with no pending requests) or when nobody decides in time, the run stops with
    `escalation_required` and every answer, for a human to decide outside the run.
    """
    leading = decision.leading or answers[0]
    unresolved = (
        f"the agents disagree ({decision.why}); this needs a human decision. Answers: {split(answers)}"
    )
    if not ctx.can_ask_human:
        return Outcome(listing(answers), "stopped", "escalation_required", unresolved, data=data)
    verdict = await request_approval(
        ctx,
        agent=leading.agent,
        tool="concurrent.accept_answer",
        arguments={
            "answer": leading.text,
            "alternatives": {a.agent: a.text for a in answers if a is not leading},
        },
        reason=f"the agents disagree ({decision.why}); accept {leading.agent}'s answer?",
        rule="on_disagreement",
        human_only=False,
        ttl_s=ctx.budget.limits.run_timeout_s,
        step_id=leading.step_id,
    )
    if verdict.channel == "expiry":
        return Outcome(
            listing(answers), "stopped", "escalation_required", f"{unresolved} ({verdict.reason})", data=data
        )
    decided = {**data, "human": {"approved": verdict.approved, "channel": verdict.channel}}
    if verdict.approved:
        return Outcome(leading.text, data={**decided, "winner": leading.agent})
    return Outcome(
        listing(answers),
        "stopped",
        "disagreement",
        f"the agents disagree ({decision.why}) and the human did not accept {leading.agent}'s answer"
        + (f": {verdict.reason}" if verdict.reason else ""),
        data=decided,
    )


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    """The concurrent pattern as a sub-team (`[teams.NAME]` with `pattern = "concurrent"`)."""
    opts = validated(ConcurrentOptions, options, "concurrent options")
    return concurrent(members, task, opts)

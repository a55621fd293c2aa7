"""Delegate: one agent does one task (the building block every other pattern composes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestration.context import Outcome, RunBody, RunContext


def task_prompt(task: str, context: str | None = None) -> str:
    """The prompt an agent receives for a task with optional background context."""
    return f"{task}\n\n<context>\n{context}\n</context>" if context else task


def delegate(agent: str, task: str, context: str | None = None) -> RunBody:
    """A run body in which `agent` does `task`."""

    async def body(ctx: RunContext) -> Outcome:
        result = await ctx.step(agent, task_prompt(task, context), key="delegate")
        return Outcome(result.output, data={"agent": agent, "model": result.model})

    return body


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    """A delegate run rebuilt from its recipe (when a run resumes after a restart)."""
    return delegate(members[0], task, options.get("context"))

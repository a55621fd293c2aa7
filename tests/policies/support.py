"""Helpers shared by the policy tests: actions and inline policies."""

from __future__ import annotations

from typing import Any

from policies.engine import Action
from policies.schema import Policy

READ = {"readOnlyHint": True}
WRITE = {"readOnlyHint": False}
DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True}


def act(
    tool: str,
    annotations: dict[str, bool] | None = None,
    agent: str = "clerk",
    group: str | None = None,
    **arguments: Any,
) -> Action:
    """A tool call by `agent` (of `group`) to `tool` with these annotations and arguments."""
    return Action(agent=agent, group=group, tool=tool, annotations=annotations or {}, arguments=arguments)


def policy(**data: Any) -> Policy:
    """A policy from keyword fields, validated like a file."""
    return Policy.model_validate(data)

"""Patterns by name, so a sub-team (`[teams.NAME]`) can run any pattern over its members."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from orchestration.context import RunBody
from orchestration.errors import InvalidInputError

Builder = Callable[[Sequence[str], str, dict[str, Any]], RunBody]
"""`(members, task, options) -> run body`; raises `InvalidInputError` for bad options."""

# pattern name -> module that defines `build_team(members, task, options)`
MODULES = {
    "delegate": "orchestration.patterns.delegate",
    "sequential": "orchestration.patterns.sequential",
    "concurrent": "orchestration.patterns.concurrent",
    "handoff": "orchestration.patterns.handoff",
    "group_chat": "orchestration.patterns.group_chat",
    "magentic": "orchestration.patterns.magentic",
    "plan": "orchestration.patterns.plan",
}


def build(pattern: str, members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    """The run body of `pattern` over `members` for `task`."""
    if pattern not in MODULES:
        raise InvalidInputError(f"unknown pattern {pattern!r}; patterns: {', '.join(MODULES)}")
    module = importlib.import_module(MODULES[pattern])
    builder: Builder = module.build_team
    return builder(members, task, options)

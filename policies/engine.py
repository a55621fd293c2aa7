"""The policy engine: a tool call in, a decision out. Pure and deterministic; runs on every tool call."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from policies.schema import ArgMatch, Policy, Rule


@dataclass(frozen=True)
class Action:
    """A tool call an agent wants to make."""

    agent: str
    group: str | None
    tool: str
    """Qualified name `server.tool`."""
    annotations: dict[str, bool] = field(default_factory=dict)
    """The tool's declared hints (absent when undeclared)."""
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What the policy decided, and why."""

    outcome: str
    """allow, require_approval or deny."""
    rule: str | None
    """The rule that matched; None for the policy's default."""
    reason: str
    human_only: bool = False
    approval_ttl_s: float = 900.0


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _any_glob(patterns: list[str], value: str | None) -> bool:
    return value is not None and any(_glob(p).match(value) for p in patterns)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _arg_matches(cond: ArgMatch, present: bool, value: Any) -> bool:
    if cond.exists is not None and cond.exists != present:
        return False
    checks = (cond.equals, cond.glob, cond.regex, cond.one_of, cond.gt, cond.lt)
    if all(c is None for c in checks):
        return True
    if not present:
        return False
    text = value if isinstance(value, str) else str(value)
    if cond.equals is not None and value != cond.equals:
        return False
    if cond.glob is not None and not _glob(cond.glob).match(text):
        return False
    if cond.regex is not None and not _regex(cond.regex).search(text):
        return False
    if cond.one_of is not None and value not in cond.one_of:
        return False
    number = _number(value)
    if cond.gt is not None and (number is None or not number > cond.gt):
        return False
    return not (cond.lt is not None and (number is None or not number < cond.lt))


def matches(rule: Rule, action: Action) -> bool:
    """Does every matcher the rule gives match the action?"""
    if rule.agents is not None and not _any_glob(rule.agents, action.agent):
        return False
    if rule.groups is not None and not _any_glob(rule.groups, action.group):
        return False
    if rule.tools is not None and not _any_glob(rule.tools, action.tool):
        return False
    if rule.annotations is not None and any(
        action.annotations.get(k) is not v for k, v in rule.annotations.items()
    ):
        return False
    if rule.unknown is not None:
        is_unknown = "readOnlyHint" not in action.annotations and "destructiveHint" not in action.annotations
        if is_unknown != rule.unknown:
            return False
    if rule.arguments is not None:
        for name, cond in rule.arguments.items():
            if not _arg_matches(cond, name in action.arguments, action.arguments.get(name)):
                return False
    return True


def evaluate(policy: Policy, action: Action) -> Decision:
    """The decision for `action`: the first matching rule's, else the policy default."""
    for rule in policy.rules:
        if matches(rule, action):
            return Decision(
                rule.decision,
                rule.name,
                rule.reason or f"rule {rule.name}",
                rule.human_only,
                rule.approval_ttl_s,
            )
    return Decision(policy.default, None, policy.default_reason)

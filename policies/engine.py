"""The policy engine: a tool call in, a decision out. Pure and deterministic; runs on every tool call.

A policy is compiled once (globs and regexes turned into compiled patterns, each rule's decision built
ahead of time); `evaluate` finds the compiled form of the policy it is given and walks its rules in order.
Which rules can apply to an (agent, group, tool) is remembered, so a call only runs its rules' annotation
and argument checks: tool names come from a small set, arguments change every call.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.matchers import Check, NameCheck, call_checks, name_check
from policies.schema import Outcome, Policy, Rule


@dataclass(frozen=True, slots=True)
class Action:
    """A tool call an agent wants to make: what the policy decides on."""

    agent: str
    """The agent making the call."""
    group: str | None
    """The agent's group, None when it has none."""
    tool: str
    """Qualified tool name `server.tool`."""
    annotations: Mapping[str, bool] = field(default_factory=dict)
    """The tool's declared MCP annotations (readOnlyHint, destructiveHint…); undeclared ones are absent."""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    """The call's arguments, as the agent gave them."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for an action, and why."""

    outcome: Outcome
    """allow, require_approval or deny."""
    rule: str | None
    """Name of the rule that matched; None when the policy's default decided."""
    reason: str
    """Why, for the agent that is refused or the human who approves."""
    human_only: bool = False
    """The approval must come from a human channel (elicitation or the CLI), not the approve_action tool."""
    approval_ttl_s: float = 900.0
    """Seconds an approval request stays open."""


# Remembered (agent, group, tool) -> candidate rules per policy; cleared when full, to stay bounded when
# names are many (an agent inventing tool names).
_MAX_REMEMBERED = 4096


class CompiledPolicy:
    """A policy ready to decide: its globs and regexes compiled and its decisions built once."""

    __slots__ = ("_candidates", "_default", "_policy", "_rules")

    def __init__(self, policy: Policy) -> None:
        # A weak reference, so the compile cache below never keeps a policy alive.
        self._policy = weakref.ref(policy)
        self._rules: tuple[tuple[NameCheck | None, tuple[Check, ...], Decision], ...] = tuple(
            (
                name_check(rule),
                call_checks(rule),
                Decision(
                    rule.decision,
                    rule.name,
                    rule.reason or f"rule {rule.name}",
                    rule.human_only,
                    rule.approval_ttl_s,
                ),
            )
            for rule in policy.rules
        )
        self._default = Decision(policy.default, None, policy.default_reason)
        self._candidates: dict[
            tuple[str, str | None, str], tuple[tuple[tuple[Check, ...], Decision], ...]
        ] = {}

    def compiled_from(self, policy: Policy) -> bool:
        """Was this compiled from exactly `policy` (the same object)?"""
        return self._policy() is policy

    def evaluate(self, action: Action) -> Decision:
        """The decision for `action`: the first matching rule's, else the policy default."""
        key = (action.agent, action.group, action.tool)
        candidates = self._candidates.get(key)
        if candidates is None:
            # In rule order, the rules whose agents/groups/tools globs admit this name triple.
            candidates = tuple(
                (checks, decision) for names, checks, decision in self._rules if names is None or names(*key)
            )
            if len(self._candidates) >= _MAX_REMEMBERED:
                self._candidates.clear()
            self._candidates[key] = candidates
        for checks, decision in candidates:
            for check in checks:
                if not check(action):
                    break
            else:
                return decision
        return self._default


# Compiled forms by id(policy); an entry leaves with its policy (weakref.finalize), and `compiled_from`
# guards against an id reused by a later object.
_COMPILED: dict[int, CompiledPolicy] = {}


def compile_policy(policy: Policy) -> CompiledPolicy:
    """The compiled form of `policy`, built on first use and reused while the policy lives."""
    key = id(policy)
    compiled = _COMPILED.get(key)
    if compiled is None or not compiled.compiled_from(policy):
        compiled = CompiledPolicy(policy)
        _COMPILED[key] = compiled
        weakref.finalize(policy, _COMPILED.pop, key, None)
    return compiled


def evaluate(policy: Policy, action: Action) -> Decision:
    """The decision for `action` under `policy`: the first matching rule's, else the policy default.

    Pure: the same policy and action always give the same decision, and neither is changed.
    """
    return compile_policy(policy).evaluate(action)


def matches(rule: Rule, action: Action) -> bool:
    """Does every matcher `rule` gives match `action`? (For tools and tests; compiles the rule each call.)"""
    names = name_check(rule)
    if names is not None and not names(action.agent, action.group, action.tool):
        return False
    return all(check(action) for check in call_checks(rule))

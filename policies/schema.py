"""The policy file format: rules that decide allow / require_approval / deny for each tool call, and limits.

Every field documents the file format (`policies/presets/*.toml` are commented examples).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.limits import Limits

Outcome = Literal["allow", "require_approval", "deny"]
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


class ArgMatch(BaseModel):
    """A condition on one argument's value; every condition given must hold."""

    model_config = ConfigDict(extra="forbid")

    equals: str | int | float | bool | None = Field(None, description="The value equals this.")
    glob: str | None = Field(None, description="The value (as text) matches this glob, e.g. `*.env`.")
    regex: str | None = Field(
        None, description="The value (as text) contains a match of this regular expression."
    )
    one_of: list[str | int | float | bool] | None = Field(None, description="The value is one of these.")
    gt: float | None = Field(None, description="The value is a number greater than this.")
    lt: float | None = Field(None, description="The value is a number less than this.")
    exists: bool | None = Field(None, description="The argument is present (true) or absent (false).")

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class Rule(BaseModel):
    """One rule: when every matcher given matches a tool call, `decision` applies. First match wins."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, description="Unique name, shown in the audit and to the human.")
    decision: Outcome = Field(..., description="allow, require_approval or deny.")
    agents: list[str] | None = Field(None, description="Agent names (globs) this rule applies to.")
    groups: list[str] | None = Field(None, description="Agent groups (globs) this rule applies to.")
    tools: list[str] | None = Field(
        None, description="Qualified tool names `server.tool` (globs), e.g. `files.*`."
    )
    annotations: dict[str, bool] | None = Field(
        None, description="Tool annotations that must have these values, e.g. {destructiveHint = true}."
    )
    unknown: bool | None = Field(
        None,
        description="true: the tool declares neither readOnlyHint nor destructiveHint (an unknown tool).",
    )
    arguments: dict[str, ArgMatch] | None = Field(None, description="Conditions on argument values, by name.")
    reason: str = Field("", description="Why, in words for the human who approves.")
    human_only: bool = Field(
        False, description="Approval must come from elicitation or the CLI, not a tool call."
    )
    approval_ttl_s: float = Field(
        900.0, gt=0, le=604_800, description="Seconds an approval request stays open."
    )

    @field_validator("annotations")
    @classmethod
    def _hints(cls, value: dict[str, bool] | None) -> dict[str, bool] | None:
        unknown = sorted(set(value or {}) - set(HINTS))
        if unknown:
            raise ValueError(f"unknown annotation(s) {', '.join(unknown)}; known: {', '.join(HINTS)}")
        return value


class Redaction(BaseModel):
    """Extra secrets to keep out of the audit and of error messages."""

    model_config = ConfigDict(extra="forbid")

    patterns: list[str] = Field(default_factory=list, description="Regular expressions of secrets.")
    secret_env: list[str] = Field(default_factory=list, description="Env vars whose values are secrets.")


class Policy(BaseModel):
    """A policy file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("custom", description="Name of the policy.")
    description: str = Field("", description="What it is for.")
    default: Outcome = Field("require_approval", description="Decision when no rule matches.")
    default_reason: str = Field("no rule matched", description="Reason shown for the default decision.")
    rules: list[Rule] = Field(
        default_factory=list, description="Ordered rules; the first that matches decides."
    )
    limits: Limits | None = Field(None, description="Guardrails (turns, handoffs, depth, timeouts, budgets).")
    on_budget: Literal["stop", "ask"] = Field(
        "stop", description="When a budget would be exceeded: stop the run, or ask a human to extend it."
    )
    on_denied: Literal["continue", "stop"] = Field(
        "continue", description="After a denial: tell the agent and go on, or stop the run."
    )
    redaction: Redaction = Field(default_factory=Redaction, description="Extra redaction rules.")

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; rule names must be unique")
            seen.add(rule.name)
        return self

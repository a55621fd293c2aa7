"""The policy file format: rules that decide allow / require_approval / deny for each tool call, and limits.

Every field documents the file format (`policies/presets/*.toml` are commented examples). Models are frozen:
a loaded policy is compiled once (see `policies.engine`) and must not change under the compiled form.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies import linear
from policies.limits import Limits

Outcome = Literal["allow", "require_approval", "deny"]
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
GLOB_CHARS = frozenset("*?[")


def _check_regex(value: str) -> str:
    # Refused here, at load, with the reason: a pattern that needs backtracking could freeze the server.
    return linear.checked(value)


class ArgMatch(BaseModel):
    """A condition on one argument's value. Give at least one condition; every condition given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    equals: str | int | float | bool | None = Field(
        None, description="The value equals this exactly (case-sensitive; true is not 1)."
    )
    glob: str | None = Field(
        None, description="The value, as text, matches this glob in full, e.g. `*.env` (case-sensitive)."
    )
    regex: str | None = Field(
        None,
        description="The value, as text, contains a match of this regular expression (RE2 syntax: linear time; "
        "backreferences and lookaround are refused); use `(?i)` to ignore case and `^...$` to match the whole "
        "value. A list of words is matched as the words joined by spaces.",
    )
    one_of: tuple[str | int | float | bool, ...] | None = Field(
        None, description="The value equals one of these exactly."
    )
    gt: float | None = Field(
        None, description="The value is a number (or a numeric string) greater than this."
    )
    lt: float | None = Field(None, description="The value is a number (or a numeric string) less than this.")
    exists: bool | None = Field(
        None, description="true: the argument is present; false: the argument is absent."
    )

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else _check_regex(value)

    @model_validator(mode="after")
    def _not_empty(self) -> ArgMatch:
        # An empty condition would match every call: almost certainly a typo in the file.
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError("give at least one of equals, glob, regex, one_of, gt, lt, exists")
        return self


class Rule(BaseModel):
    """One rule: when every matcher it gives matches a tool call, `decision` applies. First match wins.

    A rule with no matchers matches every call (a catch-all, useful last).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        ...,
        min_length=1,
        description="Unique name in the policy; recorded in the audit and shown to the human.",
    )
    decision: Outcome = Field(
        ..., description="allow (the call runs), require_approval (a human decides), deny (never runs)."
    )
    agents: tuple[str, ...] | None = Field(
        None, description="Agent names (globs, e.g. `intern-*`) this rule applies to; unset: every agent."
    )
    groups: tuple[str, ...] | None = Field(
        None, description="Agent groups (globs) this rule applies to; an agent without a group never matches."
    )
    tools: tuple[str, ...] | None = Field(
        None,
        description="Qualified tool names `server.tool` (globs), e.g. `files.*`, `*.delete_*`; unset: every tool.",
    )
    annotations: dict[str, bool] | None = Field(
        None,
        description="MCP tool annotations that must have these values, e.g. `{ destructiveHint = true }`; "
        "a tool that does not declare an annotation does not match it. Known: " + ", ".join(HINTS) + ".",
    )
    unknown: bool | None = Field(
        None,
        description="true: the tool declares neither readOnlyHint nor destructiveHint (nothing says whether "
        "it changes anything); false: it declares at least one of them.",
    )
    arguments: dict[str, ArgMatch] | None = Field(
        None,
        description="Conditions on the call's arguments, by argument name. A name with a glob (`*`, `?`, `[`) "
        "matches when any argument whose name matches satisfies the condition (`*`: any argument).",
    )
    reason: str = Field(
        "", description="Why, in words for the agent that is refused or the human who approves."
    )
    human_only: bool = Field(
        False,
        description="require_approval only: the approval must come from a human channel (MCP elicitation or "
        "the CLI), never from the approve_action tool the assistant can call.",
    )
    approval_ttl_s: float = Field(
        900.0, gt=0, le=604_800, description="Seconds an approval request stays open before it expires."
    )

    @field_validator("annotations")
    @classmethod
    def _hints(cls, value: dict[str, bool] | None) -> dict[str, bool] | None:
        unknown = sorted(set(value or {}) - set(HINTS))
        if unknown:
            raise ValueError(f"unknown annotation(s) {', '.join(unknown)}; known: {', '.join(HINTS)}")
        return value

    @field_validator("tools")
    @classmethod
    def _qualified(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        # Tool names are always `server.tool`: a plain name without `.` or a wildcard can never match.
        for pattern in value or ():
            if "." not in pattern and not GLOB_CHARS & set(pattern):
                raise ValueError(
                    f"{pattern!r} can never match: tools are named `server.tool`; did you mean '*.{pattern}'?"
                )
        return value


class Redaction(BaseModel):
    """Extra secrets to keep out of the audit and of error messages (on top of the built-in ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patterns: tuple[str, ...] = Field(
        (),
        description="Regular expressions of secrets (RE2 syntax: linear time; backreferences and lookaround "
        "are refused), replaced by `[redacted]` wherever they appear.",
    )
    secret_env: tuple[str, ...] = Field(
        (), description="Names of environment variables whose values are secrets, e.g. `GITHUB_TOKEN`."
    )

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_regex(p) for p in value)


class Policy(BaseModel):
    """A policy file: ordered rules for tool calls, the guardrail limits, and what happens at a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        "custom",
        description="Name of the policy (a file's name defaults to its stem); shown by config check.",
    )
    description: str = Field("", description="What the policy is for, in a sentence.")
    default: Outcome = Field("require_approval", description="Decision for a tool call that no rule matches.")
    default_reason: str = Field("no rule matched", description="Reason given with the default decision.")
    rules: tuple[Rule, ...] = Field(
        (), description="Ordered rules (`[[rules]]` tables); the first rule that matches a call decides."
    )
    limits: Limits | None = Field(
        None,
        description="Guardrails: turns, handoffs, depth, tool calls, timeouts, token and USD budgets. "
        "Only the fields given here replace the team's.",
    )
    on_budget: Literal["stop", "ask"] = Field(
        "stop",
        description="When the next model call would exceed max_tokens or max_cost_usd: `stop` the run, or "
        "`ask` (pause it for a human to extend the budget).",
    )
    on_denied: Literal["continue", "stop"] = Field(
        "continue",
        description="After a denied tool call: `continue` (the agent is told why and goes on) or `stop` the run.",
    )
    redaction: Redaction = Field(
        default_factory=Redaction, description="Extra redaction: `patterns` and `secret_env`."
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        first: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if rule.name in first:
                raise ValueError(
                    f"rules[{index}] is named {rule.name!r} like rules[{first[rule.name]}]; "
                    "rule names must be unique"
                )
            first[rule.name] = index
        return rules

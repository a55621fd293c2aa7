"""Guardrails: the one place limits are checked, before every step.

A `Budget` is shared by a run and every team nested inside it, so a sub-team spends from its parent's budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import anyio

from orchestration.errors import GuardrailTripped
from orchestration.models.base import ModelRequest, ModelResponse
from policies.limits import Limits


@dataclass
class Budget:
    """What a run tree has spent so far, against its limits."""

    limits: Limits
    """The limits in force."""
    steps: int = 0
    """Agent steps started."""
    handoffs: int = 0
    """Handoffs made."""
    tokens: int = 0
    """Input + output tokens reported by every model call."""
    cost_usd: float = 0.0
    """Cost of every priced model call."""
    calls: int = 0
    """Model calls made."""
    output_tokens: int = 0
    """Output tokens of every model call (for the projection of the next reply)."""
    on_budget: str = "stop"
    """What a spent budget does: `stop` the run, or `ask` a human to extend it (from the policy)."""
    started: float = field(default_factory=anyio.current_time)
    """Loop time the run started, for the run timeout."""
    exceeded: set[tuple[str, float]] = field(default_factory=set)
    """Budgets (limit, value) that actual use has passed, so each is recorded once."""

    def check_step(self, depth: int) -> None:
        """Raise `GuardrailTripped` if one more step at `depth` would break a limit."""
        lim = self.limits
        if depth > lim.max_depth:
            raise GuardrailTripped(
                "max_depth", f"teams are nested {depth} deep, past max_depth={lim.max_depth}"
            )
        if self.steps >= lim.max_steps:
            raise GuardrailTripped("max_steps", f"the run took {self.steps} steps, its limit (max_steps)")
        self.check_spend()

    def check_spend(self, projected_tokens: int = 0, projected_cost: float = 0.0) -> None:
        """Raise `GuardrailTripped` if the token or USD budget is spent, or would be by a call projected to use
        `projected_tokens` and cost `projected_cost` (the reservation made before each model call)."""
        lim = self.limits
        if lim.max_tokens is not None and self.tokens + projected_tokens > lim.max_tokens:
            raise GuardrailTripped(
                "max_tokens",
                f"the run used {self.tokens} tokens and the next call needs about {projected_tokens}; "
                f"its budget is max_tokens={lim.max_tokens}",
            )
        if lim.max_cost_usd is not None and self.cost_usd + projected_cost > lim.max_cost_usd:
            raise GuardrailTripped(
                "max_cost_usd",
                f"the run cost ${self.cost_usd:.4f} and the next call about ${projected_cost:.4f}; "
                f"its budget is max_cost_usd=${lim.max_cost_usd}",
            )

    def projected_tokens(self, request: ModelRequest) -> int:
        """The most the next call can use: its prompt, its tool calls and results, and its tools' schemas (about
        4 characters a token), plus a reply as long as the request's `max_tokens` allows."""
        chars = len(request.system) + sum(
            len(m.text)
            + sum(len(r.content) for r in m.tool_results)
            + sum(len(c.name) + len(json.dumps(c.arguments, default=str)) for c in m.tool_calls)
            for m in request.messages
        )
        chars += sum(
            len(t.name) + len(t.description) + len(json.dumps(t.input_schema, default=str))
            for t in request.tools
        )
        return chars // 4 + request.max_tokens

    def projected_cost(self, projected_tokens: int) -> float:
        """What the next call may cost: the run's observed USD per token times its projected tokens (never
        less than the mean call so far; 0 before the first priced call)."""
        per_token = self.cost_usd / self.tokens if self.tokens else 0.0
        return max(self.average_cost(), per_token * projected_tokens)

    def average_cost(self) -> float:
        """Mean cost of the run's priced calls so far (0 before the first)."""
        return self.cost_usd / self.calls if self.calls else 0.0

    def add_handoff(self) -> None:
        """Count a handoff, raising `GuardrailTripped` past `max_handoffs`."""
        if self.handoffs >= self.limits.max_handoffs:
            raise GuardrailTripped(
                "max_handoffs", f"the run made {self.handoffs} handoffs, its limit (max_handoffs)"
            )
        self.handoffs += 1

    def spend(self, response: ModelResponse) -> list[tuple[str, float, float]]:
        """Add one model call's usage; returns the budgets it pushed actual use past, as (limit, used,
        maximum), each limit once (the projection is an estimate: a reply can still cost more)."""
        self.calls += 1
        self.output_tokens += response.usage.output_tokens or 0
        self.tokens += (response.usage.input_tokens or 0) + (response.usage.output_tokens or 0)
        self.cost_usd += response.cost_usd or 0.0
        passed: list[tuple[str, float, float]] = []
        for limit, used in (("max_tokens", self.tokens), ("max_cost_usd", self.cost_usd)):
            maximum = getattr(self.limits, limit)
            if maximum is not None and used > maximum and (limit, maximum) not in self.exceeded:
                self.exceeded.add((limit, maximum))
                passed.append((limit, used, maximum))
        return passed

    def remaining_seconds(self) -> float:
        """Seconds left before the run timeout."""
        return self.limits.run_timeout_s - (anyio.current_time() - self.started)

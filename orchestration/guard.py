"""Guardrails: the one place limits are checked, before every step.

A `Budget` is shared by a run and every team nested inside it, so a sub-team spends from its parent's budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from orchestration.errors import GuardrailTripped
from orchestration.models.base import ModelResponse
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
    started: float = field(default_factory=anyio.current_time)
    """Loop time the run started, for the run timeout."""

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

    def check_spend(self) -> None:
        """Raise `GuardrailTripped` if the token or USD budget is spent."""
        lim = self.limits
        if lim.max_tokens is not None and self.tokens >= lim.max_tokens:
            raise GuardrailTripped(
                "max_tokens", f"the run used {self.tokens} tokens, its budget is max_tokens={lim.max_tokens}"
            )
        if lim.max_cost_usd is not None and self.cost_usd >= lim.max_cost_usd:
            raise GuardrailTripped(
                "max_cost_usd",
                f"the run cost ${self.cost_usd:.4f}, its budget is max_cost_usd=${lim.max_cost_usd}",
            )

    def add_handoff(self) -> None:
        """Count a handoff, raising `GuardrailTripped` past `max_handoffs`."""
        if self.handoffs >= self.limits.max_handoffs:
            raise GuardrailTripped(
                "max_handoffs", f"the run made {self.handoffs} handoffs, its limit (max_handoffs)"
            )
        self.handoffs += 1

    def spend(self, response: ModelResponse) -> None:
        """Add one model call's usage."""
        self.tokens += (response.usage.input_tokens or 0) + (response.usage.output_tokens or 0)
        self.cost_usd += response.cost_usd or 0.0

    def remaining_seconds(self) -> float:
        """Seconds left before the run timeout."""
        return self.limits.run_timeout_s - (anyio.current_time() - self.started)

"""Guardrail limits: plain data, set in the config (and later the policy), checked before every step."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Limits of one run tree. A tripped limit ends the run cleanly with a reason in the audit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int = Field(
        50, ge=1, le=10_000, description="Agent steps (model turns) in the whole run tree."
    )
    max_turns: int = Field(12, ge=1, le=1_000, description="Turns of a group chat, rounds of a magentic run.")
    max_handoffs: int = Field(6, ge=0, le=1_000, description="Handoffs between agents in one run.")
    max_depth: int = Field(3, ge=1, le=20, description="Nesting of teams inside teams.")
    max_tool_calls: int = Field(16, ge=0, le=1_000, description="Tool calls inside one agent step.")
    step_timeout_s: float = Field(300.0, gt=0, le=86_400, description="Seconds one agent step may take.")
    run_timeout_s: float = Field(1_800.0, gt=0, le=604_800, description="Seconds a whole run may take.")
    max_tokens: int | None = Field(
        None, ge=1, description="Token budget (input + output) of the whole run tree; unset means no budget."
    )
    max_cost_usd: float | None = Field(
        None, gt=0, description="USD budget of the whole run tree (priced models only); unset means none."
    )

    def merged(self, **overrides: object) -> Limits:
        """These limits with the given fields replaced (None values are ignored)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        return self.model_validate({**self.model_dump(), **values}) if values else self

"""What a pattern sees of its run: the team, the budget, the audit, and a way to run agent steps."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.config import AgentConfig, TeamConfig
from orchestration.errors import UnknownAgentError
from orchestration.guard import Budget
from orchestration.models.base import Message, ModelProvider

if TYPE_CHECKING:
    from orchestration.agent_tools import GateSettings
    from orchestration.models.sampling import Sampler
    from orchestration.pending import PendingRequests
    from orchestration.step import AgentTool, StepResult
    from orchestration.toolbox import Toolbox

log = logging.getLogger("concertmaster")

ProviderFactory = Callable[[str, AgentConfig, "RunContext"], ModelProvider]
"""Gives the provider that runs `agent` in a run: `(name, config, ctx) -> provider`."""

Listener = Callable[[str, str, dict[str, Any]], None]
"""Called with `(run_id, kind, payload)` after each event of a run is committed (progress notifications)."""


@dataclass(frozen=True)
class Outcome:
    """How a pattern ended."""

    output: str
    """The final (or partial) result."""
    status: Literal["succeeded", "stopped", "failed"] = "succeeded"
    """`stopped`: a guardrail or a rule ended the run early, `output` is the partial result."""
    reason: str = "completed"
    """Why it ended: `completed`, the name of the limit that tripped, `disagreement`, ..."""
    error: str | None = None
    """What went wrong, for `stopped` and `failed`."""
    data: dict[str, Any] = field(default_factory=dict)
    """Structured extras of the pattern (votes, ledgers, plan...)."""


@dataclass
class Replay:
    """What an unfinished step had already done before a restart."""

    step_id: str
    replies: list[Any] = field(default_factory=list)
    """Recorded `ModelResponse`s, oldest first."""
    tool_results: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """Recorded tool results by call id: `(content, is_error)`."""


RunBody = Callable[["RunContext"], Awaitable[Outcome]]
"""A pattern bound to its arguments: runs in a context, returns how it ended."""


@dataclass
class RunContext:
    """One run (or a nested team inside it), as a pattern sees it."""

    run_id: str
    config: TeamConfig
    audit: AuditLog
    budget: Budget
    providers: ProviderFactory
    sampler: Sampler | None = None
    """The client's model through MCP sampling, when the client that started the run offers it."""
    depth: int = 0
    """0 for the top-level team, +1 for each team nested inside it."""
    key_prefix: str = ""
    """Prefix of step keys inside a nested team, so keys stay unique and deterministic."""
    parent_step_id: str | None = None
    """Step that this (nested) team runs under."""
    control: str = "centralized"
    listeners: list[Listener] = field(default_factory=list)
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Finished steps of this run by key, replayed instead of re-run when a run resumes."""
    unfinished: dict[str, Replay] = field(default_factory=dict)
    """Steps cut short by a restart, by key: their recorded model replies and tool results are replayed."""
    resumed: bool = False
    """True when the run was resumed after a server restart."""
    recipe: dict[str, Any] | None = None
    """How to rebuild the run (pattern, members, options) if it must resume after a restart."""
    partial: str = ""
    """Output of the last successful step: the partial result if the run is stopped."""
    pending: PendingRequests | None = None
    """Where the run asks the outside world (a human, the client) and waits for the answer."""
    toolbox: Toolbox | None = None
    """Downstream MCP servers whose tools agents may be granted."""
    gate: Callable[[str], GateSettings] | None = None
    """The policy gate of an agent's tool calls, by agent name."""
    _providers_cache: dict[str, ModelProvider] = field(default_factory=dict)

    # -- the team ----------------------------------------------------------------------------------
    def agent(self, name: str) -> AgentConfig:
        """The config of agent `name`, or `UnknownAgentError` listing the known ones."""
        try:
            return self.config.agents[name]
        except KeyError:
            raise UnknownAgentError(name, self.config.member_names()) from None

    def is_team(self, name: str) -> bool:
        """True when `name` is a sub-team (`[teams.NAME]`) rather than an agent."""
        return name in self.config.teams and name not in self.config.agents

    def provider(self, name: str) -> ModelProvider:
        """The provider of agent `name` in this run (one instance per agent per run)."""
        if name not in self._providers_cache:
            self._providers_cache[name] = self.providers(name, self.agent(name), self)
        return self._providers_cache[name]

    # -- steps -------------------------------------------------------------------------------------
    async def step(
        self,
        agent: str,
        prompt: str,
        *,
        key: str,
        history: Sequence[Message] = (),
        tools: Sequence[AgentTool] = (),
        parent_step_id: str | None = None,
    ) -> StepResult:
        """Run one agent step (model <-> tools) under this context's guardrails; see `run_step`."""
        from orchestration.step import run_step

        return await run_step(
            self,
            agent,
            prompt,
            key=key,
            history=history,
            tools=tools,
            parent_step_id=parent_step_id or self.parent_step_id,
        )

    def nested(self, *, key: str, parent_step_id: str | None) -> RunContext:
        """A context for a team nested under step `parent_step_id`: one level deeper, same budget."""
        return replace(
            self, depth=self.depth + 1, key_prefix=f"{self.key_prefix}{key}/", parent_step_id=parent_step_id
        )

    # -- audit -------------------------------------------------------------------------------------
    async def record(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        step_id: str | None = None,
        statements: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> int:
        """Append an event of this run (with the summary updates it justifies) and tell listeners."""
        seq = (await self.audit.write(Write(statements, [Event(kind, self.run_id, payload, step_id)])))[0]
        for listener in list(self.listeners):
            try:
                listener(self.run_id, kind, payload)
            except Exception:  # a progress listener must never break the run it watches
                log.exception("listener failed on %s", kind)
        return seq

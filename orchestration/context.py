"""What a pattern sees of its run: the team, the budget, the audit, and a way to run agent steps."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from orchestration.audit.log import AuditLog, Event, Queued, Write
from orchestration.audit.recompute import Usage
from orchestration.config import AgentConfig, TeamConfig
from orchestration.errors import ConcertmasterError, UnknownAgentError
from orchestration.guard import Budget
from orchestration.models.base import Message, ModelProvider

if TYPE_CHECKING:
    from orchestration.agent_tools import GateSettings
    from orchestration.journal import Journal
    from orchestration.models.sampling import Sampler
    from orchestration.outcomes import AgentTool, StepResult
    from orchestration.pending import PendingRequests
    from orchestration.spec import RunSpec
    from orchestration.toolbox import Toolbox

log = logging.getLogger("concertmaster")

StepRunner = Callable[..., Awaitable["StepResult"]]
"""`run_step(ctx, agent, prompt, *, key, history, tools, parent_step_id)`."""

ProviderFactory = Callable[[str, AgentConfig, "RunContext"], ModelProvider]
"""Gives the provider that runs `agent` in a run: `(name, config, ctx) -> provider`."""

Durability = Literal["now", "before_use", "later"]
"""When a record must be committed: before `record` returns, before the run acts on it, or eventually."""

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


RunBody = Callable[["RunContext"], Awaitable[Outcome]]
"""A pattern bound to its arguments: runs in a context, returns how it ended."""


@dataclass
class RunEngine:
    """The machinery behind a run, owned by the engine that runs it. Patterns never touch it: they reach the
    world only through `RunContext` (steps, events, questions to a human), so an engine can record and replay
    every effect."""

    audit: AuditLog
    providers: ProviderFactory
    sampler: Sampler | None = None
    """The client's model through MCP sampling, when the client that started the run offers it."""
    listeners: list[Listener] = field(default_factory=list)
    journal: Journal | None = None
    """What the run did before a restart (set when it resumes): recorded effects are replayed, not redone."""
    pending: PendingRequests | None = None
    """Where the run asks the outside world (a human, the client) and waits for the answer."""
    toolbox: Toolbox | None = None
    """Downstream MCP servers whose tools agents may be granted."""
    gate: Callable[[str], GateSettings] | None = None
    """The policy gate of an agent's tool calls, by agent name."""
    provider_cache: dict[str, ModelProvider] = field(default_factory=dict)
    """One provider instance per agent per run."""
    fenced: bool = False
    """Another process took the run over: nothing more is written for it from here."""
    run_step: StepRunner | None = None
    """The step runner (`step.run_step`), handed in by the engine."""
    build_team: Callable[[RunSpec], RunBody] | None = None
    """Builds the body of a sub-team's run description (`RunSpec.build`), handed in by the engine."""
    agent_tools: Callable[[RunContext, str], Awaitable[list[AgentTool]]] | None = None
    """An agent's granted downstream tools, gated by its policy, handed in by the engine."""
    usage: Usage = field(default_factory=Usage)
    """The run's usage totals so far (the run tree's: nested teams share the engine), written to its row as
    absolute values, so that a commit with many model calls rewrites the row once."""
    unsaved: Queued | None = None
    """The last record posted with `durable="before_use"`, until `RunContext.durable()` sees it committed."""
    posting_error: BaseException | None = None
    """The failure of a write posted without waiting, raised by the run's next awaited record."""

    @property
    def resumed(self) -> bool:
        """True when the run was resumed after a restart."""
        return self.journal is not None

    def notify(self, run_id: str, kind: str, payload: dict[str, Any], step_id: str | None = None) -> None:
        """Tell the listeners of a committed event (its payload, with its `step_id` when it has one)."""
        if not self.listeners:
            return
        if step_id is not None:
            payload = {**payload, "step_id": step_id}
        for listener in list(self.listeners):
            try:
                listener(run_id, kind, payload)
            except Exception:  # a progress listener must never break the run it watches
                log.exception("listener failed on %s", kind)

    def posted(self, outcome: list[int] | BaseException, run_id: str, event: Event) -> None:
        """A write posted without waiting is settled: tell the listeners, or keep its error for the run."""
        if not isinstance(outcome, BaseException):
            self.notify(run_id, event.kind, event.payload, event.step_id)
        elif self.posting_error is None:
            self.posting_error = outcome

    def raise_posting_error(self) -> None:
        """Raise (once) the error of an earlier write posted without waiting."""
        error, self.posting_error = self.posting_error, None
        if error is not None:
            raise error


@dataclass
class RunContext:
    """One run (or a nested team inside it), as a pattern sees it.

    The rule a pattern follows: it is deterministic code that reaches the world only through this context
    (`step`, `record`, `nested`, questions to a human through `approvals.request_approval`). No clock,
    randomness or I/O of its own: a resumed run replays the pattern from its start, and every effect returns its
    recorded result until the pattern reaches work it had not done yet.
    """

    run_id: str
    config: TeamConfig
    budget: Budget
    engine: RunEngine
    depth: int = 0
    """0 for the top-level team, +1 for each team nested inside it."""
    key_prefix: str = ""
    """Prefix of step keys inside a nested team, so keys stay unique and deterministic."""
    parent_step_id: str | None = None
    """Step that this (nested) team runs under."""
    control: str = "centralized"
    partial: str = ""
    """Output of the last successful step: the partial result if the run is stopped."""

    @property
    def can_ask_human(self) -> bool:
        """True when the run can wait for a human's decision (it runs under a runtime with approvals)."""
        return self.engine.pending is not None

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
        cache = self.engine.provider_cache
        if name not in cache:
            cache[name] = self.engine.providers(name, self.agent(name), self)
        return cache[name]

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
        """Run one agent step (model <-> tools) under this context's guardrails; see `step.run_step`."""
        if self.engine.run_step is None:
            raise ConcertmasterError("this run context has no step runner; start runs through a Runtime")
        return await self.engine.run_step(
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
        durable: Durability = "now",
        summary: tuple[str, str, Sequence[Any]] | None = None,
    ) -> int:
        """Append an event of this run (with the summary updates it justifies); listeners are told once it is
        committed.

        `durable`: `"now"` waits for the commit (a human's decision; what must be seen before the run waits or
        ends). `"before_use"` for what the run acts on later (a model reply, a tool result): the run goes on at
        once, and `durable()`, called before the next model or tool call, waits for it. `"later"` for what
        nothing acts on (a step started or finished, a pattern's own events: derived from the recorded
        effects, a resumed run derives them again). A posted event is committed with the next awaited write,
        in order, or once the loop is idle; if it cannot be, the run's next `durable()` or awaited record
        raises the error. Posted records return 0. `summary`: a last-wins statement (see `Write.summary`).

        On replay, a pattern event already recorded before the restart is not written again, and nothing is
        written for a run another process took over (returns 0)."""
        engine = self.engine
        journal = engine.journal
        if engine.fenced or (journal is not None and journal.take_event(kind, step_id)):
            return 0
        event = Event(kind, self.run_id, payload, step_id)
        write = Write(statements, [event], summary=summary)
        if durable != "now":
            queued = engine.audit.enqueue(write, lambda outcome: engine.posted(outcome, self.run_id, event))
            if durable == "before_use":
                engine.unsaved = queued
            return 0
        engine.raise_posting_error()
        seq = (await engine.audit.write(write))[0]
        engine.notify(self.run_id, kind, payload, step_id)
        return seq

    async def durable(self) -> None:
        """Return once the run's records posted with `durable="before_use"` are committed: called before the
        run acts on them (the next model or tool call). Raises the error of a record that could not be."""
        unsaved = self.engine.unsaved
        if unsaved is not None and not unsaved.settled:
            await self.engine.audit.durable()
        self.engine.unsaved = None
        self.engine.raise_posting_error()

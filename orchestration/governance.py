"""The effective policy of each agent, and the gate its tool calls go through.

Team policy, then the agent's group's policy, then the agent's own: each later one's rules come first (first
match wins) and its limits replace the earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestration.config import TeamConfig
from orchestration.errors import ConfigError
from policies.engine import Action, Decision, evaluate
from policies.limits import Limits
from policies.load import PolicyError, load_policy, merge
from policies.redaction import DEFAULT_PATTERNS, DEFAULT_SECRET_ENV, Redactor
from policies.schema import Policy

if TYPE_CHECKING:  # the tool gate loads the MCP client; `config check` and `approve` only read policies
    from orchestration.agent_tools import GateSettings
    from orchestration.toolbox import RemoteTool


@dataclass
class PolicyBook:
    """Every agent's effective policy, loaded once per runtime."""

    config: TeamConfig
    _cache: dict[str, Policy] = field(default_factory=dict)

    def team_policy(self) -> Policy:
        return self._load(self.config.policy, "policy")

    def for_agent(self, agent: str) -> Policy:
        """The effective policy of `agent` (a team's members use their own)."""
        if agent not in self._cache:
            policy = self.team_policy()
            spec = self.config.agents.get(agent)
            group = spec.group if spec else None
            if group and group in self.config.group_policies:
                policy = merge(
                    policy, self._load(self.config.group_policies[group], f"group_policies.{group}")
                )
            if spec and spec.policy:
                policy = merge(policy, self._load(spec.policy, f"agents.{agent}.policy"))
            self._cache[agent] = policy
        return self._cache[agent]

    def gate(self, agent: str) -> GateSettings:
        """How `agent`'s tool calls are decided."""
        from orchestration.agent_tools import GateSettings

        policy = self.for_agent(agent)
        group = self.config.agents[agent].group if agent in self.config.agents else None

        def decide(caller: str, tool: RemoteTool, arguments: dict[str, Any]) -> Decision:
            return evaluate(
                policy,
                Action(
                    agent=caller,
                    group=group,
                    tool=tool.qualified,
                    annotations=tool.annotations,
                    arguments=arguments,
                ),
            )

        return GateSettings(decide=decide, stop_on_denied=policy.on_denied == "stop")

    def limits(self) -> Limits:
        """Run limits: built-in defaults, then the team policy's, then the config's explicit `[limits]`."""
        merged = Limits()
        policy_limits = self.team_policy().limits
        if policy_limits is not None:
            merged = merged.merged(**policy_limits.model_dump(exclude_unset=True))
        return merged.merged(**self.config.limits.model_dump(exclude_unset=True))

    def load_all(self) -> list[Policy]:
        """Every agent's effective policy, loaded now (at start) so a broken file fails the start, not a run;
        raises `ConfigError`."""
        return [self.team_policy(), *(self.for_agent(name) for name in self.config.agents)]

    def redactor(self) -> Redactor:
        """Default redaction plus the patterns and secret env vars of every policy in use (the team's, the
        groups' and the agents'): the audit writer is shared, so one agent's secret is everyone's."""
        patterns, secret_env = dict.fromkeys(DEFAULT_PATTERNS), dict.fromkeys(DEFAULT_SECRET_ENV)
        for policy in self.load_all():
            patterns.update(dict.fromkeys(policy.redaction.patterns))
            secret_env.update(dict.fromkeys(policy.redaction.secret_env))
        return Redactor(patterns=list(patterns), secret_env=list(secret_env))

    def _load(self, ref: str, where: str) -> Policy:
        key = f"file:{ref}"
        if key not in self._cache:
            try:
                self._cache[key] = load_policy(ref)
            except PolicyError as exc:
                raise ConfigError(f"{where} = {ref!r}: {exc}") from None
        return self._cache[key]

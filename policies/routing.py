"""Who may route work to whom: handoffs and delegation between agents, by control model.

Plain data in, a decision out; `orchestration` calls this before offering or following a route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONTROLS = ("centralized", "decentralized", "federated", "hierarchical")


@dataclass(frozen=True)
class RouteDecision:
    allowed: bool
    reason: str


def may_route(
    source: str,
    target: str,
    *,
    control: str,
    routes: Mapping[str, Sequence[str]],
    groups: Mapping[str, str | None],
) -> RouteDecision:
    """May agent `source` hand work to `target` under `control`?

    An agent's `routes` lists names, `group:NAME`, or `*` (anyone). Under `federated` control `*` stays inside
    the agent's own group: crossing a group boundary needs the target or its group listed explicitly.
    Under `centralized` control only the orchestrator routes, so agent-to-agent routes are refused.
    """
    if source == target:
        return RouteDecision(False, f"{source!r} cannot hand off to itself")
    if control == "centralized":
        return RouteDecision(
            False,
            "agents do not route among themselves under centralized control; use control='decentralized'",
        )
    allowed = list(routes.get(source, ()))
    target_group = groups.get(target)
    explicit = target in allowed or (target_group is not None and f"group:{target_group}" in allowed)
    if explicit:
        return RouteDecision(True, "listed in routes")
    if "*" in allowed:
        if control == "federated" and groups.get(source) != target_group:
            return RouteDecision(
                False,
                f"{target!r} is in another group ({target_group or 'none'}); under federated control a route "
                f"across groups must be listed explicitly in {source!r}'s routes",
            )
        return RouteDecision(True, "routes allow anyone")
    return RouteDecision(False, f"{target!r} is not in {source!r}'s routes ({', '.join(allowed) or 'none'})")

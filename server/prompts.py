"""Prompts: ready-made requests a user picks in the host (a `/` command or a menu), each naming the tool to call.

A prompt only writes the request to the assistant; the assistant then calls the tool, so the run, its
guardrails and its audit are the same as when the user types the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from orchestration.config import TeamConfig


def _pick(team: TeamConfig, preferred: list[str], count: int) -> list[str]:
    """`count` members of the team: the preferred names that exist first, then the others in config order."""
    names = [*[n for n in preferred if n in team.agents], *[n for n in team.agents if n not in preferred]]
    return names[:count]


def _names(value: str | None, default: list[str]) -> list[str]:
    given = [n.strip() for n in (value or "").split(",") if n.strip()]
    return given or default


def register(server: MCPServer[Any], team: TeamConfig) -> None:
    """Add the prompts to `server`, with defaults taken from `team`."""
    reviewers_default = _pick(team, ["reviewer", "researcher"], 2)
    debaters_default = _pick(team, ["researcher", "reviewer", "writer"], 2)

    @server.prompt(
        title="Second opinion from two reviewers",
        description="Two agents review the same text or answer independently; you get both and where they differ.",
    )
    def second_opinion(
        subject: Annotated[str, Field(description="What to review: a draft, a plan, an answer, code.")],
        reviewers: Annotated[
            str | None, Field(description="Comma-separated agent names (default: two of the team).")
        ] = None,
    ) -> str:
        agents = _names(reviewers, reviewers_default)
        return (
            f"Get a second opinion from {len(agents)} reviewers working independently. Call the concertmaster "
            f"tool run_concurrent with agents {agents}, reconcile 'all', and this task:\n\n"
            f"Review the following. List concrete errors, gaps and risks, most important first.\n\n{subject}\n\n"
            "Then show me each reviewer's points and say where they agree and where they differ."
        )

    @server.prompt(
        title="Debate a question",
        description="Agents argue a question on a shared transcript for a few turns; you get the conclusion.",
    )
    def debate(
        question: Annotated[str, Field(description="The question to debate.")],
        agents: Annotated[
            str | None,
            Field(description="Comma-separated agent names, at least two (default: two of the team)."),
        ] = None,
        turns: Annotated[str | None, Field(description="How many turns in all (default 6).")] = None,
    ) -> str:
        members = _names(agents, debaters_default)
        max_turns = int(turns) if turns and turns.strip().isdigit() else 6
        return (
            f"Have agents {members} debate this question. Call the concertmaster tool start_group_chat with "
            f"agents {members}, max_turns {max_turns} and this topic:\n\n{question}\n\n"
            "If the run is not done when the tool returns, follow it with get_run. Then give me the conclusion, "
            "the strongest argument on each side, and what is still open."
        )

    @server.prompt(
        title="Plan and execute a goal",
        description="A planner splits the goal into subtasks for the team; you see the plan and its cost first.",
    )
    def plan_goal(
        goal: Annotated[str, Field(description="What you want done.")],
    ) -> str:
        return (
            "Reach this goal with the concertmaster team. First call the tool plan_and_execute with dry_run true "
            f"and this goal:\n\n{goal}\n\n"
            "Show me the plan (subtasks, agents, dependencies) and its estimated cost, and ask me whether to go "
            "ahead. Only if I agree, call plan_and_execute again with the same goal and dry_run false, follow "
            "it with get_run until it is done, and give me the result."
        )

    @server.prompt(
        title="Review pending approvals",
        description="Go through the actions agents are waiting on; you decide each one.",
    )
    def review_approvals() -> str:
        return (
            "Call the concertmaster tool list_pending_approvals. For each action, show me the agent, the tool, "
            "the exact arguments, the reason it needs approval and when it expires, and ask me: approve or "
            "deny? Record my answer with approve_action (decision, my reason, and the digest shown). Never "
            "decide for me, and do not call approve_action for an action I have not answered. If nothing is "
            "waiting, say so."
        )

    _ = second_opinion, debate, plan_goal, review_approvals

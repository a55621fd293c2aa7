"""Who is calling, and which runs and approvals they may see and decide.

Over HTTP the principal is the name of the bearer token's line in the tokens file (see `server/http_auth.py`);
over stdio and in-process it is the local user, who owns the database anyway and sees everything. A run belongs
to the principal that started it (`runs.principal`); another principal can neither read nor decide it unless
its token is marked `approver`. To others, a run they may not see does not exist (same error as an unknown id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context

from orchestration.errors import InvalidInputError, RunNotFoundError
from server.app import state
from server.http_auth import APPROVER, local_user


@dataclass(frozen=True)
class Principal:
    """The caller of a tool."""

    name: str
    approver: bool
    """May see and decide every principal's runs."""

    def may_see(self, run: dict[str, Any]) -> bool:
        return self.approver or run.get("principal") == self.name


def current_principal() -> Principal:
    """The principal of the request being handled."""
    token = get_access_token()
    if token is None:  # stdio, in-process: the local user who owns the database
        return Principal(local_user(), approver=True)
    return Principal(token.client_id, approver=APPROVER in token.scopes)


def own_run(ctx: Context[Any, Any], run_id: str) -> dict[str, Any]:
    """The run's row if the caller may see it; else `RunNotFoundError`, as for an unknown id."""
    run = state(ctx).runtime.get_run(run_id)
    if not current_principal().may_see(run):
        raise RunNotFoundError(run_id)
    return run


def own_action(ctx: Context[Any, Any], action_id: str) -> None:
    """Refuse a decision on an action of a run the caller may not see (as if the action did not exist)."""
    rows = state(ctx).runtime.reader.query(
        "select r.principal from pending_requests p join runs r on r.id = p.run_id where p.id = ?",
        (action_id,),
    )
    if rows and not current_principal().may_see(rows[0]):
        raise InvalidInputError(
            "unknown action id; list_pending_approvals (or `concertmaster approvals`) shows the open ones"
        )

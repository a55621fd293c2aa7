"""Human approval of risky actions, on top of the pending-request mechanism.

An action that needs approval becomes a pending request of kind `approval`, bound to a digest of the exact
tool and arguments. A decision arrives through one of three channels (the `approve_action` tool, MCP
elicitation, the CLI from another process), is checked here in one place, and resolves the request exactly
once. The waiting run checks the decision's digest against what it is about to execute before executing it.
Rejected decisions (unknown, replayed, expired, forged, mismatched, human-only through the tool) are audited.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import AuditReader
from orchestration.audit.schema import now
from orchestration.context import RunContext
from orchestration.errors import InvalidInputError
from orchestration.pending import PendingRequests
from orchestration.telemetry import traced_approval

HUMAN_CHANNELS = ("elicitation", "cli")
Choice = Literal["approve", "deny"]


def action_digest(tool: str, arguments: dict[str, Any]) -> str:
    """The digest a decision is bound to: the exact tool and arguments."""
    material = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What came of an approval request."""

    approved: bool
    reason: str
    channel: str
    decided_by: str | None = None


def question(payload: dict[str, Any]) -> str:
    """What to ask the human, in one paragraph."""
    args = json.dumps(payload.get("arguments", {}), ensure_ascii=False)
    if len(args) > 500:
        args = args[:497] + "..."
    return (
        f"Agent {payload.get('agent')!r} wants to call {payload.get('tool')} with {args}. "
        f"Policy: {payload.get('reason')} (rule {payload.get('rule') or 'default'}). Approve or deny?"
    )


@traced_approval
async def request_approval(
    ctx: RunContext,
    *,
    agent: str,
    tool: str,
    arguments: dict[str, Any],
    reason: str,
    rule: str | None,
    human_only: bool,
    ttl_s: float,
    step_id: str | None,
) -> Verdict:
    """Park the run until a human decides on this exact action (or the request expires)."""
    assert ctx.engine.pending is not None, "approvals need a runtime's pending requests"
    digest = action_digest(tool, arguments)
    payload = {
        "agent": agent,
        "tool": tool,
        "arguments": arguments,
        "reason": reason,
        "rule": rule,
        "human_only": human_only,
        "digest": digest,
    }
    payload["question"] = question(payload)
    try:
        answer, channel = await ctx.engine.pending.ask(
            ctx.run_id,
            "approval",
            payload,
            step_id=step_id,
            timeout=ttl_s,
            park_as="awaiting_approval",
            adopt=asked_before(ctx, digest, step_id),
        )
    except TimeoutError:
        return Verdict(False, f"nobody decided within {ttl_s:g} s; the request expired", "expiry")
    decision = answer if isinstance(answer, dict) else {}
    if decision.get("digest") != digest:
        # the decision was made for a different action than the one about to run: never execute it
        await ctx.record(
            "approval_rejected", {"tool": tool, "why": "digest mismatch", "channel": channel}, step_id=step_id
        )
        return Verdict(False, "the decision did not match this exact action (digest mismatch)", channel)
    approved = decision.get("decision") == "approve"
    return Verdict(approved, str(decision.get("reason") or ""), channel, decision.get("decided_by"))


def asked_before(ctx: RunContext, digest: str, step_id: str | None) -> dict[str, Any] | None:
    """The approval of this exact action (same step) that the run asked before a restart: still open (it is
    waited on again) or already decided (the decision is applied, nobody is asked twice). Each recorded
    request is adopted once, oldest first, so two identical actions in one step are two questions."""
    journal = ctx.engine.journal
    if journal is None:
        return None
    with AuditReader(ctx.engine.audit.path) as reader:
        rows = reader.query(
            "select * from pending_requests where run_id = ? and kind = 'approval' and step_id is ?"
            " and status in ('pending', 'answered', 'resolved') and json_extract(payload, '$.digest') = ?"
            " order by created_at, rowid",
            (ctx.run_id, step_id, digest),
        )
    for row in rows:
        if row["id"] not in journal.adopted_requests:
            journal.adopted_requests.add(row["id"])
            return row
    return None


class Approvals:
    """Deciding on pending approvals, from the server process (tool, elicitation)."""

    def __init__(self, pending: PendingRequests, audit: AuditLog, reader: AuditReader) -> None:
        self.pending = pending
        self.audit = audit
        self.reader = reader

    async def decide(
        self,
        action_id: str,
        choice: Choice,
        reason: str,
        *,
        channel: str,
        decided_by: str | None = None,
        digest: str | None = None,
    ) -> dict[str, Any]:
        """Apply one decision, or raise `InvalidInputError` (audited) saying why it was refused."""
        request = self.pending.get(action_id)
        row = self.reader.query("select * from pending_requests where id = ?", (action_id,))
        problem = check_decision(row[0] if row else None, choice, channel=channel, digest=digest)
        if problem is None and (request is None or request.kind != "approval"):
            problem = (
                f"action {action_id!r} is not waiting in this server (already decided, or its run ended)"
            )
        if problem is not None:
            await self.audit.event(
                "approval_rejected",
                row[0]["run_id"] if row else None,
                {"action_id": action_id, "why": problem, "channel": channel},
            )
            raise InvalidInputError(problem)
        assert request is not None
        response = {
            "decision": choice,
            "reason": reason,
            "digest": request.payload["digest"],
            "decided_by": decided_by,
            "channel": channel,
        }
        await self.pending.resolve(action_id, response, channel=channel, decided_by=decided_by)
        await self.audit.event(
            "approval_decided",
            request.run_id,
            {
                "action_id": action_id,
                "decision": choice,
                "reason": reason,
                "channel": channel,
                "decided_by": decided_by,
                "tool": request.payload.get("tool"),
            },
            step_id=request.step_id,
        )
        return response


def check_decision(
    row: dict[str, Any] | None, choice: str, *, channel: str, digest: str | None
) -> str | None:
    """Why a decision must be refused, or None if it may be applied."""
    if row is None or row["kind"] != "approval":
        return "unknown action id; list_pending_approvals (or `concertmaster approvals`) shows the open ones"
    if row["status"] != "pending":
        return f"action {row['id']} was already decided ({row['status']}); a decision is used once"
    if choice not in ("approve", "deny"):
        return "decision must be 'approve' or 'deny'"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) < datetime.now(UTC):
        return f"action {row['id']} expired at {row['expires_at']}; the agent was told it was not approved"
    payload = json.loads(row["payload"])
    if digest is not None and digest != payload.get("digest"):
        return "the digest does not match the pending action (it changed, or the decision is for another one)"
    if payload.get("human_only") and channel not in HUMAN_CHANNELS:
        return (
            "this action needs a human decision through elicitation or the CLI "
            f"(`concertmaster approve {row['id']}`), not through a tool call"
        )
    return None


def decide_from_cli(db: Path, action_id: str, choice: Choice, reason: str) -> dict[str, Any]:
    """Record a human's decision from another process; the server picks it up and resumes the run."""
    with AuditReader(db) as reader:
        rows = reader.query("select * from pending_requests where id = ?", (action_id,))
    row = rows[0] if rows else None
    with AuditLog(db) as audit:
        problem = check_decision(row, choice, channel="cli", digest=None)
        if problem is not None:
            audit.write_sync(
                Write(
                    events=[
                        Event(
                            "approval_rejected",
                            row["run_id"] if row else None,
                            {"action_id": action_id, "why": problem, "channel": "cli"},
                        )
                    ]
                )
            )
            raise InvalidInputError(problem)
        assert row is not None
        who = _user()
        response = {
            "decision": choice,
            "reason": reason,
            "digest": json.loads(row["payload"])["digest"],
            "decided_by": who,
            "channel": "cli",
        }
        audit.write_sync(
            Write(
                [
                    (
                        "update pending_requests set status = 'answered', response = ?, channel = 'cli', decided_by = ?,"
                        " resolved_at = ? where id = ? and status = 'pending'",
                        (json.dumps(response), who, now(), action_id),
                    )
                ],
                [
                    Event(
                        "approval_decided",
                        row["run_id"],
                        {
                            "action_id": action_id,
                            "decision": choice,
                            "reason": reason,
                            "channel": "cli",
                            "decided_by": who,
                        },
                        row["step_id"],
                    )
                ],
            )
        )
    return response


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli-user"

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
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from orchestration.audit.log import AuditLog, Event, Write, event_hash
from orchestration.audit.read import AuditReader
from orchestration.audit.schema import now
from orchestration.errors import InvalidInputError, WriteConflict
from orchestration.telemetry import traced_approval

if TYPE_CHECKING:  # annotations only: `concertmaster approvals` then never loads the config models (pydantic)
    from orchestration.context import RunContext
    from orchestration.pending import PendingRequests

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
    request is adopted once, oldest first, so two identical actions in one step are two questions.

    Only requests bound to the chain count, and a decision is taken from its chained `approval_decided` event
    (`chained_response`; for a resolved request, `response` is replaced by it), never from the row: a forged
    row answers nothing (the run asks again)."""
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
            if row["id"] in journal.adopted_requests:
                continue
            journal.adopted_requests.add(row["id"])
            chained, _ = chained_request(reader, row["id"])
            if chained is None or chained.get("digest") != digest:
                continue  # not what this run asked (or not bound to the chain)
            decision = chained_decision(reader, row["id"]) if row["status"] != "pending" else None
            if row["status"] == "resolved":
                if decision is None:
                    continue  # "decided" with no chained decision: forged, ask again
                return {**row, "response": json.dumps(decision)}
            return {**row, "chained_response": decision}
    return None


# -- the chain is the authority -------------------------------------------------------------------------------
def _chained_event(reader: AuditReader, kind: str, action_id: str) -> dict[str, Any] | None:
    """The first event of `kind` about `action_id`, if its hash is intact and the next event (or the head)
    follows it: an edited event is not trusted, even if the rest of the file was not yet verified."""
    rows = reader.query(
        "select * from events where kind = ? and json_extract(payload, '$.action_id') = ? order by seq limit 1",
        (kind, action_id),
    )
    if not rows:
        return None
    ev = rows[0]
    digest = event_hash(
        ev["prev_hash"], ev["seq"], ev["run_id"], ev["step_id"], ev["kind"], ev["payload"], ev["created_at"]
    )
    after = reader.query("select prev_hash from events where seq = ?", (ev["seq"] + 1,))
    follows = after[0]["prev_hash"] if after else reader.query("select hash from audit_head")[0]["hash"]
    if digest != ev["hash"] or follows != ev["hash"]:
        return {"_broken": True}
    payload: dict[str, Any] = json.loads(ev["payload"])
    return payload


def chained_request(reader: AuditReader, action_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """What the run asked about `action_id`, from its chained `approval_requested` event: `(payload, None)`, or
    `(None, why it cannot be trusted)`."""
    payload = _chained_event(reader, "approval_requested", action_id)
    if payload is None:
        return None, (
            f"action {action_id!r} has no approval_requested event in the audit chain; it cannot be decided"
            " (run `concertmaster audit verify`)"
        )
    if payload.get("_broken") or payload.get("digest") != action_digest(
        str(payload.get("tool")), payload.get("arguments") or {}
    ):
        return None, (
            f"the audit event of action {action_id!r} was edited; it cannot be decided"
            " (run `concertmaster audit verify`)"
        )
    return payload, None


def chained_decision(reader: AuditReader, action_id: str) -> dict[str, Any] | None:
    """The decision recorded for `action_id` in its chained `approval_decided` event, as a response."""
    payload = _chained_event(reader, "approval_decided", action_id)
    if payload is None or payload.get("_broken") or not payload.get("digest"):
        return None
    return {k: payload.get(k) for k in ("decision", "reason", "digest", "decided_by", "channel")}


def open_approvals(
    reader: AuditReader, run_id: str | None = None, *, principal: str | None = None
) -> list[dict[str, Any]]:
    """Approvals waiting for a human, as the run asked them (the chained event), with the request's id, run and
    expiry: what a human is shown. A request whose event is missing or edited is shown with `problem` set."""
    shown = []
    for row in reader.pending(kind="approval", run_id=run_id, principal=principal):
        payload, problem = chained_request(reader, row["id"])
        shown.append(
            {
                "id": row["id"],
                "run_id": row["run_id"],
                "expires_at": (payload or {}).get("expires_at", row["expires_at"]),
                "payload": payload or json.loads(row["payload"]),
                "problem": problem,
            }
        )
    return shown


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
        """Apply one decision, or raise `InvalidInputError` (audited) saying why it was refused.

        The request this process holds in memory (what the run asked, also in the chain) is the authority for
        `human_only`, the digest and the expiry, not the database row. Exactly one decision wins: a
        compare-and-set on the row, in the same transaction as `approval_decided`; a loser is told it lost.
        """
        request = self.pending.get(action_id)
        row = self.reader.query("select * from pending_requests where id = ?", (action_id,))
        run_id = row[0]["run_id"] if row else (request.run_id if request else None)
        problem: str | None
        if request is None or request.kind != "approval":
            if not row or row[0]["kind"] != "approval":
                problem = "unknown action id; list_pending_approvals (or `concertmaster approvals`) shows the open ones"
            elif row[0]["status"] != "pending":
                problem = _already_decided(self.reader, action_id, row[0]["status"])
            else:
                problem = (
                    f"action {action_id!r} is not waiting in this server (its run is owned by another one)"
                )
        else:
            problem = check_decision(
                request.payload,
                "pending",
                request.expires_at,
                choice,
                channel=channel,
                digest=digest,
                action_id=action_id,
            )
        if problem is not None:
            await self._reject(run_id, action_id, problem, channel)
        assert request is not None
        response = {
            "decision": choice,
            "reason": reason,
            "digest": request.payload["digest"],
            "decided_by": decided_by,
            "channel": channel,
        }
        decided = Event(
            "approval_decided",
            request.run_id,
            {
                "action_id": action_id,
                "decision": choice,
                "reason": reason,
                "channel": channel,
                "decided_by": decided_by,
                "tool": request.payload.get("tool"),
                "digest": request.payload["digest"],
            },
            request.step_id,
        )
        try:
            await self.pending.resolve(
                action_id,
                response,
                channel=channel,
                decided_by=decided_by,
                events=[decided],
                expect=("pending",),
            )
        except (WriteConflict, InvalidInputError):
            await self._reject(run_id, action_id, _lost(self.reader, action_id, choice), channel)
        return response

    async def _reject(self, run_id: str | None, action_id: str, problem: str, channel: str) -> NoReturn:
        await self.audit.event(
            "approval_rejected", run_id, {"action_id": action_id, "why": problem, "channel": channel}
        )
        raise InvalidInputError(problem)


def _already_decided(reader: AuditReader, action_id: str, status: str) -> str:
    won = chained_decision(reader, action_id)
    if won is None:
        return f"action {action_id} was already decided ({status}); a decision is used once"
    return (
        f"action {action_id} was already decided: {won['decision']} via {won['channel']}"
        f"{' by ' + str(won['decided_by']) if won.get('decided_by') else ''}; a decision is used once"
    )


def _lost(reader: AuditReader, action_id: str, choice: str) -> str:
    return f"{_already_decided(reader, action_id, 'just now')}; your {choice} was not applied"


def check_decision(
    request: dict[str, Any] | None,
    status: str,
    expires_at: str | None,
    choice: str,
    *,
    channel: str,
    digest: str | None,
    action_id: str,
) -> str | None:
    """Why a decision must be refused, or None if it may be applied. `request` is what the run asked (from
    memory or the chained event), never the editable row."""
    if request is None:
        return "unknown action id; list_pending_approvals (or `concertmaster approvals`) shows the open ones"
    if status != "pending":
        return f"action {action_id} was already decided ({status}); a decision is used once"
    if choice not in ("approve", "deny"):
        return "decision must be 'approve' or 'deny'"
    if expires_at and datetime.fromisoformat(expires_at) < datetime.now(UTC):
        return f"action {action_id} expired at {expires_at}; the agent was told it was not approved"
    if digest is not None and digest != request.get("digest"):
        return "the digest does not match the pending action (it changed, or the decision is for another one)"
    if request.get("human_only") and channel not in HUMAN_CHANNELS:
        return (
            "this action needs a human decision through elicitation or the CLI "
            f"(`concertmaster approve {action_id}`), not through a tool call"
        )
    return None


def decide_from_cli(db: Path, action_id: str, choice: Choice, reason: str) -> dict[str, Any]:
    """Record a human's decision from another process; the server picks it up and resumes the run.

    Checked against the chained `approval_requested` event; exactly one decision wins (a compare-and-set on
    the row in the same transaction as `approval_decided`); a loser gets `InvalidInputError` saying it lost.
    """
    with AuditReader(db) as reader:
        rows = reader.query("select * from pending_requests where id = ?", (action_id,))
        row = rows[0] if rows and rows[0]["kind"] == "approval" else None
        request, problem = chained_request(reader, action_id) if row else (None, None)
        if row is not None and row["status"] != "pending":
            problem = _already_decided(reader, action_id, row["status"])
        elif problem is None:
            problem = check_decision(
                request,
                "pending",
                (request or {}).get("expires_at"),
                choice,
                channel="cli",
                digest=None,
                action_id=action_id,
            )
    run_id = row["run_id"] if row else None
    with AuditLog(db) as audit:

        def reject(why: str) -> NoReturn:
            audit.write_sync(
                Write(
                    events=[
                        Event(
                            "approval_rejected",
                            run_id,
                            {"action_id": action_id, "why": why, "channel": "cli"},
                        )
                    ]
                )
            )
            raise InvalidInputError(why)

        if problem is not None:
            reject(problem)
        assert row is not None and request is not None
        who = _user()
        response = {
            "decision": choice,
            "reason": reason,
            "digest": request["digest"],
            "decided_by": who,
            "channel": "cli",
        }
        decided = Event(
            "approval_decided",
            row["run_id"],
            {
                "action_id": action_id,
                "decision": choice,
                "reason": reason,
                "channel": "cli",
                "decided_by": who,
                "tool": request.get("tool"),
                "digest": request["digest"],
            },
            row["step_id"],
        )
        guard = (
            "update pending_requests set status = 'answered', response = ?, channel = 'cli', decided_by = ?,"
            " resolved_at = ? where id = ? and status = 'pending'",
            (json.dumps(response), who, now(), action_id),
        )
        try:
            audit.write_sync(Write(events=[decided], guard=guard))
        except WriteConflict:
            with AuditReader(db) as reader:
                reject(_lost(reader, action_id, choice))
    return response


async def answers_from_elsewhere(
    reader: AuditReader, audit: AuditLog, open_ids: set[str]
) -> list[dict[str, Any]]:
    """Decisions another process (the CLI) recorded for requests open here, from their chained
    `approval_decided` events. A row marked answered without such an event (forged) is refused: audited, and
    the row is set back to pending."""
    answers = []
    for row in reader.query(
        "select id, run_id, kind, channel, decided_by from pending_requests where status = 'answered'"
    ):
        if row["id"] not in open_ids:
            continue
        decision = chained_decision(reader, row["id"]) if row["kind"] == "approval" else None
        if decision is not None:
            answers.append({**row, "response": decision, "channel": decision["channel"] or "cli"})
            continue
        why = "the row says answered but no approval_decided event is in the audit chain (forged); ignored"
        try:
            await audit.write(
                Write(
                    events=[Event("approval_rejected", row["run_id"], {"action_id": row["id"], "why": why})],
                    guard=(
                        "update pending_requests set status = 'pending', response = null, channel = null,"
                        " decided_by = null, resolved_at = null where id = ? and status = 'answered'",
                        (row["id"],),
                    ),
                )
            )
        except WriteConflict:
            pass  # changed meanwhile: looked at again next round
    return answers


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli-user"

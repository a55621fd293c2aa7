"""What the audit's tables, views, event kinds and stop reasons mean: one source for the `query_audit` schema
resource, the Datasette metadata of `concertmaster ui`, and the README (a test keeps them in step with the code).
"""

from __future__ import annotations

TABLES: dict[str, str] = {
    "runs": "One row per run: pattern, model of control, status, stop_reason, task, (partial) output, token and cost totals.",
    "steps": "One row per agent step (one agent's turn: model <-> tools); parent_step_id nests a sub-team's steps.",
    "events": "The append-only, hash-chained log; every change to runs/steps is written with its event. JSON payload.",
    "pending_requests": "What runs waited for: human approvals and requests for the client's model.",
}

VIEWS: dict[str, str] = {
    "run_summary": "Runs with duration_ms, step count and the agents that took part.",
    "model_calls": "One row per model call: agent, provider, model, tokens (incl. cache), cost, latency, stop_reason.",
    "agent_usage": "Per agent, provider and model: steps, successes, failures, tokens, cost, mean latency.",
    "daily_cost": "Runs, tokens and cost per UTC day.",
    "approvals": "One row per action that needed a human: tool, arguments, rule, status approved/denied/pending/expired.",
    "tool_calls": "One row per tool call an agent made: tool as server.tool, decision allowed/approved/denied/refused, "
    "decided_by policy/human/expiry/concertmaster, rule, error, latency.",
    "transcript": "Speaker turns only, in order (turn 1, 2...), of group chats, magentic runs and handoffs.",
    "guardrail_stops": "Runs stopped by a guardrail or a rule: stop_reason, detail, last agent, partial output.",
    "run_cost_by_agent": "Per run and agent: steps, tokens, cost and time (sub-team steps excluded; their members count).",
}

COLUMNS: dict[str, dict[str, str]] = {
    "runs": {
        "id": "run id (run_...)",
        "pattern": "delegate, sequential, concurrent, handoff, group_chat, magentic, plan",
        "control": "model of control: centralized, decentralized, federated, hierarchical",
        "status": "running, awaiting_input, awaiting_approval, succeeded, failed, stopped, cancelled, interrupted",
        "stop_reason": "why it ended (see the README's list)",
        "input": "the task",
        "output": "the (partial) result",
        "error": "what went wrong",
        "options": "JSON: the run's arguments and limits",
        "started_at": "UTC ISO 8601",
        "ended_at": "UTC ISO 8601",
        "input_tokens": "total of the run's model calls (NULL: none reported)",
        "output_tokens": "total of the run's model calls (NULL: none reported)",
        "cost_usd": "total in USD (NULL: unknown price)",
        "principal": "who started it: the HTTP token's name, or the local user (NULL for older runs)",
    },
    "steps": {
        "id": "step id",
        "run_id": "the run",
        "parent_step_id": "the step a sub-team or consulted agent ran under",
        "key": "deterministic key inside the run (turn.agent, r0.subtask, team/...)",
        "agent": "agent (or team) name",
        "model": "model that answered; team:<pattern> for a sub-team",
        "provider": "anthropic, sampling, scripted, team",
        "status": "running, succeeded, failed, stopped, cancelled, interrupted",
        "latency_ms": "wall time of the step",
    },
    "events": {
        "seq": "1, 2, 3... with no gaps",
        "run_id": "the run",
        "step_id": "the step",
        "kind": "what happened (see the README's list of event kinds)",
        "payload": "JSON details",
        "hash": "SHA-256 over the previous hash and this event",
    },
    "tool_calls": {
        "tool": "server.tool; concertmaster's own tools read concertmaster.transfer_to_X / consult_X",
        "decision": "allowed, approved (a human said yes), denied (policy or human or expiry), refused (unknown tool, "
        "tool-call limit, changed definition)",
        "decided_by": "policy, human, expiry, concertmaster",
        "policy_decision": "the policy's ruling: allow, require_approval, deny",
        "rule": "the policy rule that matched",
        "latency_ms": "the whole call, including any wait for a human",
        "tool_latency_ms": "the downstream server's time only",
    },
    "transcript": {
        "turn": "1, 2, 3... in the run",
        "speaker": "the agent who spoke",
        "kind": "turn, or consult (an agent asked by another in a handoff run)",
        "text": "what it said",
    },
}

EVENT_KINDS: dict[str, str] = {
    "run_started": "a run was recorded and started (pattern, control, input, options)",
    "run_finished": "a run ended (status, stop_reason, output, error)",
    "run_interrupted": "a run was marked interrupted at server start (its process was gone)",
    "run_resumed": "a run was resumed after a restart or a lapsed lease (owner, steps replayed, run time already used)",
    "step_started": "an agent (or sub-team) step began",
    "step_finished": "a step succeeded (output, latency)",
    "step_failed": "a step failed (error)",
    "step_cancelled": "a step was cancelled",
    "step_stopped": "a sub-team step was stopped by a guardrail",
    "step_resumed": "a step cut short by a restart continues from its recorded replies",
    "model_called": "one model call: provider, model, tokens incl. cache, cost, latency, the whole reply",
    "tool_call_started": "written right before a downstream tool call: one without a matching tool_called was in flight at a crash",
    "tool_called": "one tool call: tool (server__tool), arguments, result, is_error, latency",
    "policy_decided": "the policy's ruling on a tool call: allow, require_approval or deny, with rule and reason",
    "tool_definition_changed": "a downstream tool's definition changed since it was pinned; the call was refused",
    "input_requested": "the run waits for an answer (approval or the client's model)",
    "input_received": "the answer arrived (channel)",
    "input_expired": "nobody answered in time",
    "input_cancelled": "the wait ended without an answer (run cancelled or ended)",
    "input_readopted": "after a restart, the run waits again on the question it asked before",
    "approval_requested": "an action needs a human: what they are shown (agent, tool, arguments, reason, rule, human_only, digest, question, expires_at)",
    "approval_decided": "a human decided an action (decision, reason, channel, decided_by, digest)",
    "approval_rejected": "a decision was refused (unknown, replayed, expired, forged, mismatched, wrong channel)",
    "budget_extended": "a human extended a token/USD budget (on_budget = ask)",
    "budget_exceeded": "a model call's actual use passed a token/USD budget (limit, used, max); the next call stops the run",
    "handoff": "an agent handed the task over (transfer) or asked another (consult)",
    "escalated": "a handoff run gave the task back (loop_detected, max_handoffs)",
    "checkpoint": "a sequential checkpoint passed or failed an output",
    "reconciled": "concurrent answers were reconciled (rule, votes, winner)",
    "speaker_selected": "the next group chat speaker (how: round_robin, manager, round_robin_fallback)",
    "chat_terminated": "a group chat ended (conclusion, termination_phrase, max_turns)",
    "task_ledger": "magentic: the manager's facts, guesses and plan",
    "progress_ledger": "magentic: the manager's progress ledger of a round",
    "magentic_reset": "magentic: the plan was reset after stalls",
    "magentic_terminated": "magentic: the run stopped before the goal (max_rounds, max_resets)",
    "plan": "planner-executor: the validated plan",
    "plan_rejected": "planner-executor: an invalid plan (asked again once)",
    "subtask_finished": "planner-executor: one subtask of the DAG finished or failed",
    "evaluation": "planner-executor: the evaluator's score and feedback",
}

STOP_REASONS: dict[str, str] = {
    "completed": "the run finished normally",
    "max_steps": "guardrail: too many agent steps",
    "max_turns": "guardrail: a group chat ran out of turns (resolution in the error)",
    "max_handoffs": "guardrail: too many handoffs (escalated back)",
    "max_depth": "guardrail: teams nested too deep",
    "max_tokens": "guardrail: the token budget is spent",
    "max_cost_usd": "guardrail: the USD budget is spent",
    "run_timeout_s": "guardrail: the run took too long",
    "max_rounds": "magentic: out of rounds before the goal",
    "max_resets": "magentic: too many replans after stalls",
    "max_replans": "planner-executor: the evaluator's score stayed below the threshold",
    "loop_detected": "handoff: the task went round in a cycle (escalated back)",
    "checkpoint_failed": "sequential: an output failed its checkpoint",
    "disagreement": "concurrent: the answers did not agree (on_disagreement = fail / judge)",
    "escalation_required": "concurrent: a human must settle a disagreement",
    "all_agents_failed": "concurrent: every agent failed",
    "invalid_plan": "planner-executor: no valid plan",
    "dry_run": "planner-executor: the plan and its estimate only, nothing executed",
    "policy_denied": "a tool call was denied and the policy says on_denied = stop",
    "approval_denied": "a human denied an action and the policy says on_denied = stop",
    "step_failed": "an agent step failed (the error says which and why)",
    "cancelled": "cancelled by the user",
    "server_shutdown": "the server stopped while a run started from a bare body (library) was in progress",
    "server_restart": "found in progress at server start with no stored description to resume it from",
    "resume_failed": "a run could not be resumed after a restart (its description no longer builds)",
    "resume_required": 'its server stopped and [runs] resume = "manual": continue it with resume_run',
    "resume_limit": "it was resumed automatically max_auto_resumes times: continue it by hand",
    "internal_error": "a bug: the run failed, the server stayed up",
    "engine_error": "the Temporal engine refused to start the run (its workflow); the message says why",
    "guardrail_tripped": "a guardrail stopped it (the error names the limit)",
    "run_not_found": "a run it referred to does not exist",
    "error": "an error without a more specific reason (see the error column)",
    "provider_error": "the model provider failed",
    "model_unavailable": "no model could run an agent (no API key, no sampling)",
    "unknown_agent": "a run named an agent or team that does not exist",
    "invalid_input": "bad input found while the run ran",
    "config_error": "the team config was invalid",
    "audit_error": "the audit could not be written (locked by another connection, disk full): the SQLite error is in error",
    "conflict": "a write lost a race it had to win (someone else decided the same request first)",
    "tool_server_error": "a downstream MCP server failed in a way the run could not go on from",
}


def describe_schema() -> str:
    """The audit schema in a few paragraphs, for the `concertmaster://audit/schema` resource."""
    lines = ["# The concertmaster audit (SQLite)", "", "## Tables"]
    lines += [f"- {name}: {text}" for name, text in TABLES.items()]
    lines += ["", "## Views"]
    lines += [f"- {name}: {text}" for name, text in VIEWS.items()]
    lines += ["", "## Columns"]
    for table, columns in COLUMNS.items():
        lines.append(f"{table}: " + "; ".join(f"{c} = {t}" for c, t in columns.items()))
    lines += ["", "## Event kinds (events.kind)"]
    lines += [f"- {k}: {t}" for k, t in EVENT_KINDS.items()]
    lines += ["", "## Stop reasons (runs.stop_reason)"]
    lines += [f"- {k}: {t}" for k, t in STOP_REASONS.items()]
    lines += [
        "",
        "Timestamps are UTC ISO 8601 text; tokens and costs are NULL where nothing was reported.",
        "JSON payloads: json_extract(payload, '$.field').",
    ]
    return "\n".join(lines)


WEEK_AGO = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')"

QUESTIONS: dict[str, tuple[str, str]] = {
    "cost_per_agent_this_week": (
        "What did runs cost per agent this week?",
        "select c.agent, count(distinct c.run_id) as runs, sum(c.steps) as steps, sum(c.input_tokens) as input_tokens,"
        " sum(c.output_tokens) as output_tokens, round(sum(c.cost_usd), 6) as cost_usd"
        f" from run_cost_by_agent c join runs r on r.id = c.run_id where r.started_at >= {WEEK_AGO}"
        " group by c.agent order by cost_usd desc, c.agent",
    ),
    "cost_per_agent_of_a_run": (
        "Cost per agent of one run",
        "select agent, models, steps, input_tokens, output_tokens, cost_usd, latency_ms"
        " from run_cost_by_agent where run_id = :run_id order by cost_usd desc, agent",
    ),
    "denied_tool_calls_this_week": (
        "Tool calls denied or refused this week",
        "select created_at, run_id, agent, tool, decision, decided_by, rule, error from tool_calls"
        f" where decision in ('denied', 'refused') and created_at >= {WEEK_AGO} order by seq desc",
    ),
    "chat_transcript": (
        "The transcript of a chat, magentic or handoff run",
        "select turn, speaker, kind, text from transcript where run_id = :run_id order by turn",
    ),
    "guardrail_stops": (
        "Runs stopped by a guardrail or a rule",
        "select run_id, pattern, stop_reason, detail, last_agent, ended_at from guardrail_stops"
        " order by ended_at desc",
    ),
    "pending_approvals": (
        "Actions waiting for a human",
        "select action_id, run_id, agent, tool, arguments, reason, rule, created_at, expires_at from approvals"
        " where status = 'pending' order by created_at",
    ),
}
"""The common questions, answered in SQL: Datasette's canned queries, the README's examples, query_audit's tests.
`:run_id` is a parameter."""

"""The audit schema: an ordered list of migrations, each applied once and recorded.

The schema is a public interface (documented in README.md, "Audit"): migrations add, never rewrite history.
A new migration is a new function appended to `MIGRATIONS`; an applied one is never edited.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in `migrate` only: readers (`concertmaster runs`) never pay its ~40 ms
    import sqlite_utils

GENESIS_HASH = "0" * 64


def _v1_core(db: sqlite_utils.Database) -> None:
    """runs, steps, events (hash-chained), the chain head, pending requests."""
    db.table("runs").create(
        {
            "id": str,
            "pattern": str,
            "control": str,
            "status": str,
            "stop_reason": str,
            "input": str,
            "output": str,
            "error": str,
            "options": str,
            "started_at": str,
            "ended_at": str,
            "input_tokens": int,
            "output_tokens": int,
            "cost_usd": float,
        },
        pk="id",
        not_null={"pattern", "status", "input", "started_at"},
        defaults={"control": "centralized"},
    )
    db.table("steps").create(
        {
            "id": str,
            "run_id": str,
            "parent_step_id": str,
            "key": str,
            "agent": str,
            "model": str,
            "provider": str,
            "status": str,
            "input": str,
            "output": str,
            "error": str,
            "started_at": str,
            "ended_at": str,
            "latency_ms": float,
            "input_tokens": int,
            "output_tokens": int,
            "cost_usd": float,
        },
        pk="id",
        not_null={"run_id", "key", "agent", "status", "started_at"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("steps").create_index(["run_id", "key"], unique=True)
    db.table("events").create(
        {
            "seq": int,
            "run_id": str,
            "step_id": str,
            "kind": str,
            "payload": str,
            "created_at": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="seq",
        not_null={"kind", "payload", "created_at", "prev_hash", "hash"},
    )
    db.table("events").create_index(["run_id", "seq"])
    db.table("events").create_index(["kind"])
    db.table("audit_head").create({"id": int, "seq": int, "hash": str}, pk="id")
    db.table("audit_head").insert({"id": 1, "seq": 0, "hash": GENESIS_HASH})
    db.table("pending_requests").create(
        {
            "id": str,
            "run_id": str,
            "step_id": str,
            "kind": str,
            "status": str,
            "payload": str,
            "response": str,
            "channel": str,
            "decided_by": str,
            "created_at": str,
            "resolved_at": str,
            "expires_at": str,
        },
        pk="id",
        not_null={"run_id", "kind", "status", "payload", "created_at"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("pending_requests").create_index(["status"])


def _v2_views(db: sqlite_utils.Database) -> None:
    """Views for the common questions, so nobody has to read JSON by hand."""
    db.create_view(
        "run_summary",
        """
        select r.id, r.pattern, r.control, r.status, r.stop_reason, r.started_at, r.ended_at,
               round((julianday(coalesce(r.ended_at, strftime('%Y-%m-%dT%H:%M:%fZ','now')))
                      - julianday(r.started_at)) * 86400000.0) as duration_ms,
               (select count(*) from steps s where s.run_id = r.id) as steps,
               (select group_concat(distinct s.agent) from steps s where s.run_id = r.id) as agents,
               r.input_tokens, r.output_tokens, r.cost_usd,
               substr(r.input, 1, 200) as input, substr(r.output, 1, 200) as output, r.error
        from runs r
        """,
    )
    db.create_view(
        "model_calls",
        """
        select e.seq, e.run_id, e.step_id, e.created_at,
               json_extract(e.payload, '$.agent') as agent,
               json_extract(e.payload, '$.provider') as provider,
               json_extract(e.payload, '$.model') as model,
               json_extract(e.payload, '$.input_tokens') as input_tokens,
               json_extract(e.payload, '$.output_tokens') as output_tokens,
               json_extract(e.payload, '$.cache_read_tokens') as cache_read_tokens,
               json_extract(e.payload, '$.cache_write_tokens') as cache_write_tokens,
               json_extract(e.payload, '$.cost_usd') as cost_usd,
               json_extract(e.payload, '$.latency_ms') as latency_ms,
               json_extract(e.payload, '$.stop_reason') as stop_reason
        from events e where e.kind = 'model_called'
        """,
    )
    db.create_view(
        "agent_usage",
        """
        select agent, provider, model, count(*) as steps,
               sum(case when status = 'succeeded' then 1 else 0 end) as succeeded,
               sum(case when status = 'failed' then 1 else 0 end) as failed,
               sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,
               round(sum(cost_usd), 6) as cost_usd, round(avg(latency_ms), 1) as avg_latency_ms
        from steps group by agent, provider, model
        """,
    )
    db.create_view(
        "daily_cost",
        """
        select substr(started_at, 1, 10) as day, count(*) as runs,
               sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,
               round(sum(cost_usd), 6) as cost_usd
        from runs group by day order by day
        """,
    )


def _v3_approvals(db: sqlite_utils.Database) -> None:
    """The `approvals` view: pending and decided actions, one row each, without reading JSON."""
    db.create_view(
        "approvals",
        """
        select p.id as action_id, p.run_id, p.step_id,
               json_extract(p.payload, '$.agent') as agent,
               json_extract(p.payload, '$.tool') as tool,
               json_extract(p.payload, '$.arguments') as arguments,
               json_extract(p.payload, '$.reason') as reason,
               json_extract(p.payload, '$.rule') as rule,
               json_extract(p.payload, '$.human_only') as human_only,
               json_extract(p.payload, '$.digest') as digest,
               case
                 when p.status = 'pending' then 'pending'
                 when json_extract(p.response, '$.decision') = 'approve' then 'approved'
                 when json_extract(p.response, '$.decision') = 'deny' then 'denied'
                 else p.status
               end as status,
               json_extract(p.response, '$.reason') as decision_reason,
               p.channel, p.decided_by, p.created_at, p.resolved_at as decided_at, p.expires_at
        from pending_requests p where p.kind = 'approval'
        """,
    )


def _v4_run_owner(db: sqlite_utils.Database) -> None:
    """`runs.owner`: the host and process running a run, so a second server on the same file leaves it alone."""
    db.table("runs").add_column("owner", str)


def _v5_durable_runs(db: sqlite_utils.Database) -> None:
    """Durable runs: the run's description (`spec`), its owner's lease, and how often it was resumed."""
    db.table("runs").add_column("spec", str)
    db.table("runs").add_column("lease_expires", float)
    db.table("runs").add_column("resumes", int, not_null_default=0)
    db.table("runs").create_index(["status"], index_name="runs_status", if_not_exists=True)


def _audit_vocabulary_views(db: sqlite_utils.Database) -> None:
    """Views with one vocabulary: `tool_calls`, `transcript`, `guardrail_stops`, `run_cost_by_agent`.

    Tool names are always `server.tool` (models see `server__tool`; concertmaster's own tools such as
    `transfer_to_X` read `concertmaster.transfer_to_X`), and a tool call's `decision` is one of `allowed`,
    `approved`, `denied`, `refused` whatever path decided it.
    """
    db.create_view(
        "tool_calls",
        """
        with pair as (
          select e.seq, e.run_id, e.step_id, e.created_at, e.kind, e.payload,
                 json_extract(e.payload, '$.tool') as raw_tool,
                 lag(e.kind) over w as previous_kind, lag(e.seq) over w as previous_seq
          from events e where e.kind in ('tool_called', 'policy_decided')
          window w as (partition by e.run_id, e.step_id order by e.seq)
        ), decided as (
          -- a gated call's policy ruling is the event just before it among its step's calls and rulings
          select pair.*, case when previous_kind = 'policy_decided' then previous_seq end as policy_seq
          from pair where kind = 'tool_called'
        )
        select d.seq, d.run_id, d.step_id, d.created_at,
               json_extract(d.payload, '$.agent') as agent,
               case when instr(d.raw_tool, '__') > 0
                    then substr(d.raw_tool, 1, instr(d.raw_tool, '__') - 1) || '.'
                         || substr(d.raw_tool, instr(d.raw_tool, '__') + 2)
                    else 'concertmaster.' || d.raw_tool end as tool,
               json_extract(d.payload, '$.arguments') as arguments,
               case
                 when json_extract(d.payload, '$.data.decision') in ('deny', 'denied') then 'denied'
                 when json_extract(d.payload, '$.is_error') and (json_extract(d.payload, '$.result') like 'refused: %'
                      or json_extract(d.payload, '$.result') like 'unknown tool %'
                      or json_extract(d.payload, '$.result') like 'tool call limit reached%') then 'refused'
                 when json_extract(p.payload, '$.decision') = 'require_approval' then 'approved'
                 else 'allowed'
               end as decision,
               case
                 when json_extract(d.payload, '$.data.decision') = 'deny' then 'policy'
                 when json_extract(d.payload, '$.data.decision') = 'denied'
                      and json_extract(d.payload, '$.data.channel') = 'expiry' then 'expiry'
                 when json_extract(d.payload, '$.data.decision') = 'denied' then 'human'
                 when json_extract(p.payload, '$.decision') = 'require_approval' then 'human'
                 when p.seq is not null then 'policy'
                 else 'concertmaster'
               end as decided_by,
               json_extract(p.payload, '$.decision') as policy_decision,
               json_extract(p.payload, '$.rule') as rule,
               json_extract(p.payload, '$.reason') as reason,
               json_extract(d.payload, '$.is_error') as is_error,
               case when json_extract(d.payload, '$.is_error') then json_extract(d.payload, '$.result') end
                 as error,
               substr(json_extract(d.payload, '$.result'), 1, 500) as result,
               json_extract(d.payload, '$.latency_ms') as latency_ms,
               json_extract(d.payload, '$.data.tool_latency_ms') as tool_latency_ms
        from decided d left join events p on p.seq = d.policy_seq
        """,
    )
    # A speaker turn: a step of the run's own conversation (no nested-team prefix) keyed `N.agent` or
    # `consultN.agent`; the manager's selections, ledgers, summaries and retries carry a `:` or another form.
    db.create_view(
        "transcript",
        """
        select s.run_id, r.pattern,
               row_number() over (partition by s.run_id order by s.started_at, s.rowid) as turn,
               s.id as step_id, s.agent as speaker,
               case when s.key like 'consult%' then 'consult' else 'turn' end as kind,
               s.output as text, s.status, s.started_at, s.ended_at
        from steps s join runs r on r.id = s.run_id
        where r.pattern in ('group_chat', 'magentic', 'handoff')
          and instr(s.key, '/') = 0 and instr(s.key, ':') = 0
          and (s.key glob '[0-9]*.*' or s.key glob 'consult[0-9]*.*')
          and s.key not like '%.retry'
        """,
    )
    db.create_view(
        "guardrail_stops",
        """
        select r.id as run_id, r.pattern, r.control, r.stop_reason, r.error as detail,
               (select s.agent from steps s where s.run_id = r.id order by s.started_at desc, s.rowid desc
                 limit 1) as last_agent,
               substr(r.output, 1, 200) as partial_output,
               r.started_at, r.ended_at, r.input_tokens, r.output_tokens, r.cost_usd
        from runs r where r.status = 'stopped'
        """,
    )
    db.create_view(
        "run_cost_by_agent",
        """
        select run_id, agent, group_concat(distinct model) as models, count(*) as steps,
               sum(case when status = 'succeeded' then 1 else 0 end) as succeeded,
               sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,
               round(sum(cost_usd), 6) as cost_usd, round(sum(latency_ms), 1) as latency_ms
        from steps where provider is not 'team'
        group by run_id, agent
        """,
    )


def _runs_principal(db: sqlite_utils.Database) -> None:
    """`runs.principal`: who started a run (the HTTP token's name, or the local user); only they, and
    principals configured as approvers, may read or decide it."""
    db.table("runs").add_column("principal", str)


def _event_keys_and_engine(db: sqlite_utils.Database) -> None:
    """`events.event_key`: a deterministic id of an event sent by a run on another engine (Temporal), unique,
    so a retried delivery is recognised; `runs.engine`: which engine runs the run."""
    db.table("events").add_column("event_key", str)
    db.table("events").create_index(
        ["event_key"], index_name="events_event_key", unique=True, if_not_exists=True
    )
    db.table("runs").add_column("engine", str, not_null_default="embedded")


def _partial_event_key_index(db: sqlite_utils.Database) -> None:
    """`events_event_key` indexes only the events that have a key (a run on another engine): every other event
    (nearly all) no longer adds an index entry when it is written. Lookups by key use it as before."""
    db.execute("drop index if exists events_event_key")
    db.execute("create unique index events_event_key on events (event_key) where event_key is not null")


Migration = Callable[["sqlite_utils.Database"], None]

#: Applied in order, each once; the index + 1 is the schema version.
MIGRATIONS: list[Migration] = [
    _v1_core,
    _v2_views,
    _v3_approvals,
    _v4_run_owner,
    _v5_durable_runs,
    _audit_vocabulary_views,
    _runs_principal,
    _event_keys_and_engine,
    _partial_event_key_index,
]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet applied; returns the names applied now.

    Safe when many processes open the same file at once: the pending migrations are applied in one
    transaction that holds SQLite's write lock (`BEGIN IMMEDIATE`, waiting on the busy timeout), and the
    applied list is read again inside it, so each migration runs exactly once and a crash leaves none half
    applied. `conn` must be in autocommit mode (`isolation_level=None`), as `connect` makes it.
    """
    if _applied(conn) >= set(range(1, len(MIGRATIONS) + 1)):
        return []  # up to date: no need to queue for the write lock
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    conn.execute("begin immediate")
    try:
        conn.execute(
            "create table if not exists schema_migrations"
            " ([version] INTEGER PRIMARY KEY, [name] TEXT, [applied_at] TEXT)"
        )
        done = _applied(conn)
        applied = []
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            migration(db)  # sqlite-utils nests its own transactions as savepoints inside ours
            conn.execute(
                "insert into schema_migrations (version, name, applied_at) values (?, ?, ?)",
                (version, migration.__name__.lstrip("_"), now()),
            )
            applied.append(migration.__name__)
        conn.execute("commit")
    except BaseException:
        if conn.in_transaction:
            conn.execute("rollback")
        raise
    return applied


def _applied(conn: sqlite3.Connection) -> set[int]:
    try:
        return {row[0] for row in conn.execute("select version from schema_migrations")}
    except sqlite3.OperationalError:  # a fresh file: no table yet
        return set()


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied to this database (0 for an empty file)."""
    try:
        row = conn.execute("select max(version) from schema_migrations").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


_SECOND: tuple[int, str] = (-1, "")
"""The last whole second formatted (`2026-11-25T05:24:04`): `now` formats a second once, not at every call."""


def now() -> str:
    """The current UTC time as the audit writes it: ISO 8601 with milliseconds and a `Z` (as `timestamp`)."""
    global _SECOND
    ms = time.time_ns() // 1_000_000
    second, millis = divmod(ms, 1000)
    if _SECOND[0] != second:
        _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_SECOND[1]}.{millis:03d}Z"


def timestamp(when: datetime) -> str:
    """`when` as the audit writes every time (`2026-11-25T05:24:04.083Z`): one format, so text comparisons in
    SQL (`expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`) and sorting are right."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

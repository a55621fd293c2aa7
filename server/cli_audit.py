"""The audit on the command line: follow events as they land, cost reports, Mermaid, and the Datasette web view.

Imported lazily by `server/cli.py`, only for these commands.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestration.audit.read import AuditReader
from orchestration.errors import ConcertmasterError, InvalidInputError


def dispatch(args: Any, db: Path) -> int:
    """Run one of this module's commands from parsed arguments."""
    if args.command == "cost":
        return cost(db, args.since, args.by)
    if args.command == "ui":
        return ui(db, args.host, args.port, args.open)
    if args.command == "show" and args.mermaid:
        return show_mermaid(db, args.run_id)
    if args.interval <= 0 or args.interval > 60:
        raise InvalidInputError(
            f"--interval: must be more than 0 and at most 60 seconds (got {args.interval:g})"
        )
    if args.command == "show":
        return follow_run(db, args.run_id, args.interval)
    return follow_runs(db, args.interval)


END_KINDS = frozenset({"run_finished", "run_interrupted"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(text: Any, limit: int = 100) -> str:
    """One line of text safe for a terminal: control characters (escape sequences) removed, cut to `limit`."""
    value = _CONTROL.sub(" ", str(text if text is not None else ""))
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 3] + "..."


def summary(kind: str, p: dict[str, Any]) -> str:
    """What an event says, in a few words."""
    if kind == "model_called":
        cost = "-" if p.get("cost_usd") is None else f"${p['cost_usd']:.4f}"
        return f"{p.get('model')} {p.get('input_tokens')}+{p.get('output_tokens')} tokens {cost} {p.get('latency_ms')} ms"
    if kind == "tool_called":
        return f"{p.get('tool')} {'error: ' if p.get('is_error') else ''}{p.get('result')}"
    if kind == "policy_decided":
        return f"{p.get('tool')} {p.get('decision')} (rule {p.get('rule') or 'default'})"
    if kind == "handoff":
        return f"{p.get('from')} -> {p.get('to')} ({p.get('mode')}): {p.get('message')}"
    if kind == "run_started":
        return f"{p.get('pattern')}: {p.get('input')}"
    if kind == "run_finished":
        return f"{p.get('status')} ({p.get('reason')}) {p.get('error') or p.get('output') or ''}"
    if kind == "step_started":
        return str(p.get("input") or "")
    for key in ("output", "error", "why", "reason", "speaker", "decision", "status"):
        if p.get(key):
            return f"{key}: {p[key]}"
    return json.dumps(p, ensure_ascii=False, default=str)


def event_line(ev: dict[str, Any], agents: dict[str, str]) -> str:
    p = ev["payload"]
    agent = p.get("agent") or agents.get(ev.get("step_id") or "", "")
    return (
        f"{ev['seq']:>6} {ev['created_at'][11:23]} {ev['run_id'] or '-':<16} {ev['kind']:<22} "
        f"{clean(agent, 16):<16} {clean(summary(ev['kind'], p))}"
    )


def follow(
    db: Path,
    *,
    run_id: str | None = None,
    after_seq: int = 0,
    interval: float = 0.5,
    stop: Callable[[dict[str, Any]], bool] = lambda ev: False,
) -> Iterator[dict[str, Any]]:
    """Events after `after_seq` (of `run_id`, or all), oldest first, as another process writes them: polls the
    database by sequence number every `interval` seconds; ends after an event for which `stop` is true."""
    with AuditReader(db) as reader:
        seq = after_seq
        while True:
            batch = reader.events(run_id, after_seq=seq, limit=500)
            for ev in batch:
                seq = ev["seq"]
                yield ev
                if stop(ev):
                    return
            if not batch:
                time.sleep(interval)


def _agents(reader: AuditReader, run_id: str | None) -> dict[str, str]:
    sql = "select id, agent from steps" + (" where run_id = ?" if run_id else "")
    return {r["id"]: r["agent"] for r in reader.query(sql, (run_id,) if run_id else (), limit=1_000_000)}


def follow_runs(db: Path, interval: float) -> int:
    """`concertmaster runs --follow`: every new event of every run, until interrupted."""
    with AuditReader(db) as reader:
        head = reader.query("select coalesce(max(seq), 0) as seq from events")[0]["seq"]
    print(f"following {db} from event {head} (Ctrl-C to stop)", flush=True)
    agents: dict[str, str] = {}
    for ev in follow(db, after_seq=head, interval=interval):
        if ev["kind"] == "step_started" and ev.get("step_id"):
            agents[ev["step_id"]] = str(ev["payload"].get("agent"))
        print(event_line(ev, agents), flush=True)
    return 0


def follow_run(db: Path, run_id: str, interval: float) -> int:
    """`concertmaster show RUN --follow`: the run's events so far, then new ones until it ends."""
    with AuditReader(db) as reader:
        run = reader.run(run_id)
        if run is None:
            raise ConcertmasterError(f"no run {run_id!r} in {db}; `concertmaster runs` lists run ids")
        agents = _agents(reader, run_id)
    print(f"run {run_id} ({run['pattern']}, {run['status']})", flush=True)
    for ev in follow(db, run_id=run_id, interval=interval, stop=lambda e: e["kind"] in END_KINDS):
        if ev["kind"] == "step_started" and ev.get("step_id"):
            agents[ev["step_id"]] = str(ev["payload"].get("agent"))
        print(event_line(ev, agents), flush=True)
    return 0


def show_mermaid(db: Path, run_id: str) -> int:
    """`concertmaster show RUN --mermaid`: the run as fenced Mermaid blocks."""
    from orchestration.diagram import markdown

    with AuditReader(db) as reader:
        run = reader.run(run_id)
        if run is None:
            raise ConcertmasterError(f"no run {run_id!r} in {db}; `concertmaster runs` lists run ids")
        print(markdown(run, reader.steps(run_id), reader.events(run_id, limit=1_000_000)), end="")
    return 0


_SINCE = re.compile(r"^(\d+)([mhdw])$")


def since_timestamp(since: str, now: datetime | None = None) -> str:
    """`7d`, `12h`, `30m`, `2w` or an ISO date/time, as the audit's UTC timestamp text."""
    now = now or datetime.now(UTC)
    match = _SINCE.match(since.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {
            "m": timedelta(minutes=amount),
            "h": timedelta(hours=amount),
            "d": timedelta(days=amount),
        }.get(unit, timedelta(weeks=amount))
        moment = now - delta
    else:
        try:
            moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(
                f"--since: expected a duration like 7d, 12h, 30m, 2w or a date like 2026-11-01 (got {since!r})"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


COST_QUERIES = {
    "agent": (
        "select s.agent as name, count(distinct s.run_id) as runs, count(*) as calls, sum(s.input_tokens) as input_tokens,"
        " sum(s.output_tokens) as output_tokens, sum(s.cost_usd) as cost_usd from steps s join runs r on r.id = s.run_id"
        " where r.started_at >= ? and s.provider is not 'team' group by s.agent order by cost_usd desc, name"
    ),
    "model": (
        "select coalesce(provider, '?') || ':' || coalesce(model, '?') as name, count(distinct run_id) as runs,"
        " count(*) as calls, sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,"
        " sum(cost_usd) as cost_usd from model_calls where created_at >= ? group by provider, model"
        " order by cost_usd desc, name"
    ),
    "run": (
        "select r.id || ' ' || r.pattern as name, 1 as runs, (select count(*) from steps s where s.run_id = r.id) as calls,"
        " r.input_tokens, r.output_tokens, r.cost_usd from runs r where r.started_at >= ?"
        " order by r.started_at desc"
    ),
}


def cost(db: Path, since: str, by: str) -> int:
    """`concertmaster cost`: tokens and USD per agent, model or run since a moment."""
    start = since_timestamp(since)
    with AuditReader(db) as reader:
        rows = reader.query(COST_QUERIES[by], (start,), limit=100_000)
    calls = {"agent": "steps", "model": "calls", "run": "steps"}[by]
    print(f"cost by {by} since {start} ({since})")
    print(f"{by:<36} {'runs':>5} {calls:>6} {'in tokens':>11} {'out tokens':>11} {'cost $':>10}")
    totals = {"runs": 0, "calls": 0, "input_tokens": 0, "output_tokens": 0}
    total_cost: float | None = None
    for r in rows:
        money = "-" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
        print(
            f"{clean(r['name'], 36):<36} {r['runs']:>5} {r['calls']:>6} {r['input_tokens'] or 0:>11} "
            f"{r['output_tokens'] or 0:>11} {money:>10}"
        )
        for key in totals:
            totals[key] += r[key] or 0
        if r["cost_usd"] is not None:
            total_cost = (total_cost or 0.0) + r["cost_usd"]
    money = "-" if total_cost is None else f"{total_cost:.4f}"
    # a run counts under every agent or model it used, so only `--by run` has a total of runs
    print(
        f"{'total':<36} {totals['runs'] if by == 'run' else '':>5} {totals['calls']:>6} "
        f"{totals['input_tokens']:>11} {totals['output_tokens']:>11} {money:>10}"
    )
    return 0


def ui(db: Path, host: str, port: int, open_browser: bool) -> int:
    """`concertmaster ui`: the audit in Datasette, read-only, with concertmaster's metadata and canned queries."""
    try:
        import datasette  # noqa: F401
    except ImportError:
        raise ConcertmasterError(
            "the web view needs Datasette: pip install 'concertmaster[ui]' (or pip install datasette)"
        ) from None
    if not db.exists():
        raise ConcertmasterError(f"no audit database at {db}; start the server once or pass --db")
    import signal
    import subprocess
    import tempfile

    from server.ui import PLUGINS_DIR, metadata

    with tempfile.TemporaryDirectory(prefix="concertmaster-ui-") as tmp:
        meta = Path(tmp) / "metadata.json"
        meta.write_text(json.dumps(metadata(db.stem), indent=2))
        command = [
            sys.executable,
            "-m",
            "datasette",
            "serve",
            str(db),
            "--metadata",
            str(meta),
            "--plugins-dir",
            str(PLUGINS_DIR),
            "--host",
            host,
            "--port",
            str(port),
            "--setting",
            "sql_time_limit_ms",
            "3000",
        ]
        if open_browser:
            command.append("--open")
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"concertmaster: warning: anyone who can reach {host}:{port} can read the whole audit "
                "(Datasette has no login here); use --host 127.0.0.1 unless you mean it",
                file=sys.stderr,
            )
        print(
            f"concertmaster: the audit {db} read-only in Datasette (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        child = subprocess.Popen(command)
        # stopping `concertmaster ui` (SIGTERM from a service manager or a test) stops Datasette with it
        previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)

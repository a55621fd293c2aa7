"""The `concertmaster` command: serve, demo, runs, show, audit verify, config check."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any, Literal

import anyio

from orchestration.audit.log import AuditLog
from orchestration.audit.read import AuditReader, verify_chain
from orchestration.config import DEFAULT_TEAM_FILE, load_config
from orchestration.errors import AuditError, ConcertmasterError
from orchestration.governance import PolicyBook
from orchestration.models.pricing import load_prices
from orchestration.providers import has_api_key
from policies.load import describe as describe_policy
from server.settings import Settings, db_path

DEMO_TEAM = DEFAULT_TEAM_FILE.with_name("demo_team.toml")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help="audit database (default: $CONCERTMASTER_DB, else audit.db in your data directory)",
        default=argparse.SUPPRESS,
    )
    common.add_argument(
        "--config",
        help="team config file (default: $CONCERTMASTER_CONFIG or the built-in team)",
        default=argparse.SUPPRESS,
    )
    parser = argparse.ArgumentParser(
        prog="concertmaster",
        description="An MCP server that lets your assistant conduct a team of agents, with an SQLite audit trail.",
        epilog=f"audit database now: {db_path()}",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", parents=[common], help="run the MCP server (stdio by default)")
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (default %(default)s)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default %(default)s)")
    sub.add_parser(
        "demo", parents=[common], help="an offline run on the scripted model, through the MCP server"
    )
    runs = sub.add_parser("runs", parents=[common], help="recent runs")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--status")
    show = sub.add_parser("show", parents=[common], help="one run with its steps and events")
    show.add_argument("run_id")
    _add_audit_commands(sub, common, runs, show)
    resume = sub.add_parser(
        "resume", parents=[common], help="continue an interrupted run here, in the foreground, until it ends"
    )
    resume.add_argument("run_id", help="the run's id (`concertmaster runs --status interrupted` lists them)")
    sub.add_parser("approvals", parents=[common], help="actions waiting for a human decision")
    for verb in ("approve", "deny"):
        decide = sub.add_parser(verb, parents=[common], help=f"{verb} a pending action (as the human)")
        decide.add_argument("action_id")
        decide.add_argument("--reason", default="", help="why (recorded in the audit)")
    audit = sub.add_parser("audit", parents=[common], help="audit commands")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    audit_sub.add_parser("verify", parents=[common], help="check the hash chain of the audit log")
    config = sub.add_parser("config", parents=[common], help="config commands")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    config_sub.add_parser("check", parents=[common], help="validate the config and show where things are")
    return parser


def _add_audit_commands(sub: Any, common: argparse.ArgumentParser, runs: Any, show: Any) -> None:
    """`runs --follow`, `show RUN --follow/--mermaid`, `cost`, `ui` (implemented in server/cli_audit.py)."""
    interval = {"type": float, "default": 0.5, "help": "seconds between polls with --follow (default 0.5)"}
    runs.add_argument("--follow", action="store_true", help="then print every new event as it lands")
    runs.add_argument("--interval", **interval)
    show.add_argument(
        "--follow", action="store_true", help="print the run's events as they land, until it ends"
    )
    show.add_argument(
        "--mermaid", action="store_true", help="the run as Mermaid diagrams (sequence; DAG for plans)"
    )
    show.add_argument("--interval", **interval)
    cost = sub.add_parser("cost", parents=[common], help="tokens and cost per agent, model or run")
    cost.add_argument("--since", default="7d", help="a duration (7d, 12h, 30m, 2w) or a date (default 7d)")
    cost.add_argument(
        "--by", choices=["agent", "model", "run"], default="agent", help="group by (default agent)"
    )
    ui = sub.add_parser(
        "ui",
        parents=[common],
        help="browse the audit read-only in Datasette (pip install 'concertmaster[ui]')",
    )
    ui.add_argument("--host", default="127.0.0.1", help="host (default %(default)s)")
    ui.add_argument("--port", type=int, default=8001, help="port (default %(default)s; 0 picks a free one)")
    ui.add_argument("--open", action="store_true", help="open it in your browser")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings(db=db_path(getattr(args, "db", None)), config=getattr(args, "config", None))
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _one_line(exc, settings)
        if message is None:
            raise  # a bug: its traceback is what a report needs
        print(f"concertmaster: error: {message}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException, settings: Settings) -> str | None:
    """The message of an error a user can fix (config, database, file), unwrapped from task groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # the server's task groups wrap a failure at start
    if isinstance(exc, ConcertmasterError):
        return exc.message
    if isinstance(exc, sqlite3.Error):
        return (
            f"the audit database {settings.db} cannot be used ({' '.join(str(exc).split())}); "
            "point --db / CONCERTMASTER_DB at an SQLite file concertmaster can read and write"
        )
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return None


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command or "serve"
    if command == "serve":
        return _serve(
            settings,
            http=getattr(args, "http", False),
            host=getattr(args, "host", "127.0.0.1"),
            port=getattr(args, "port", 8765),
        )
    if command == "demo":
        from server.demo import run_demo

        return anyio.run(run_demo, settings)
    if command in ("cost", "ui") or getattr(args, "follow", False) or getattr(args, "mermaid", False):
        from server.cli_audit import dispatch

        return dispatch(args, settings.db)
    if command == "runs":
        return _runs(settings, args.limit, args.status)
    if command == "show":
        return _show(settings, args.run_id)
    if command == "resume":
        from server.resume_cli import resume_here

        return anyio.run(resume_here, settings, args.run_id)
    if command == "approvals":
        return _approvals(settings)
    if command in ("approve", "deny"):
        return _decide(settings, args.action_id, command, args.reason)
    if command == "audit":
        return _verify(settings)
    if command == "config":
        return _config_check(settings)
    raise AssertionError(command)


def _serve(settings: Settings, *, http: bool, host: str, port: int) -> int:
    from server.app import build_server

    # stdout is the protocol channel on stdio: logs go to stderr only
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = build_server(settings)
    with AuditLog(settings.db):  # an unusable database fails here, in one line, not inside the server
        pass
    if http:
        print(f"concertmaster: serving streamable HTTP on http://{host}:{port}/mcp", file=sys.stderr)
        server.run("streamable-http", host=host, port=port)
    else:
        server.run("stdio")
    return 0


def _runs(settings: Settings, limit: int, status: str | None) -> int:
    with AuditReader(settings.db) as reader:
        rows = reader.runs(limit=limit, status=status)
    if not rows:
        print(f"no runs yet in {settings.db}")
        return 0
    print(f"{'run id':<18} {'pattern':<11} {'status':<18} {'steps':>5} {'tokens':>8} {'cost $':>9}  task")
    for r in rows:
        cost = "-" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
        tokens = (r["input_tokens"] or 0) + (r["output_tokens"] or 0)
        task = (r["input"] or "").replace("\n", " ")[:50]
        print(
            f"{r['id']:<18} {r['pattern']:<11} {r['status']:<18} {r['steps']:>5} {tokens:>8} {cost:>9}  {task}"
        )
    return 0


def _show(settings: Settings, run_id: str) -> int:
    with AuditReader(settings.db) as reader:
        run = reader.run(run_id)
        if run is None:
            raise ConcertmasterError(
                f"no run {run_id!r} in {settings.db}; `concertmaster runs` lists run ids"
            )
        steps = reader.steps(run_id)
        events = reader.events(run_id)
    print(json.dumps({"run": run, "steps": steps, "events": events}, indent=2, default=str))
    return 0


def _approvals(settings: Settings) -> int:
    with AuditReader(settings.db) as reader:
        rows = reader.pending(kind="approval")
    if not rows:
        print("no actions are waiting for approval")
        return 0
    for row in rows:
        payload = json.loads(row["payload"])
        print(f"{row['id']}  run {row['run_id']}  expires {row['expires_at'] or 'never'}")
        print(f"  {payload['question']}")
        print(f"  digest {payload['digest']}{'  (human only)' if payload.get('human_only') else ''}")
    return 0


def _decide(settings: Settings, action_id: str, verb: str, reason: str) -> int:
    from orchestration.approvals import decide_from_cli

    choice: Literal["approve", "deny"] = "approve" if verb == "approve" else "deny"
    # the reason is free text for the chained audit: redact it with the policies' rules, as the server would
    reason = PolicyBook(load_config(settings.config)).redactor().text(reason)
    decide_from_cli(settings.db, action_id, choice, reason)
    print(f"{verb}d {action_id}; a running server picks the decision up within a second")
    return 0


def _verify(settings: Settings) -> int:
    try:
        report = verify_chain(settings.db)
    except (sqlite3.Error, AuditError) as exc:
        if isinstance(exc, AuditError) and not settings.db.exists():
            raise
        # a truncated or damaged file: that is the verdict, not a crash
        print(f"audit chain BROKEN in {settings.db}:", file=sys.stderr)
        print(
            f"  - the database cannot be read ({' '.join(str(exc).split())}): truncated or damaged",
            file=sys.stderr,
        )
        return 1
    if report.ok:
        print(f"audit chain OK: {report.events} events, head {report.head_seq} {report.head_hash}")
        print("(keep the head hash somewhere else to detect a rewrite of the whole file later)")
        return 0
    print(f"audit chain BROKEN in {settings.db}:", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _executable() -> str:
    """The absolute path of this `concertmaster` command, for clients that don't search PATH."""
    found = shutil.which("concertmaster")
    return str(Path(found).resolve()) if found else f"{sys.executable} -m server"


def _config_check(settings: Settings) -> int:
    config = load_config(settings.config)
    lines: list[Any] = [
        f"config: {config.source}",
        f"audit database: {settings.db}",
        f"anthropic api key: {'set' if has_api_key() else 'not set (auto agents use MCP sampling if offered, else the host)'}",
        f"default anthropic model: {config.default_model}",
        "limits: " + ", ".join(f"{k}={v}" for k, v in config.limits.model_dump().items()),
        f"command for your MCP client config: {_executable()} serve",
        "agents:",
    ]
    for name, agent in config.agents.items():
        lines.append(f"  {name:<14} model={agent.model:<28} {agent.description[:60]}")
    book = PolicyBook(config)
    book.load_all()  # every agent's and group's policy file, now
    prices = load_prices()
    override = os.environ.get("CONCERTMASTER_PRICES")
    lines.append(f"price table: {len(prices.prices)} models" + (f" (with {override})" if override else ""))
    lines.append("effective limits: " + ", ".join(f"{k}={v}" for k, v in book.limits().model_dump().items()))
    for name, agent in config.agents.items():
        grants = ", ".join(agent.tools) or "none"
        lines.append(f"agent {name} (group {agent.group or '-'}; tools: {grants})")
        lines.append("  " + describe_policy(book.for_agent(name)).replace("\n", "\n  "))
    for server_name, server in config.mcp_servers.items():
        target = server.url or " ".join([server.command or "", *server.args])
        inherits = f"; inherits {', '.join(server.inherit_env)}" if server.inherit_env else ""
        lines.append(f"mcp server {server_name}: {target} (started on first use{inherits})")
    print("\n".join(str(line) for line in lines))
    return 0

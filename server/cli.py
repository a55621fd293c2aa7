"""The `concertmaster` command: serve, demo, runs, show, audit verify, config check."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

import anyio

from orchestration.audit.read import AuditReader, verify_chain
from orchestration.config import DEFAULT_TEAM_FILE, load_config
from orchestration.errors import ConcertmasterError, ConfigError
from orchestration.governance import PolicyBook
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
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="serve HTTP without bearer tokens (loopback hosts only; any local user can then use it)",
    )
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
    verify = audit_sub.add_parser(
        "verify",
        parents=[common],
        help="check the hash chain, and recompute runs, steps and pending requests from the events",
    )
    verify.add_argument(
        "--head",
        metavar="SEQ:HASH",
        help="a head printed earlier by `audit head` and kept elsewhere: catches a rewrite of the whole file",
    )
    audit_sub.add_parser("head", parents=[common], help="print the chain head (SEQ:HASH) to keep elsewhere")
    config = sub.add_parser("config", parents=[common], help="config commands")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    config_sub.add_parser("check", parents=[common], help="validate the config and show where things are")
    token = sub.add_parser("token", parents=[common], help="HTTP bearer tokens (serve --http)")
    token_sub = token.add_subparsers(dest="token_command", metavar="SUBCOMMAND", required=True)
    add = token_sub.add_parser("add", parents=[common], help="give a new principal a token (printed once)")
    add.add_argument("name", help="the principal's name (one word)")
    add.add_argument("--approver", action="store_true", help="may see and decide every principal's runs")
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
    except ConcertmasterError as exc:
        print(f"concertmaster: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command or "serve"
    if command == "serve":
        return _serve(
            settings,
            http=getattr(args, "http", False),
            host=getattr(args, "host", "127.0.0.1"),
            port=getattr(args, "port", 8765),
            no_auth=getattr(args, "no_auth", False),
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
    if command == "audit" and args.audit_command == "head":
        return _head(settings)
    if command == "audit":
        return _verify(settings, getattr(args, "head", None))
    if command == "config":
        return _config_check(settings)
    if command == "token":
        return _token_add(settings, args.name, approver=args.approver)
    raise AssertionError(command)


def _serve(settings: Settings, *, http: bool, host: str, port: int, no_auth: bool = False) -> int:
    from server.app import build_server
    from server.http_auth import TokenFile, auth_settings, is_loopback, tokens_path

    # stdout is the protocol channel on stdio: logs go to stderr only
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if http and no_auth and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve HTTP on {host} without authentication: anyone who can reach it could start runs"
            " on your key; drop --no-auth (clients then send the token `concertmaster config check` prints)"
        )
    tokens = tokens_path(settings.db)
    auth = None if not http or no_auth else (auth_settings(host, port), TokenFile(tokens))
    server = build_server(settings, http_auth=auth)
    if http:
        how = "without authentication" if no_auth else f"bearer tokens from {tokens}"
        print(f"concertmaster: serving streamable HTTP on http://{host}:{port}/mcp ({how})", file=sys.stderr)
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
    from orchestration.approvals import open_approvals

    with AuditReader(settings.db) as reader:
        rows = open_approvals(reader)  # as each run asked it: the chained event, not the editable row
    if not rows:
        print("no actions are waiting for approval")
        return 0
    for row in rows:
        payload = row["payload"]
        print(f"{row['id']}  run {row['run_id']}  expires {row['expires_at'] or 'never'}")
        if row["problem"]:
            print(f"  CANNOT BE DECIDED: {row['problem']}")
            continue
        print(f"  {payload['question']}")
        print(f"  digest {payload['digest']}{'  (human only)' if payload.get('human_only') else ''}")
    return 0


def _decide(settings: Settings, action_id: str, verb: str, reason: str) -> int:
    from orchestration.approvals import decide_from_cli

    choice: Literal["approve", "deny"] = "approve" if verb == "approve" else "deny"
    decide_from_cli(settings.db, action_id, choice, reason)
    print(f"{verb}d {action_id}; a running server picks the decision up within a second")
    return 0


def _verify(settings: Settings, head: str | None) -> int:
    report = verify_chain(settings.db, head=head)
    if report.ok:
        print(
            f"audit chain OK: {report.events} events, head {report.head_seq} {report.head_hash};"
            " runs, steps and pending_requests match the events"
        )
        print(
            "(keep `concertmaster audit head` somewhere else and pass it as --head later to detect a rewrite"
            " of the whole file)"
        )
        return 0
    print(f"audit BROKEN in {settings.db}:", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _http_token_lines(settings: Settings) -> list[str]:
    from server.http_auth import ensure_tokens, local_user, tokens_path

    path = tokens_path(settings.db)
    entries = ensure_tokens(path)
    mine = next((e for e in entries if e.principal == local_user()), entries[0])
    others = ", ".join(e.principal + (" (approver)" if e.approver else "") for e in entries if e is not mine)
    return [
        f"serve --http bearer token ({mine.principal}): {mine.token}",
        f"  send it as 'Authorization: Bearer <token>'; tokens file {path}"
        + (f"; other principals: {others}" if others else ""),
    ]


def _token_add(settings: Settings, name: str, *, approver: bool) -> int:
    from server.http_auth import add_principal, tokens_path

    token = add_principal(tokens_path(settings.db), name, approver=approver)
    print(f"{name}{' (approver)' if approver else ''}: {token}")
    print("a running `serve --http` accepts it at once; send it as 'Authorization: Bearer <token>'")
    return 0


def _head(settings: Settings) -> int:
    report = verify_chain(settings.db)
    print(f"{report.head_seq}:{report.head_hash}")
    return 0 if report.ok else 1


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
        *_http_token_lines(settings),
        "agents:",
    ]
    for name, agent in config.agents.items():
        lines.append(f"  {name:<14} model={agent.model:<28} {agent.description[:60]}")
    book = PolicyBook(config)
    lines.append("effective limits: " + ", ".join(f"{k}={v}" for k, v in book.limits().model_dump().items()))
    for name, agent in config.agents.items():
        grants = ", ".join(agent.tools) or "none"
        lines.append(f"agent {name} (group {agent.group or '-'}; tools: {grants})")
        lines.append("  " + describe_policy(book.for_agent(name)).replace("\n", "\n  "))
    for server_name, server in config.mcp_servers.items():
        target = server.url or " ".join([server.command or "", *server.args])
        lines.append(f"mcp server {server_name}: {target} (started on first use)")
    print("\n".join(str(line) for line in lines))
    return 0

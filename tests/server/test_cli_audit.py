"""`runs --follow`, `show RUN --follow/--mermaid`, `cost`: the audit on the command line, across processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from server.cli import main
from server.cli_audit import clean, since_timestamp

ROOT = Path(__file__).resolve().parents[2]
World = tuple[Path, dict[str, str]]
HANG_GUARD_S = 300  # only turns a hang into a failure; nothing waits for it in a passing run

WRITER = """
import sys
from orchestration.audit.log import AuditLog, Event, Write
db, run_id, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
with AuditLog(db) as audit:
    for kind in kinds:
        statements = []
        if kind == "run_started":
            statements = [("insert into runs (id, pattern, status, input, started_at) values (?, 'delegate',"
                           " 'running', 'from another process', '2026-01-01T00:00:00.000Z')", (run_id,))]
        payload = {"status": "succeeded", "reason": "completed", "output": "done \\x1b[31mred\\x1b[0m"}
        audit.write_sync(Write(statements, [Event(kind, run_id, payload)]))
"""


def write_from_another_process(db: Path, run_id: str, *kinds: str) -> None:
    subprocess.run([sys.executable, "-c", WRITER, str(db), run_id, *kinds], cwd=ROOT, check=True)


def concertmaster(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def lines_until(proc: subprocess.Popen[str], needle: str) -> Iterator[str]:
    """Lines of `proc`'s stdout up to and including the first that contains `needle`."""
    assert proc.stdout is not None
    guard = threading.Timer(HANG_GUARD_S, proc.kill)
    guard.start()
    try:
        for line in proc.stdout:
            yield line
            if needle in line:
                return
        raise AssertionError(
            f"the output ended before {needle!r}: {proc.stderr.read() if proc.stderr else ''}"
        )
    finally:
        guard.cancel()


@pytest.fixture
def empty_db(tmp_path: Path) -> Path:
    db = tmp_path / "audit.db"
    AuditLog(db).open().close()
    return db


def test_runs_follow_sees_events_written_by_another_process(empty_db: Path) -> None:
    follower = concertmaster("--db", str(empty_db), "runs", "--follow", "--interval", "0.05")
    try:
        header = list(lines_until(follower, "following"))
        assert "from event 0" in header[-1]
        write_from_another_process(empty_db, "run_elsewhere", "run_started", "run_finished")
        seen = list(lines_until(follower, "run_finished"))
    finally:
        follower.kill()
        follower.wait()
    assert "run_started" in seen[0] and "run_elsewhere" in seen[0]
    assert "succeeded (completed) done" in seen[-1]
    assert "\x1b" not in "".join(seen)  # a model's escape sequences never reach the terminal


def test_show_follow_streams_one_run_until_it_ends(empty_db: Path) -> None:
    write_from_another_process(empty_db, "run_mine", "run_started")
    write_from_another_process(empty_db, "run_other", "run_started")
    follower = concertmaster("--db", str(empty_db), "show", "run_mine", "--follow", "--interval", "0.05")
    try:
        started = list(lines_until(follower, "run_started"))
        write_from_another_process(empty_db, "run_mine", "step_started", "run_finished")
        rest = list(lines_until(follower, "run_finished"))
        assert follower.wait() == 0  # it ends by itself with the run
    finally:
        follower.kill()
        follower.wait()
    assert "run run_mine (delegate, running)" in started[0]
    assert [line.split()[3] for line in rest] == ["step_started", "run_finished"]
    assert "run_other" not in "".join(started + rest)


def test_follow_refuses_an_unknown_run_and_a_bad_interval(empty_db: Path, capsys) -> None:
    assert main(["--db", str(empty_db), "show", "run_nope", "--follow"]) == 2
    assert "no run 'run_nope'" in capsys.readouterr().err
    assert main(["--db", str(empty_db), "runs", "--follow", "--interval", "0"]) == 2
    assert "--interval: must be more than 0" in capsys.readouterr().err


def test_cost_by_agent_model_and_run(audit_world: World, tmp_path: Path, capsys) -> None:
    db = tmp_path / "audit.db"
    shutil.copy(audit_world[0], db)
    assert main(["--db", str(db), "cost"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cost by agent since ") and out[0].endswith("(7d)")
    rows = {line.split()[0]: line.split()[1:] for line in out[2:]}
    assert rows["planner"] == ["1", "1", "40", "60", "0.0000"]
    assert rows["researcher"][:2] == ["4", "5"]  # runs, steps (the sub-team's member steps included)
    assert "duo" not in rows  # a sub-team is no agent
    assert rows["total"][-3:] == ["1160", "1740", "0.0000"]
    assert sum(int(r[2]) for name, r in rows.items() if name != "total") == 1160
    assert main(["--db", str(db), "cost", "--by", "model", "--since", "2026-01-01"]) == 0
    model = capsys.readouterr().out.splitlines()
    assert model[2].split() == ["scripted:scripted", "9", "29", "1160", "1740", "0.0000"]
    assert main(["--db", str(db), "cost", "--by", "run", "--since", "1w"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2 + 9 + 1
    assert main(["--db", str(db), "cost", "--since", "last tuesday"]) == 2
    assert "--since: expected a duration like 7d" in capsys.readouterr().err


def test_since_accepts_durations_and_dates() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert since_timestamp("7d", now) == "2026-11-19T12:00:00.000Z"
    assert since_timestamp("12h", now) == "2026-11-26T00:00:00.000Z"
    assert since_timestamp("30m", now) == "2026-11-26T11:30:00.000Z"
    assert since_timestamp("2w", now) == "2026-11-12T12:00:00.000Z"
    assert since_timestamp("2026-11-01", now) == "2026-11-01T00:00:00.000Z"


def test_show_mermaid_prints_the_runs_diagrams(audit_world: World, capsys) -> None:
    db, runs = audit_world
    assert main(["--db", str(db), "show", runs["plan"], "--mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("```mermaid\nsequenceDiagram\n") and "```mermaid\nflowchart TD\n" in out


def test_clean_strips_terminal_control_characters() -> None:
    assert clean("ok\x1b[2J\x07\r\nnext\x9b") == "ok [2J next"
    assert clean("x" * 200, 10) == "xxxxxxx..."

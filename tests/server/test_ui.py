"""`concertmaster ui`: the audit in a real Datasette (a subprocess on a free loopback port), read-only, with every
canned query answering with the expected rows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration.audit.catalog import QUESTIONS, TABLES, VIEWS

pytest.importorskip("datasette", reason="the [ui] extra (datasette) is not installed")
httpx = pytest.importorskip("httpx", reason="the [ui] extra (datasette, which brings httpx) is not installed")

ROOT = Path(__file__).resolve().parents[2]
World = tuple[Path, dict[str, str]]


class UI:
    def __init__(self, base: str, runs: dict[str, str]) -> None:
        self.base, self.runs = base, runs
        self.http = httpx.Client(base_url=base, timeout=60)

    def query(self, name: str, **params: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/audit/{name}.json", params={"_shape": "objects", **params})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ok"], body
        return body["rows"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ui(audit_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    db, runs = audit_world
    copy = tmp_path_factory.mktemp("ui") / "audit.db"
    shutil.copy(db, copy)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--db", str(copy), "ui", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    guard = threading.Timer(300, proc.kill)  # turns a hang into a failure; a passing run never waits for it
    guard.start()
    try:
        assert proc.stderr is not None
        base = None
        for line in proc.stderr:  # wait for Datasette to say where it listens
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                base = found.group(1)
                break
        guard.cancel()
        assert base is not None, "datasette did not start"
        yield UI(base, runs)
    finally:
        guard.cancel()
        proc.terminate()
        proc.wait()


def test_every_canned_query_answers_with_the_expected_rows(ui: UI) -> None:
    runs = ui.runs
    assert set(QUESTIONS) == {
        "cost_per_agent_this_week",
        "cost_per_agent_of_a_run",
        "denied_tool_calls_this_week",
        "chat_transcript",
        "guardrail_stops",
        "pending_approvals",
    }
    week = ui.query("cost_per_agent_this_week")
    assert {r["agent"] for r in week} == {"a", "b", "boss", "clerk", "planner", "researcher", "writer"}
    assert sum(r["input_tokens"] for r in week) == 1160
    plan = ui.query("cost_per_agent_of_a_run", run_id=runs["plan"])
    assert [(r["agent"], r["steps"], r["input_tokens"]) for r in plan] == [
        ("planner", 1, 40),
        ("researcher", 2, 80),
        ("writer", 1, 40),
    ]
    denied = ui.query("denied_tool_calls_this_week")
    assert [(r["tool"], r["decision"], r["decided_by"]) for r in denied] == [
        ("files.nope", "refused", "concertmaster"),
        ("files.delete_file", "denied", "human"),
    ]
    chat = ui.query("chat_transcript", run_id=runs["group_chat"])
    assert [(r["turn"], r["speaker"], r["text"]) for r in chat] == [
        (1, "a", "a says 42"),
        (2, "b", "b says 42"),
        (3, "a", "a says 42"),
    ]
    stops = ui.query("guardrail_stops")
    assert [(r["run_id"], r["stop_reason"]) for r in stops] == [(runs["group_chat"], "max_turns")]
    assert ui.query("pending_approvals") == []


def test_pages_have_titles_descriptions_and_links_to_runs_and_steps(ui: UI) -> None:
    page = ui.http.get("/audit/cost_per_agent_of_a_run", params={"run_id": ui.runs["plan"]})
    assert page.status_code == 200 and "Cost per agent of one run" in page.text and "researcher" in page.text
    events = ui.http.get("/audit/events", params={"run_id": ui.runs["tools"], "_size": "max"}).text
    assert f'href="/audit/runs/{ui.runs["tools"]}"' in events
    assert re.search(r'href="/audit/steps/step_[0-9a-f]+"', events)
    tool_calls = ui.http.get("/audit/tool_calls").text
    assert "One row per tool call an agent made" in tool_calls and 'href="/audit/runs/run_' in tool_calls
    database = ui.http.get("/audit").text
    for name in [*TABLES, *VIEWS]:
        assert name in database
    assert "audit_head" not in database  # internal tables are hidden


def test_the_web_view_cannot_write(ui: UI) -> None:
    body = ui.http.get("/audit.json", params={"sql": "update runs set status = 'x'"}).json()
    assert body["ok"] is False
    assert ui.query("cost_per_agent_of_a_run", run_id=ui.runs["plan"])  # still serving
    described = ui.http.get("/-/databases.json").json()
    assert described[0]["name"] == "audit"


def test_ui_without_datasette_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from server.cli import main

    monkeypatch.setitem(sys.modules, "datasette", None)  # as if the [ui] extra were not installed
    assert main(["--db", str(tmp_path / "audit.db"), "ui"]) == 2
    assert "pip install 'concertmaster[ui]'" in capsys.readouterr().err


def test_the_plugin_makes_every_audit_connection_refuse_writes(tmp_path: Path) -> None:
    import sqlite3

    from server.ui_plugins.concertmaster_links import prepare_connection

    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("create table t (x)")
    prepare_connection(conn, "audit", None)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("insert into t values (1)")
    internal = sqlite3.connect(":memory:")
    prepare_connection(internal, "_internal", None)  # Datasette's own catalog stays writable
    internal.execute("create table t (x)")

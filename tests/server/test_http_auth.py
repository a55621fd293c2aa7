"""`serve --http` requires a bearer token; runs and approvals belong to the principal that started them."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server.app import build_server
from server.cli import main as cli
from server.http_auth import add_principal, local_user, tokens_path
from server.settings import Settings
from tests.server.test_http import SOLO, HttpServer, client, serve

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def team_toml(served: Path) -> str:
    delete = {"tool_calls": [{"name": "files__delete_file", "arguments": {"name": "a.txt"}}]}
    return (
        "[mcp_servers.files]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = {json.dumps(['-m', 'tests.fixtures.files_server', str(served)])}\n"
        f"cwd = {json.dumps(str(ROOT))}\n"
        "[agents.clerk]\n"
        'description = "files clerk"\ninstructions = "Tidy files."\nmodel = "scripted"\ntools = ["files.*"]\n'
        f'scripted = {{ replies = [{_toml(delete)}, "done"] }}\n'
        '[agents.solo]\ndescription = "d"\ninstructions = "i"\nmodel = "scripted"\n'
    )


def _toml(value: object) -> str:
    """A JSON value as a TOML inline value (objects become inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


class Principals:
    def __init__(self, server: HttpServer, served: Path, tokens: dict[str, str]) -> None:
        self.server, self.served, self.tokens = server, served, tokens

    def client(self, name: str) -> Client:
        return client(self.server.url, self.tokens[name])

    def calls(self) -> list[str]:
        path = self.served / ".calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def principals(tmp_path: Path) -> Iterator[Principals]:
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.txt").write_text("hello")
    path = tokens_path(tmp_path / "audit.db")
    tokens = {
        "alice": add_principal(path, "alice"),
        "bob": add_principal(path, "bob"),
        "carol": add_principal(path, "carol", approver=True),
    }
    for server in serve(tmp_path, team_toml(served)):
        yield Principals(server, served, tokens)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    yield from serve(tmp_path, SOLO)


async def test_no_token_or_a_wrong_token_is_refused_with_401(http_server: HttpServer) -> None:
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        anonymous = await http.post(http_server.url, json=hello, headers=headers)
        wrong = await http.post(
            http_server.url, json=hello, headers={**headers, "Authorization": "Bearer " + "x" * 43}
        )
        right = await http.post(
            http_server.url, json=hello, headers={**headers, "Authorization": f"Bearer {http_server.token}"}
        )
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200
    with pytest.raises(Exception):  # noqa: B017 - the client surfaces the 401 as a connection failure
        async with client(http_server.url, None) as c:
            await c.list_tools()
    async with client(http_server.url, http_server.token) as c:
        run = (await c.call_tool("delegate_task", {"agent": "solo", "task": "hi"})).structured_content
    assert run["status"] == "succeeded"


async def test_another_principal_can_neither_read_nor_decide_a_run(principals: Principals) -> None:
    async with principals.client("alice") as alice:
        run = (await alice.call_tool("delegate_task", {"agent": "clerk", "task": "tidy"})).structured_content
        assert run["status"] == "awaiting_approval"
        run_id, action_id = run["run_id"], run["pending"][0]["request_id"]
        async with principals.client("bob") as bob:
            seen = await bob.call_tool("get_run", {"run_id": run_id})
            listed = (await bob.call_tool("list_runs", {})).structured_content["runs"]
            pending = (await bob.call_tool("list_pending_approvals", {})).structured_content["approvals"]
            decided = await bob.call_tool("approve_action", {"action_id": action_id, "decision": "approve"})
            cancelled = await bob.call_tool("cancel_run", {"run_id": run_id})
            with pytest.raises(MCPError):
                await bob.read_resource(f"concertmaster://runs/{run_id}")
            queried = await bob.call_tool("query_audit", {"sql": "select id from runs"})
            own = (await bob.call_tool("delegate_task", {"agent": "solo", "task": "mine"})).structured_content
            after = (await bob.call_tool("list_runs", {})).structured_content["runs"]
        assert seen.is_error and "no run with id" in seen.content[0].text
        assert listed == [] and pending == [] and [r["run_id"] for r in after] == [own["run_id"]]
        assert decided.is_error and "unknown action id" in decided.content[0].text
        assert cancelled.is_error and principals.calls() == []
        assert queried.is_error and "approver" in queried.content[0].text
        async with principals.client("carol") as carol:  # an approver sees and decides everyone's runs
            (shown,) = (await carol.call_tool("list_pending_approvals", {})).structured_content["approvals"]
            denied = await carol.call_tool(
                "approve_action", {"action_id": shown["action_id"], "decision": "deny"}
            )
        assert not denied.is_error, denied.content
        final = (await alice.call_tool("get_run", {"run_id": run_id, "wait_seconds": 10})).structured_content
        mine = (await alice.call_tool("list_runs", {})).structured_content["runs"]
    assert final["status"] == "succeeded" and principals.calls() == []
    assert [r["run_id"] for r in mine] == [run_id]


def test_serving_beyond_loopback_without_auth_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["serve", "--http", "--host", "0.0.0.0", "--no-auth", "--db", str(tmp_path / "audit.db")])
    err = capsys.readouterr().err
    assert code == 2 and "refusing to serve HTTP on 0.0.0.0 without authentication" in err
    assert err.count("\n") == 1


def test_config_check_creates_a_private_token_and_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.db"
    assert cli(["config", "check", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    path = tokens_path(db)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (line,) = [x for x in out.splitlines() if x.startswith("serve --http bearer token")]
    token = line.rsplit(" ", 1)[1]
    assert f"{local_user()} {token} approver" in path.read_text()
    assert cli(["config", "check", "--db", str(db)]) == 0  # the same token the next time
    assert token in capsys.readouterr().out


def test_a_tokens_file_other_users_can_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.db"
    add_principal(tokens_path(db), "alice")
    tokens_path(db).chmod(0o644)
    assert cli(["serve", "--http", "--db", str(db)]) == 2
    assert "chmod 600" in capsys.readouterr().err


async def test_stdio_and_in_process_runs_belong_to_the_local_user(tmp_path: Path) -> None:
    from tests.conftest import team

    config = team(solo={"model": "scripted"})
    async with Client(build_server(Settings(db=tmp_path / "audit.db"), config=config)) as c:
        run = (await c.call_tool("delegate_task", {"agent": "solo", "task": "hi"})).structured_content
    import sqlite3

    conn = sqlite3.connect(tmp_path / "audit.db")
    (principal,) = conn.execute("select principal from runs where id = ?", (run["run_id"],)).fetchone()
    conn.close()
    assert principal == local_user()

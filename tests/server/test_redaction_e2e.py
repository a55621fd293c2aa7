"""The policies' redaction applies everywhere text leaves the server: tool errors and CLI reasons too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mcp import Client

from orchestration.config import load_config
from server.app import build_server
from server.cli import main
from server.settings import Settings

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
SECRET = "zz-secret-abcdef"


def write_config(tmp: Path) -> Path:
    served = tmp / "served"
    served.mkdir()
    (served / "a.txt").write_text("hello")
    policy = tmp / "policy.toml"
    policy.write_text('[redaction]\npatterns = ["zz-secret-[a-z]+"]\n')
    call = '{ tool_calls = [{ name = "files__delete_file", arguments = { name = "a.txt" } }] }'
    config = tmp / "team.toml"
    config.write_text(
        f"policy = {json.dumps(str(policy))}\n"
        "[mcp_servers.files]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = ['-m', 'tests.fixtures.files_server', {json.dumps(str(served))}]\n"
        f"cwd = {json.dumps(str(ROOT))}\n"
        "[agents.clerk]\ndescription = 'clerk'\ninstructions = 'Tidy.'\nmodel = 'scripted'\n"
        f"tools = ['files.*']\nscripted = {{ replies = [{call}, 'done'] }}\n"
    )
    return config


def raw(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp.iterdir() if p.name.startswith("audit.db"))


async def test_tool_errors_use_the_policies_redaction_rules(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    server = build_server(Settings(db=tmp_path / "audit.db"), config=load_config(config))
    async with Client(server) as client:
        unknown = await client.call_tool("delegate_task", {"agent": SECRET, "task": "t"})
        invalid = await client.call_tool("list_runs", {"limit": SECRET})
    for result in (unknown, invalid):
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error and SECRET not in text and "[redacted]" in text, text


async def test_a_cli_reason_is_redacted_with_the_policies_rules(tmp_path: Path, capsys) -> None:
    config, db = write_config(tmp_path), tmp_path / "audit.db"
    server = build_server(Settings(db=db, default_wait_seconds=5), config=load_config(config))
    async with Client(server) as client:
        run = (await client.call_tool("delegate_task", {"agent": "clerk", "task": "tidy"})).structured_content
        assert run["status"] == "awaiting_approval"
        (pending,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        code = main(
            [
                "deny",
                pending["action_id"],
                "--reason",
                f"no: {SECRET}",
                "--db",
                str(db),
                "--config",
                str(config),
            ]
        )
        assert code == 0
    data = raw(tmp_path)
    assert SECRET.encode() not in data and b"no: [redacted]" in data

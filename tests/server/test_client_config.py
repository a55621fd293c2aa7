"""`concertmaster config client --host ...`: a block that works as pasted, and example files valid for their host."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from orchestration.errors import ConfigError
from server import client_config
from server.client_config import HOSTS, client_block

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "concertmaster"
PLACEHOLDER = "/absolute/path/to/concertmaster"
EXAMPLES = {
    "claude_desktop_config.json": ("claude-desktop", False),
    "claude-code.mcp.json": ("claude-code", False),
    "vscode.mcp.json": ("vscode", False),
    "vscode-with-key.mcp.json": ("vscode", True),
    "cursor.mcp.json": ("cursor", False),
}


def printed(*args: str, cwd: Path | None = None) -> tuple[dict, str]:
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=cwd, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def entry_of(block: dict) -> dict:
    return (block.get("servers") or block["mcpServers"])["concertmaster"]


def inputs_are_defined(block: dict) -> None:
    used = set(re.findall(r"\$\{input:([^}]+)\}", json.dumps(block)))
    defined = {item["id"] for item in block.get("inputs", [])}
    assert used <= defined, f"${{input:...}} without an `inputs` entry: {used - defined}"


def test_every_example_file_is_valid_json_for_its_host_and_matches_what_the_cli_prints() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.json")) == sorted(EXAMPLES)
    for name, (host, with_key) in EXAMPLES.items():
        block = json.loads((ROOT / "examples" / name).read_text())
        assert block == client_block(host, PLACEHOLDER, with_key=with_key), name
        inputs_are_defined(block)
        assert entry_of(block)["args"] == ["serve"]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("with_key", [False, True])
def test_the_printed_block_is_json_with_the_absolute_path_of_an_existing_command(
    host: str, with_key: bool, tmp_path: Path
) -> None:
    block, where = printed("config", "client", "--host", host, *(["--with-key"] if with_key else []))
    entry = entry_of(block)
    command = Path(entry["command"])
    assert command.is_absolute() and command.is_file() and os.access(command, os.X_OK)
    assert command.name == "concertmaster" and "-m" not in entry["args"]
    assert ("env" in entry) is with_key
    inputs_are_defined(block)
    assert "paste it into" in where


def test_config_and_db_given_to_the_cli_are_passed_on_as_absolute_paths(tmp_path: Path) -> None:
    team = tmp_path / "team.toml"
    team.write_text('[agents.solo]\ndescription = "d"\ninstructions = "i"\nmodel = "scripted"\n')
    block, where = printed(
        "--config", "team.toml", "--db", "a.db", "config", "client", "--host", "claude-code", cwd=tmp_path
    )
    assert entry_of(block)["args"] == ["serve", "--config", str(team), "--db", str(tmp_path / "a.db")]
    assert f"claude mcp add concertmaster -- {SCRIPT.absolute()} serve --config {team}" in where


def test_a_missing_config_is_refused_before_printing_a_block(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "--config", str(tmp_path / "nope.toml"), "config", "client", "--host", "cursor"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == "" and "does not exist" in proc.stderr


def test_without_an_installed_command_it_says_how_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "python")])
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setattr(client_config.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="uv tool install"):
        client_config.find_command()


@pytest.mark.anyio
async def test_the_pasted_block_starts_a_working_server_even_from_a_folder_with_its_own_server_package(
    tmp_path: Path,
) -> None:
    decoy = tmp_path / "project" / "server"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the wrong server package was imported')\n")
    block, _ = printed("--db", str(tmp_path / "audit.db"), "config", "client", "--host", "claude-desktop")
    entry = entry_of(block)
    params = StdioServerParameters(
        command=entry["command"], args=entry["args"], cwd=str(decoy.parent), env=dict(os.environ)
    )
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "delegate_task" in names and (tmp_path / "audit.db").exists()


def test_the_top_level_claude_desktop_example_is_the_one_in_examples() -> None:
    top = json.loads((ROOT / "claude_desktop_config.example.json").read_text())
    assert top == json.loads((ROOT / "examples" / "claude_desktop_config.json").read_text())

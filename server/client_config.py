"""The block to paste into each MCP host's config, with the absolute path of the `concertmaster` command.

Desktop apps do not start from your shell, so they rarely see the `PATH` where `uv tool install` or `pipx`
put the command: the block names it by absolute path. It is never `python -m server`, which runs whatever
`server` package the working folder happens to hold.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from orchestration.errors import ConfigError

Host = Literal["claude-desktop", "claude-code", "vscode", "cursor"]
HOSTS: tuple[Host, ...] = ("claude-desktop", "claude-code", "vscode", "cursor")

WHERE: dict[Host, str] = {
    "claude-desktop": "claude_desktop_config.json (Settings → Developer → Edit Config); restart Claude Desktop",
    "claude-code": ".mcp.json at the root of your project (or run the `claude mcp add` line below)",
    "vscode": ".vscode/mcp.json in your workspace (or `MCP: Open User Configuration`)",
    "cursor": "~/.cursor/mcp.json (all projects) or .cursor/mcp.json (this project)",
}

KEY_PLACEHOLDER = "sk-ant-REPLACE-WITH-YOUR-KEY"


def _script_name() -> str:
    return "concertmaster.exe" if sys.platform == "win32" else "concertmaster"


def find_command() -> Path:
    """The absolute path of the installed `concertmaster` script (not resolved through symlinks, so a
    `~/.local/bin/concertmaster` link stays valid across upgrades)."""
    name = _script_name()
    candidates: list[Path] = []
    launched = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if launched is not None and launched.name in (name, "concertmaster"):
        candidates.append(launched)
    candidates.append(Path(sys.executable).parent / name)  # the venv (or tool env) we run in
    found = shutil.which("concertmaster")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.absolute()
    raise ConfigError(
        "the `concertmaster` command is not installed: install it with "
        "`uv tool install /path/to/concertmaster` (or `pipx install /path/to/concertmaster`), then run "
        "`concertmaster config client --host ...` again"
    )


def server_entry(
    host: Host,
    command: str,
    *,
    config: str | None = None,
    db: str | None = None,
    with_key: bool = False,
) -> dict[str, Any]:
    """One server's entry for `host`: command, args and, with `with_key`, where the API key goes."""
    args = ["serve"]
    if config is not None:
        args += ["--config", config]
    if db is not None:
        args += ["--db", db]
    entry: dict[str, Any] = {"command": command, "args": args}
    if host in ("vscode", "claude-code"):
        entry = {"type": "stdio", **entry}
    if with_key:
        entry["env"] = {"ANTHROPIC_API_KEY": _key_reference(host)}
    return entry


def _key_reference(host: Host) -> str:
    if host == "vscode":
        return "${input:anthropic-key}"  # VS Code prompts once and stores it as a secret
    if host == "claude-code":
        return "${ANTHROPIC_API_KEY}"  # Claude Code expands environment variables in .mcp.json
    return KEY_PLACEHOLDER  # Claude Desktop and Cursor take the value as written


def client_block(
    host: Host,
    command: str,
    *,
    config: str | None = None,
    db: str | None = None,
    with_key: bool = False,
) -> dict[str, Any]:
    """The whole JSON document to paste (or merge) into `host`'s MCP config file."""
    entry = server_entry(host, command, config=config, db=db, with_key=with_key)
    if host == "vscode":
        block: dict[str, Any] = {"servers": {"concertmaster": entry}}
        if with_key:
            block["inputs"] = [
                {
                    "type": "promptString",
                    "id": "anthropic-key",
                    "description": "Anthropic API key for concertmaster's agents",
                    "password": True,
                }
            ]
        return block
    return {"mcpServers": {"concertmaster": entry}}


def absolute(path: str | None) -> str | None:
    """`path` made absolute (the host starts the server from a folder of its own choosing)."""
    return None if path is None else str(Path(path).expanduser().absolute())

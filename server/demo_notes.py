"""A tiny MCP server of notes in one folder, started by `concertmaster demo --tour` for its scripted agents.

Run as `python -P -m server.demo_notes FOLDER`. It gives the tour real tools to govern: `read_note` (read
only: allowed), `delete_note` (destructive: needs a human) and `run_sql` (its argument decides: the default
policy denies destructive SQL before the tool is called). Every call is appended to FOLDER/calls.log.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

FOLDER = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
server = MCPServer(name="notes")


def _log(line: str) -> None:
    with (FOLDER / "calls.log").open("a") as f:
        f.write(line + "\n")


def _note(name: str) -> Path:
    path = (FOLDER / name).resolve()
    if path.parent != FOLDER or not path.name.endswith(".txt"):
        raise ToolError(f"{name!r} is not a note in this folder (notes are NAME.txt)")
    return path


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def read_note(name: str) -> str:
    """Read a note."""
    _log(f"read_note {name}")
    return _note(name).read_text()


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
async def delete_note(name: str) -> str:
    """Delete a note."""
    _log(f"delete_note {name}")
    _note(name).unlink()
    return f"deleted {name}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def run_sql(query: str) -> str:
    """Run SQL on the notes index (the demo only echoes it)."""
    _log(f"run_sql {query}")
    return f"ran: {query}"


if __name__ == "__main__":
    server.run("stdio")

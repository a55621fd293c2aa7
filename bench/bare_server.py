"""The reference for the stdio benchmark: a bare MCP server with one trivial async tool."""

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

server = MCPServer(name="bare")


class Echo(BaseModel):
    text: str


@server.tool()
async def echo(text: str) -> Echo:
    """Return the text."""
    return Echo(text=text)


if __name__ == "__main__":
    server.run("stdio")

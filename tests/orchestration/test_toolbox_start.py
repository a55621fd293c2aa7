"""A downstream server that cannot start is reported by its real cause, in one line (not `ExceptionGroup`)."""

from __future__ import annotations

import socket
import sys

import anyio
import pytest

from orchestration.config import McpServerConfig
from orchestration.toolbox import Toolbox, ToolServerError, describe_failure

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_error(**config: object) -> str:
    toolbox = Toolbox({"x": McpServerConfig.model_validate({"startup_timeout_s": 30, **config})})
    async with anyio.create_task_group() as tg:
        toolbox.bind(tg)
        with pytest.raises(ToolServerError) as info:
            await toolbox.list_tools(toolbox.servers["x"])
        toolbox.close()
    return info.value.message


@pytest.mark.parametrize(
    ("config", "cause"),
    [
        ({"command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]}, "Connection closed"),
        ({"url": f"http://127.0.0.1:{closed_port()}/mcp"}, "ConnectError"),
        ({"command": "/nonexistent/tool-server"}, "FileNotFoundError"),
    ],
)
async def test_a_server_that_cannot_start_names_its_real_cause(config: dict[str, object], cause: str) -> None:
    message = await start_error(**config)
    assert message.startswith("MCP server 'x' could not be started: ") and cause in message
    assert "ExceptionGroup" not in message and "sub-exception" not in message and "\n" not in message


async def test_nested_groups_are_unwrapped_to_the_first_real_error() -> None:
    inner = BaseExceptionGroup("inner", [anyio.get_cancelled_exc_class()(), OSError("no route\nto host")])
    assert describe_failure(BaseExceptionGroup("outer", [inner])) == "OSError: no route to host"

"""One module per pattern tool; each has `register(server)`. Modules are found automatically."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from mcp.server.mcpserver import MCPServer


def register(server: MCPServer[Any]) -> None:
    """Register every pattern tool module in this package, in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(server)

"""The MCP surface of concertmaster: tools, resources, prompts and the CLI. No orchestration logic here."""

import warnings

from mcp.shared.exceptions import MCPDeprecationWarning

# Sampling and logging are deprecated from 2026-07-28 (SEP-2577) but are what today's clients speak:
# we use them on purpose, as the fallback path, so the warning is noise for our users.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

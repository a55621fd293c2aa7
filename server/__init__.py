"""The MCP surface of concertmaster: tools, resources, prompts and the CLI. No orchestration logic here.

Importing this package loads nothing else: the CLI's `--help` and audit commands stay fast, and the MCP SDK is
loaded only by the modules that serve or call MCP (`server.app` and what it imports).
"""

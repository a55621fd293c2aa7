"""The MCP surface of concertmaster: tools, resources, prompts and the CLI. No orchestration logic here."""

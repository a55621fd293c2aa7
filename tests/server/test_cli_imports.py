"""`concertmaster --help` and the audit commands never load the MCP SDK or the Anthropic client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog

HEAVY = ("mcp", "mcp_types", "anthropic", "httpx", "starlette", "uvicorn")

PROBE = """
import contextlib, io, json, sys
from server.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(json.loads(sys.argv[1]))
    except SystemExit:
        pass
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""


def loaded_by(args: list[str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("command", [["--help"], ["--version"], ["runs"], ["approvals"], ["audit", "verify"]])
def test_audit_commands_do_not_import_the_mcp_sdk_or_anthropic(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "audit.db"
    with AuditLog(db):
        pass
    loaded = loaded_by(["--db", str(db), *command])
    assert "server" in loaded  # the probe really ran the CLI
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_serve_is_what_loads_the_sdk() -> None:
    # the probe can see the SDK when it is loaded: the check above is not vacuous
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, server.app; print('mcp' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.strip() == "True"

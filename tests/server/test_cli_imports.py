"""The CLI's start-up cost, as counts: what each command imports.

`--help` and the read-only audit commands load neither the MCP SDK, the Anthropic client, pydantic nor
sqlite-utils (each costs tens to hundreds of milliseconds of start-up); commands that read the team config
need pydantic, but still not the SDK.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import main

SDK = {"mcp", "mcp_types", "anthropic", "httpx", "starlette", "uvicorn"}
HEAVY = SDK | {"pydantic", "pydantic_core", "sqlite_utils"}

PROBE = """
import contextlib, io, json, sys
from server.cli import main
out = io.StringIO()
code = None
with contextlib.redirect_stdout(out):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(),
                  "modules": sorted({name.split('.')[0] for name in sys.modules})}))
"""


def probe(args: list[str]) -> tuple[int, str, set[str]]:
    """Run the CLI with `args` in a fresh interpreter: its exit code, its output, the top-level modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return found["code"] or 0, found["out"], set(found["modules"])


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An audit database with the demo's finished runs, and one run's id."""
    db = tmp_path_factory.mktemp("cli-imports") / "audit.db"
    assert main(["--db", str(db), "demo"]) == 0
    run_id = sqlite3.connect(db).execute("select id from runs limit 1").fetchone()[0]
    return db, run_id


@pytest.mark.parametrize(
    ("command", "shows"),
    [
        (["--help"], "concertmaster"),
        (["--version"], "concertmaster"),
        (["runs"], "delegate"),
        (["runs", "--help"], "--status"),
        (["show", "RUN"], "model_called"),
        (["show", "RUN", "--mermaid"], "sequenceDiagram"),
        (["approvals"], "no actions are waiting"),
        (["audit", "verify"], "audit chain OK"),
        (["audit", "head"], ":"),
        (["cost"], "agent"),
        (["config", "client", "--host", "cursor"], "mcpServers"),
    ],
)
def test_read_only_commands_import_neither_the_sdk_nor_pydantic_nor_sqlite_utils(
    audit: tuple[Path, str], command: list[str], shows: str
) -> None:
    db, run_id = audit
    code, out, loaded = probe(["--db", str(db), *[run_id if a == "RUN" else a for a in command]])
    assert code == 0 and shows in out  # the probe really ran the command
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_config_check_reads_the_config_without_the_mcp_sdk(audit: tuple[Path, str]) -> None:
    db, _ = audit
    code, out, loaded = probe(["--db", str(db), "config", "check"])
    assert code == 0 and "effective limits" in out
    assert "pydantic" in loaded  # the config is validated: the check below is not vacuous
    assert not loaded & (SDK - {"mcp_types", "httpx"}), sorted(loaded & SDK)


def test_serve_is_what_loads_the_sdk() -> None:
    # the probe can see the SDK when it is loaded: the checks above are not vacuous
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, server.app; print('mcp' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.strip() == "True"

"""Bad files at start give one line and exit 2 (not a traceback); everything is validated before serving."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestration.audit.log import AuditLog
from server.cli import main

AGENT = '[agents.a]\ndescription = "d"\ninstructions = "i"\nmodel = "scripted"\n'


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path, capsys, command: list[str]) -> None:
    bad = tmp_path / "team.toml"
    bad.write_bytes(AGENT.encode() + b'group = "\xff\xfe"\n')
    assert main(["--config", str(bad), "--db", str(tmp_path / "a.db"), *command]) == 2
    one_line_error(capsys, str(bad), "not UTF-8")


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_a_deeply_nested_config_is_one_line(tmp_path: Path, capsys, command: list[str]) -> None:
    bad = tmp_path / "team.toml"
    bad.write_text(AGENT + "tools = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["--config", str(bad), "--db", str(tmp_path / "a.db"), *command]) == 2
    one_line_error(capsys, str(bad), "too deeply")


@pytest.mark.parametrize("command", [["runs"], ["show", "run_x"], ["approvals"], ["serve"]])
def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path, capsys, command: list[str]) -> None:
    db = tmp_path / "audit.db"
    db.write_text("this is not an SQLite file\n" * 100)
    assert main(["--db", str(db), *command]) == 2
    one_line_error(capsys, str(db), "not a database")


def test_a_database_path_that_is_a_directory_fails_serve_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--db", str(tmp_path), "serve"]) == 2
    one_line_error(capsys, str(tmp_path), "cannot open the audit database")


def test_audit_verify_reports_a_truncated_database_instead_of_crashing(tmp_path: Path, capsys) -> None:
    db = tmp_path / "audit.db"

    async def fill() -> None:
        with AuditLog(db) as log:
            for i in range(2000):
                await log.event("note", None, {"i": i, "text": "x" * 200})

    anyio.run(fill)
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    assert main(["--db", str(db), "audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "BROKEN" in err and "truncated or damaged" in err


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_a_broken_agent_policy_file_fails_the_start_not_a_later_run(tmp_path: Path, capsys, command) -> None:
    policy = tmp_path / "agent-policy.toml"
    policy.write_text('[[rules]]\nname = "r"\ndecision = "maybe"\n')
    config = tmp_path / "team.toml"
    config.write_text(AGENT + f"policy = {str(policy)!r}\n")
    assert main(["--config", str(config), "--db", str(tmp_path / "a.db"), *command]) == 2
    one_line_error(capsys, "agents.a.policy", str(policy), "rules[0] (r).decision")


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_a_broken_group_policy_file_fails_the_start(tmp_path: Path, capsys, command) -> None:
    policy = tmp_path / "group-policy.toml"
    policy.write_bytes(b"name = '\xff'\n")
    config = tmp_path / "team.toml"
    config.write_text(f"[group_policies]\nresearch = {str(policy)!r}\n" + AGENT + 'group = "research"\n')
    assert main(["--config", str(config), "--db", str(tmp_path / "a.db"), *command]) == 2
    one_line_error(capsys, "group_policies.research", "not UTF-8")


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_a_broken_price_table_fails_the_start(tmp_path: Path, capsys, monkeypatch, command) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[claude-x]\ninput = "cheap"\n')
    monkeypatch.setenv("CONCERTMASTER_PRICES", str(prices))
    assert main(["--db", str(tmp_path / "a.db"), *command]) == 2
    one_line_error(capsys, "price table", str(prices))

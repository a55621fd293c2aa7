"""The `concertmaster` command: one clear line on error, never a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from server.cli import main


def test_demo_runs_offline_and_says_it_is_scripted(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    db = tmp_path / "demo.db"
    assert main(["--db", str(db), "demo"]) == 0
    out = capsys.readouterr().out
    assert "SCRIPTED model" in out and "succeeded" in out and str(db) in out
    assert main(["--db", str(db), "runs"]) == 0
    assert "delegate" in capsys.readouterr().out
    assert main(["--db", str(db), "audit", "verify"]) == 0
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("update events set payload = '{}' where seq = 2")
    conn.close()
    assert main(["--db", str(db), "audit", "verify"]) == 1
    assert "event 2" in capsys.readouterr().err


def test_show_prints_a_run_and_refuses_an_unknown_id(tmp_path: Path, capsys) -> None:
    db = tmp_path / "demo.db"
    main(["--db", str(db), "demo"])
    run_id = sqlite3.connect(db).execute("select id from runs limit 1").fetchone()[0]
    capsys.readouterr()
    assert main(["--db", str(db), "show", run_id]) == 0
    assert '"model_called"' in capsys.readouterr().out
    assert main(["--db", str(db), "show", "run_nope"]) == 2
    assert "no run 'run_nope'" in capsys.readouterr().err


def test_config_check_reports_an_invalid_file_in_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[agents.a]\ndescription = "d"\ninstructions = "i"\nmodel = "gpt"\n')
    assert main(["--config", str(bad), "config", "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "agents.a.model" in err and str(bad) in err


def test_runs_without_a_database_says_where_it_looked(tmp_path: Path, capsys) -> None:
    assert main(["--db", str(tmp_path / "none.db"), "runs"]) == 2
    assert "no audit database at" in capsys.readouterr().err


def test_serve_with_an_invalid_config_fails_at_start_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agents]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(bad), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "at least one agent" in proc.stderr


def test_help_names_the_audit_database(capsys) -> None:
    try:
        main(["--help"])
    except SystemExit:
        pass
    assert "audit database now:" in capsys.readouterr().out

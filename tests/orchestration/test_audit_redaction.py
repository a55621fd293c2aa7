"""Redaction at the audit writer: free text and JSON values only, never the ids and columns the server owns."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import verify_chain
from orchestration.audit.redact import param_columns
from orchestration.patterns.delegate import delegate
from orchestration.runtime import Runtime
from policies.redaction import DEFAULT_PATTERNS, Redactor
from tests.conftest import team

pytestmark = pytest.mark.anyio
TEAM = team(a={"model": "scripted"})
SECRET = "pässwörd-ünïcødé-42"


def rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def raw(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


async def test_a_broad_user_pattern_never_rewrites_ids_so_later_runs_still_work(db: Path) -> None:
    # `[0-9a-f]{12,}` matches every id's hex part: it used to store `run_[redacted]`, and the next run failed
    # on UNIQUE; now it rewrites free text only
    redactor = Redactor(patterns=[*DEFAULT_PATTERNS, "[0-9a-f]{12,}"])
    async with Runtime(TEAM, AuditLog(db, redactor)) as rt:
        runs = [
            await rt.wait(await rt.start_run("delegate", f"t {i} 0123456789abcdef", delegate("a", "t")), 5)
            for i in range(3)
        ]
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    stored = rows(db, "select id, input from runs order by started_at")
    assert [r["id"] for r in stored] == [r["id"] for r in runs] and "[redacted]" not in str(runs[0]["id"])
    assert all(r["input"].endswith(" [redacted]") for r in stored)
    step_ids = {r["id"] for r in rows(db, "select id from steps")}
    assert len(step_ids) == 3 and not any("redacted" in s for s in step_ids)
    for event in rows(db, "select run_id, step_id, payload from events"):
        assert "redacted" not in (event["run_id"] or "") + (event["step_id"] or "")
        payload = json.loads(event["payload"])
        assert "redacted" not in str(payload.get("key", "")) + str(payload.get("parent_step_id", ""))
    assert verify_chain(db).ok


async def test_a_non_ascii_secret_in_a_json_column_is_redacted(db: Path) -> None:
    redactor = Redactor(secret_env=["MY_TOKEN"], environ={"MY_TOKEN": SECRET})
    async with Runtime(TEAM, AuditLog(db, redactor)) as rt:
        run_id = await rt.start_run("delegate", "t", delegate("a", "t"), options={"note": f"token {SECRET}"})
        assert (await rt.wait(run_id, 5))["status"] == "succeeded"
    escaped = json.dumps(SECRET)[1:-1].encode()  # the \\u00e4… form json.dumps writes by default
    data = raw(db)
    assert SECRET.encode() not in data and escaped not in data
    (options,) = rows(db, "select options from runs")
    assert json.loads(options["options"])["note"] == "token [redacted]"


async def test_the_writer_redacts_json_values_and_keeps_json_keys_and_owned_columns(db: Path) -> None:
    redactor = Redactor(patterns=["[0-9a-f]{12,}"], environ={})
    with AuditLog(db, redactor) as log:
        await log.write(
            Write(
                [
                    (
                        "insert into runs (id, pattern, control, status, input, options, started_at)"
                        " values (?, ?, 'centralized', ?, ?, ?, ?)",
                        (
                            "run_0123456789ab",
                            "delegate",
                            "running",
                            "see 0123456789abcdef",
                            json.dumps({"0123456789abcdef": "0123456789abcdef", "digest": "ab" * 32}),
                            "2026-11-25T05:24:04.083Z",
                        ),
                    ),
                    ("update runs set error = ? where id = ?", ("oops 0123456789abcdef", "run_0123456789ab")),
                ],
                [
                    Event(
                        "note",
                        "run_0123456789ab",
                        {"text": "fedcba9876543210", "action_id": "act_0123456789ab"},
                    )
                ],
            )
        )
    (run,) = rows(db, "select * from runs")
    assert (
        run["id"] == "run_0123456789ab"
        and run["input"] == "see [redacted]"
        and run["error"] == "oops [redacted]"
    )
    assert json.loads(run["options"]) == {"0123456789abcdef": "[redacted]", "digest": "ab" * 32}
    (event,) = rows(db, "select payload from events")
    assert json.loads(event["payload"]) == {"text": "[redacted]", "action_id": "act_0123456789ab"}


def test_statement_parameters_are_named_by_their_column() -> None:
    assert param_columns("insert into t (id, a, b) values (?, 'x', coalesce(?, 0))") == ("id", None)
    assert param_columns("update t set a = ?, b = ? where id = ? and status in ('x', ?)") == (
        "a",
        "b",
        "id",
        "status",
    )
    assert param_columns("update t set n = case when ? is null then n else ? end where id = ?") == (
        None,
        None,
        "id",
    )


# Secrets of every default shape, as they can sit inside longer text (escaped quotes, newlines, unicode around).
SHAPES = [
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
    "sk-ant-abcdefgh12",
    "sk-proj-" + "a" * 20,
    "sk-" + "a" * 20,
    "rk_live_" + "a" * 16,
    "AIza" + "b" * 35,
    "bearer\n\t  abcdefghijklmnop",
    'Authorization: "Basic QWxhZGRpbjpvcGVu',
    "x Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    "eyJabcdefghi.abcd.efg",
    "github_pat_" + "a" * 22,
    "ghp_" + "a" * 20,
    "AKIA" + "A" * 16,
    "xoxb-" + "a" * 10,
    "https://user:pass@host",
    "zz-secret-value-123",
]


def test_the_start_search_never_skips_a_payload_the_walk_would_redact() -> None:
    """The writer skips the walk over a payload's values when no secret can start in its JSON text: for every
    default shape, wrapped in characters JSON escapes, the search must send the payload to the walk."""
    import random
    import string

    from orchestration.audit.log import canonical

    redactor = Redactor(environ={"ANTHROPIC_API_KEY": "zz-secret-value-123"})
    alphabet = string.printable + 'é\u2028"\\'
    rng = random.Random(7)
    redacted = 0
    for shape in SHAPES:
        for _ in range(100):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            text += shape + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            payload = {"output": text, "calls": [{"arguments": {"q": text}}]}
            if redactor.value(payload) != payload:
                redacted += 1
                assert redactor.might_hold_secret(canonical(payload)), text
    assert redacted == len(SHAPES) * 100
    assert not redactor.might_hold_secret(canonical({"output": "a plain answer", "agent": "writer"}))


def test_a_pattern_of_the_users_turns_the_start_search_off() -> None:
    """A user's pattern has no known start: every payload is walked."""
    redactor = Redactor([*DEFAULT_PATTERNS, r"\b\d{16}\b"])
    assert redactor.might_hold_secret('{"output":"a plain answer"}')
    assert redactor.value({"output": "card 1234567812345678"}) == {"output": "card [redacted]"}

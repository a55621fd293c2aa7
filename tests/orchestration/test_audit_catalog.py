"""The catalog of event kinds and stop reasons covers everything the code writes, and the README lists it all."""

from __future__ import annotations

import re
from pathlib import Path

from orchestration.audit.catalog import EVENT_KINDS, QUESTIONS, STOP_REASONS, TABLES, VIEWS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("orchestration", "server") for p in (ROOT / d).rglob("*.py")]
CODE = "\n".join(p.read_text() for p in SOURCES)
README = (ROOT / "README.md").read_text()

KIND_PATTERNS = [
    r"(?:record|Event|\.event)\(\s*\"([a-z_]+)\"",
    r"\"(?:succeeded|failed|cancelled|stopped|resolved|expired)\": \"([a-z_]+)\"",  # status -> kind maps
    r"\.get\(status, \"([a-z_]+)\"\)",
]
REASON_PATTERNS = [
    r"Outcome\(\s*[\w.()\[\]]+,\s*\"(?:stopped|failed)\",\s*\"([a-z_]+)\"",
    r"Outcome\([^\n]*reason=\"([a-z_]+)\"",
    r"_finish\(\s*ctx,\s*\"[a-z]+\",\s*\"([a-z_]+)\"",
    r"_interrupt\(\s*run_id,\s*\"([a-z_]+)\"",
    r"stopped\(\"([a-z_]+)\"",
    r"_escalate\(ctx, \"([a-z_]+)\"",
    r"GuardrailTripped\(\s*\"([a-z_]+)\"",
    r"stop_reason = '([a-z_]+)'",
    r"code = \"([a-z_]+)\"",
    r"\"(resume_[a-z_]+)\" if |else \"(resume_[a-z_]+)\"",  # a reason chosen by a condition
]


def found(patterns: list[str]) -> set[str]:
    matches = [m for p in patterns for m in re.findall(p, CODE)]
    return {g for m in matches for g in ((m,) if isinstance(m, str) else m) if g}


def test_every_event_kind_the_code_writes_is_in_the_catalog() -> None:
    kinds = found(KIND_PATTERNS)
    assert {"run_started", "step_finished", "input_expired", "tool_called"} <= kinds  # the scan works
    assert kinds - set(EVENT_KINDS) == set()


def test_every_stop_reason_the_code_writes_is_in_the_catalog() -> None:
    reasons = found(REASON_PATTERNS)
    assert {
        "max_turns",
        "checkpoint_failed",
        "loop_detected",
        "step_failed",
        "max_tokens",
        "server_shutdown",
        "server_restart",
        "disagreement",
        "dry_run",
        "max_rounds",
        "resume_limit",
        "resume_required",
        "resume_failed",
    } <= reasons
    assert reasons - set(STOP_REASONS) == set()


def test_the_readme_lists_every_kind_reason_table_view_and_question() -> None:
    for name in [*EVENT_KINDS, *STOP_REASONS, *TABLES, *VIEWS]:
        assert f"`{name}`" in README, name
    for _, sql in QUESTIONS.values():
        assert " ".join(sql.split()) in " ".join(README.split()), sql

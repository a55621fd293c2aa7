"""Datasette metadata for `concertmaster ui`: titles, descriptions, column meanings and canned queries, built from
the audit catalog so the web view, the schema resource and the README say the same thing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestration.audit.catalog import COLUMNS, QUESTIONS, TABLES, VIEWS

PLUGINS_DIR = Path(__file__).with_name("ui_plugins")


def metadata(database: str) -> dict[str, Any]:
    """Datasette metadata for the audit database named `database` (the file's stem)."""
    tables: dict[str, Any] = {}
    for name, description in {**TABLES, **VIEWS}.items():
        entry: dict[str, Any] = {"title": name, "description": description}
        if name in COLUMNS:
            entry["columns"] = COLUMNS[name]
        tables[name] = entry
    tables["runs"]["sort_desc"] = "started_at"
    tables["events"]["sort_desc"] = "seq"
    tables["runs"]["label_column"] = "id"
    for hidden in ("audit_head", "schema_migrations"):
        tables[hidden] = {"hidden": True}
    queries = {
        name: {"title": title, "sql": sql, "description": title} for name, (title, sql) in QUESTIONS.items()
    }
    return {
        "title": "concertmaster audit",
        "description": "Every run, step, model call, tool call and approval of your agent team (read-only).",
        "databases": {database: {"tables": tables, "queries": queries}},
    }

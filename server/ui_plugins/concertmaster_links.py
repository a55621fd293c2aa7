"""Datasette plugin of `concertmaster ui`: the audit stays read-only, and ids link to their rows.

SQLite cannot add foreign keys to an existing table, and Datasette only follows declared ones, so `run_id`,
`step_id`, `parent_step_id` and `action_id` in every table, view and canned query are rendered as links here.
"""

from __future__ import annotations

from typing import Any

from datasette import hookimpl
from markupsafe import Markup, escape

LINKS = {"run_id": "runs", "step_id": "steps", "parent_step_id": "steps", "action_id": "pending_requests"}


@hookimpl
def prepare_connection(conn: Any, database: str, datasette: Any) -> None:
    # every connection Datasette opens to the audit, even a write connection a plugin could ask for, refuses
    # writes (Datasette's own in-memory `_internal` catalog must stay writable)
    if not database.startswith("_"):
        conn.execute("pragma query_only = on")


@hookimpl
def render_cell(value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    target = LINKS.get(column)
    if target is None or not isinstance(value, str) or not value:
        return None
    if table == target and column == "id":
        return None
    path = datasette.urls.row(database, target, value)
    return Markup(f'<a href="{escape(path)}">{escape(value)}</a>')

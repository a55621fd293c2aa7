"""Read-only SQL over the documented audit tables and views, safe to hand to a model.

Four fences, each enough on its own for what it guards: a connection opened `mode=ro` with `query_only`; an
authorizer that allows reading the documented tables and views and nothing else (no writes, ATTACH, PRAGMA
changes, or other tables); a budget of SQLite virtual-machine steps counted by the progress handler (so a
runaway query stops after the same amount of work on any machine); and a row cap. Results pass through the
redactor before they leave.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.audit.catalog import TABLES, VIEWS
from orchestration.errors import AuditError, InvalidInputError
from policies.redaction import Redactor

DOCUMENTED = frozenset({*TABLES, *VIEWS})
SCHEMA_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "foreign_key_list"})
"""PRAGMAs that only describe the schema; every other PRAGMA is refused."""
STEP_CHUNK = 1000
"""The progress handler runs every this many VM steps."""
DEFAULT_MAX_STEPS = 50_000_000
"""A budget that every documented question over a large audit fits in, and a runaway query does not."""
MAX_ROWS = 1000
MAX_CELL_CHARS = 4000

_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
_WRITES = {
    getattr(sqlite3, name)
    for name in dir(sqlite3)
    if name.startswith(("SQLITE_INSERT", "SQLITE_UPDATE", "SQLITE_DELETE", "SQLITE_CREATE", "SQLITE_DROP"))
    or name
    in ("SQLITE_ALTER_TABLE", "SQLITE_REINDEX", "SQLITE_ANALYZE", "SQLITE_TRANSACTION", "SQLITE_SAVEPOINT")
}


@dataclass(frozen=True)
class QueryResult:
    """What a read-only query returned."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    """True when there were more rows than the limit."""
    steps: int
    """SQLite VM steps used (in chunks of STEP_CHUNK)."""


class AuditQuery:
    """Runs one read-only SELECT at a time over an audit database."""

    def __init__(
        self, path: str | Path, redactor: Redactor | None = None, *, max_steps: int = DEFAULT_MAX_STEPS
    ) -> None:
        self.path = Path(path).expanduser()
        self.redactor = redactor or Redactor()
        self.max_steps = max_steps

    def run(self, sql: str, limit: int = 100) -> QueryResult:
        """Run `sql`; raises `InvalidInputError` saying what was refused or wrong, and how to fix it."""
        if not sql.strip():
            raise InvalidInputError("sql: empty; give one SELECT, e.g. select * from run_summary limit 5")
        if not 1 <= limit <= MAX_ROWS:
            raise InvalidInputError(f"limit: must be 1 to {MAX_ROWS} (got {limit})")
        if not self.path.exists():
            raise AuditError(f"no audit database at {self.path}")
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
        refused: list[str] = []
        used = [0]
        try:
            conn.execute("pragma query_only = on")
            # names a query may not read: every real table and view that is not documented (a CTE is no table)
            hidden = {
                name
                for (name,) in conn.execute("select name from sqlite_master where type in ('table', 'view')")
                if name not in DOCUMENTED
            }
            conn.set_authorizer(lambda *a: _authorize(refused, hidden, *a))

            def progress() -> int:
                used[0] += STEP_CHUNK
                return 1 if used[0] > self.max_steps else 0

            conn.set_progress_handler(progress, STEP_CHUNK)
            try:
                cursor = conn.execute(sql)
                rows = cursor.fetchmany(limit + 1)
            except sqlite3.ProgrammingError as exc:
                raise InvalidInputError(f"sql: {exc}; give exactly one SELECT statement") from None
            except sqlite3.Error as exc:
                if used[0] > self.max_steps:
                    raise InvalidInputError(
                        f"the query did too much work (over {self.max_steps:,} SQLite steps) and was stopped; "
                        "add a WHERE or a LIMIT, or query a view"
                    ) from None
                if refused:
                    raise InvalidInputError(
                        f"refused: {refused[0]}. query_audit only reads; tables and views: "
                        + ", ".join(sorted(DOCUMENTED))
                    ) from None
                raise InvalidInputError(f"the query failed: {exc}") from None
            columns = [d[0] for d in cursor.description or ()]
        finally:
            conn.close()
        shaped = [[self._cell(v) for v in row] for row in rows[:limit]]
        return QueryResult(columns, shaped, len(rows) > limit, used[0])

    def _cell(self, value: Any) -> Any:
        if isinstance(value, bytes):
            return f"<{len(value)} bytes>"
        if isinstance(value, str):
            value = self.redactor.text(value)
            if len(value) > MAX_CELL_CHARS:
                value = value[:MAX_CELL_CHARS] + f"... ({len(value) - MAX_CELL_CHARS} more characters)"
        return value


def _authorize(
    refused: list[str],
    hidden: set[str],
    action: int,
    arg1: str | None,
    arg2: str | None,
    db: str | None,
    view: str | None,
) -> int:
    """SQLite's authorizer: read documented objects (and CTEs), call functions, recurse; nothing else."""
    if action == sqlite3.SQLITE_READ:
        # reads of a view's underlying tables are reported with the view's name in `view`
        if arg1 not in hidden or (view is not None and view in DOCUMENTED):
            return sqlite3.SQLITE_OK
        refused.append(f"table {arg1!r} is not one of the documented tables and views")
        return sqlite3.SQLITE_DENY
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        if (arg1 or "").lower() in SCHEMA_PRAGMAS:
            return sqlite3.SQLITE_OK
        refused.append(f"PRAGMA {arg1} (only {', '.join(sorted(SCHEMA_PRAGMAS))} are allowed)")
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        refused.append("ATTACH/DETACH (only this audit database can be read)")
        return sqlite3.SQLITE_DENY
    if action in _WRITES:
        refused.append("writing (INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, transactions)")
        return sqlite3.SQLITE_DENY
    refused.append(f"an operation other than reading (SQLite action {action})")
    return sqlite3.SQLITE_DENY

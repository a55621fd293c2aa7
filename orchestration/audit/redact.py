"""What the audit writer redacts in a statement: free text and JSON values, never what the server owns.

A statement's parameters are named by the column they are bound to (`insert into t (a, b) values (?, ?)`,
`set a = ?`, `where id = ?`, `status in ('x', ?)`). Columns the server owns (ids, keys, statuses,
timestamps: `policies.redaction.owned`) are written as they are; JSON columns are parsed and their values
redacted (so a secret escaped as `\\uXXXX` is seen, and keys stay intact); everything else, including a
parameter whose column cannot be named, is redacted as text (failing closed).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

from policies.redaction import Redactor, owned

JSON_COLUMNS = frozenset({"options", "payload", "response", "spec"})

# Our own SQL (constants in the code), not user text: Python's `re` is fine here.
_INSERT = re.compile(
    r"\s*insert\s+(?:or\s+\w+\s+)?into\s+\w+\s*\(([^)]*)\)\s*values\s*\((.*)\)\s*$", re.I | re.S
)
_NAMED_BY = re.compile(r"(\w+)\s*(?:=|==|!=|<>|<=|>=|<|>|\s+in\s*\([^()]*|\s+is(?:\s+not)?)\s*$", re.I)


def redact_params(redactor: Redactor, sql: str, params: Sequence[Any]) -> list[Any]:
    """`params` of `sql` with free text and JSON values redacted, owned columns untouched."""
    columns = param_columns(sql)
    out = []
    for index, param in enumerate(params):
        if not isinstance(param, str):
            out.append(param)
            continue
        column = columns[index] if index < len(columns) else None
        if column is not None and owned(column):
            out.append(param)
        elif column in JSON_COLUMNS:
            out.append(redact_json(redactor, param))
        else:
            out.append(redactor.text(param))
    return out


def redact_json(redactor: Redactor, text: str) -> str:
    """A JSON document with its values redacted, written back as UTF-8 JSON (not ASCII escapes)."""
    try:
        return json.dumps(redactor.value(json.loads(text)), ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        return redactor.text(text)


@functools.lru_cache(maxsize=1024)
def param_columns(sql: str) -> tuple[str | None, ...]:
    """The column each `?` of `sql` is bound to, in order (None where it cannot be told)."""
    found = _INSERT.match(sql)
    if found:
        columns = [c.strip().strip('"') for c in found.group(1).split(",")]
        values = _split_values(found.group(2))
        if len(columns) == len(values):
            named: list[str | None] = []
            for column, value in zip(columns, values, strict=True):
                count = len(_placeholders(value))
                named += [column] if value.strip() == "?" else [None] * count
            return tuple(named)
    return tuple(
        (match.group(1).lower() if (match := _NAMED_BY.search(sql[:at])) else None)
        for at in _placeholders(sql)
    )


def _placeholders(sql: str) -> list[int]:
    """Positions of the `?` outside quoted literals."""
    positions, quote = [], ""
    for index, char in enumerate(sql):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            positions.append(index)
    return positions


def _split_values(text: str) -> list[str]:
    """A `values (...)` list split on its top-level commas."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts

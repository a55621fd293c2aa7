"""Redaction: secrets never reach the audit or an error message.

One `Redactor` is applied at the single audit writer and where errors are turned into messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"

# Shapes of secrets that are never legitimate content of an audit row.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic API keys
    r"sk-[A-Za-z0-9]{20,}",  # OpenAI-style keys
    r"[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._\-~+/]{12,}=*",  # bearer tokens in headers
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
)

# Environment variables whose values are secrets wherever they appear.
DEFAULT_SECRET_ENV: tuple[str, ...] = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


class Redactor:
    """Replaces secrets in text (and in nested JSON-like values) by `[redacted]`."""

    def __init__(
        self,
        patterns: Iterable[str] = DEFAULT_PATTERNS,
        secret_env: Iterable[str] = DEFAULT_SECRET_ENV,
        environ: dict[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        # Values of secret env vars: exact strings, longest first so a key is never half-replaced.
        values = sorted(
            {env[name] for name in secret_env if len(env.get(name, "")) >= 8}, key=len, reverse=True
        )
        parts = [re.escape(v) for v in values] + list(patterns)
        self._regex = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None

    def text(self, value: str) -> str:
        """`value` with every secret replaced."""
        if self._regex is None or not value:
            return value
        return self._regex.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string redacted, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

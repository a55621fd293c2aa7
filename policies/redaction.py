"""Redaction: secrets never reach the audit or an error message.

One `Redactor` is applied at the single audit writer and where errors are turned into messages. It rewrites
free text and the values of JSON payloads only, never what the server owns (ids, keys, digests, statuses,
timestamps: see `owned`), so a broad user pattern cannot corrupt the audit. Every pattern runs on RE2, in
linear time (`policies.linear`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import Any

from policies import linear

REDACTED = "[redacted]"
SHORT_TEXT = 256
SHORT_TEXTS_KEPT = 4096
"""Texts up to `SHORT_TEXT` characters are redacted once and remembered (up to this many)."""

# Shapes of secrets that are never legitimate content of an audit row.
DEFAULT_PATTERNS: tuple[str, ...] = (
    # PEM private keys (RSA, EC, OPENSSH, ENCRYPTED…), whole; a key cut short is redacted to its end
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\r\n\\:,.\-]*)",
    r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic API keys
    r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}",  # OpenAI project / service keys
    r"sk-[A-Za-z0-9]{20,}",  # OpenAI-style keys
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
    r"AIza[0-9A-Za-z_\-]{35,}",  # Google API keys
    r"(?i:bearer)\s+[A-Za-z0-9._\-~+/]{12,}=*",  # bearer tokens in headers
    # HTTP Basic credentials: in an Authorization header, or a Basic value that is clearly base64
    r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:basic)\s+[A-Za-z0-9+/]+=*",
    r"\bBasic\s+(?:[A-Za-z0-9+/]{8,}={1,2}|[A-Za-z]*[0-9+/][A-Za-z0-9+/]{7,}=*)",
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*",  # JWTs (header.payload.signature)
    r"github_pat_[A-Za-z0-9_]{22,}",  # GitHub fine-grained tokens
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"://[^\s:/?#@\"'<>]+:[^\s/?#@\"'<>]+@",  # a password in a URL (scheme://user:password@host)
)

# What every match of each default pattern starts with: none of these contains a character JSON escapes, so
# a JSON text (written with ensure_ascii=False) holding a secret in any of its strings holds its start too.
DEFAULT_STARTS: dict[str, str] = dict(
    zip(
        DEFAULT_PATTERNS,
        (
            r"-----BEGIN",
            r"sk-",
            r"sk-",
            r"sk-",
            r"[sr]k_",
            r"AIza",
            r"(?i:bearer)",
            r"(?i:authorization)",
            r"Basic",
            r"eyJ",
            r"github_pat_",
            r"gh[pousr]_",
            r"AKIA|ASIA",
            r"xox[abprs]-",
            r"://",
        ),
        strict=True,
    )
)
_JSON_ESCAPED = linear.compile_pattern(r'["\\\x00-\x1f]')

# Environment variables whose values are secrets wherever they appear.
DEFAULT_SECRET_ENV: tuple[str, ...] = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_API_KEY",
    "STRIPE_API_KEY",
    "SLACK_BOT_TOKEN",
)

# Names (columns, payload keys) whose values the server owns: never rewritten.
OWNED_NAMES = frozenset(
    {"id", "key", "seq", "kind", "status", "digest", "hash", "prev_hash", "pin", "channel", "owner", "rule"}
    | {"pattern", "control", "stop_reason", "agent", "model", "provider", "decided_by", "decision"}
)
OWNED_SUFFIXES = ("_id", "_at", "_hash", "_owner", "_by")
_SCALARS = frozenset({int, float, bool, type(None)})
"""Exact types a redaction leaves as they are (no text in them)."""
# Payload keys whose values hold names chosen by a model or a downstream server: no exemption inside.
FOREIGN_KEYS = frozenset({"arguments"})


@functools.lru_cache(maxsize=4096)  # asked for every key of every audited payload; names are few
def owned(name: str) -> bool:
    """Does the server own the value of a column or payload key called `name` (so it is never redacted)?"""
    return name in OWNED_NAMES or name.endswith(OWNED_SUFFIXES) or name.startswith("lease")


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
        patterns = list(patterns)
        self._regex = linear.any_of([*(linear.literal(v) for v in values), *patterns])
        starts = [DEFAULT_STARTS.get(p) for p in patterns]
        self._starts = (
            linear.any_of([*(linear.literal(v) for v in values), *(s for s in starts if s)])
            if all(starts) and not any(_JSON_ESCAPED.search(v) for v in values)
            else None
        )
        """Where a secret could start (None with a pattern of the user's: its start is not known)."""
        self._short: dict[str, str] = {}
        """Short texts already redacted (names, statuses, options recur in every run's rows)."""

    def might_hold_secret(self, json_text: str) -> bool:
        """False only when no string inside `json_text` (JSON written with ensure_ascii=False, or plain text)
        can hold a secret: then redacting its values would change nothing. One search of the whole text
        instead of a walk over every value: a secret begins with one of the starts of the patterns, which
        JSON never escapes."""
        if self._regex is None:
            return False
        return self._starts is None or self._starts.search(json_text)

    def text(self, value: str) -> str:
        """`value` with every secret replaced."""
        if self._regex is None or not value:
            return value
        if len(value) > SHORT_TEXT:
            if self._starts is not None and not self._starts.search(value):
                return value
            return self._regex.sub(REDACTED, value)
        done = self._short.get(value)
        if done is None:
            if len(self._short) >= SHORT_TEXTS_KEPT:
                self._short.clear()
            done = self._short[value] = self._regex.sub(REDACTED, value)
        return done

    def value(self, value: Any, *, foreign: bool = False) -> Any:
        """A JSON-like value with every string redacted, recursively, except the values of keys the server
        owns (`owned`) outside a `FOREIGN_KEYS` subtree. Keys are kept as they are."""
        kind = type(value)  # exact types first: this walks every audited payload
        if kind is str:
            return self.text(value)
        if kind is dict:
            return self._mapping(value, foreign)
        if kind in _SCALARS:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self._mapping(value, foreign)
        if isinstance(value, list | tuple):
            return [self.value(v, foreign=foreign) for v in value]
        return value

    def _mapping(self, value: dict[Any, Any], foreign: bool) -> dict[Any, Any]:
        out = {}
        for k, v in value.items():
            kind = type(v)
            if kind in _SCALARS:
                out[k] = v
            elif not foreign and isinstance(k, str) and owned(k) and not isinstance(v, dict | list):
                out[k] = v
            elif kind is str:
                out[k] = self.text(v)
            else:
                out[k] = self.value(v, foreign=foreign or k in FOREIGN_KEYS)
        return out

"""Linear-time regular expressions: every pattern matched against user or model text goes through here.

Python's `re` backtracks: a pattern such as `(-+\\s+)+/` takes exponential time on a crafted tool argument,
holding the GIL and the event loop. Patterns here are compiled by RE2 (the `google-re2` binding), which runs
in time linear in the text by construction and refuses what needs backtracking (backreferences, lookahead,
lookbehind, atomic groups, possessive quantifiers). Such a pattern is refused when it is loaded, with a
message that says what to rewrite.

Differences from Python's `re` that users see (README, "Regular expressions"): RE2 syntax; `\\d`, `\\w`,
`\\s` and `\\b` are ASCII; `$` without `(?m)` matches only at the very end (`\\Z` is accepted and means the
same as `\\z`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import re2

MAX_PATTERN_CHARS = 4096
"""Longest pattern accepted (a pattern can come from a tool argument: bound what compiling it may cost)."""

MAX_SECRET_BYTES = 32 * 1024
"""Longest text one redaction match may cover (a PEM private key is under 4 KiB)."""

MAX_REPLACEMENTS = 1000
"""Replacements in one text before the rest of it is redacted whole (bounds the work on hostile text)."""

# What needs backtracking, as RE2 reports it, in words a policy author can act on.
_BACKTRACKING = (
    ("(?<", "a lookbehind `(?<=…)`/`(?<!…)`", "e.g. `\\bword` instead of `(?<!\\w)word`"),
    ("(?=", "a lookahead `(?=…)`", "match the text itself, or use two rules"),
    ("(?!", "a negative lookahead `(?!…)`", "use a character class such as `[^x]`, or a separate rule"),
    ("(?>", "an atomic group `(?>…)`", "use a plain group `(?:…)`"),
    ("invalid escape sequence: \\", "a backreference such as `\\1`", "repeat the group's pattern instead"),
    ("bad repetition operator", "a possessive quantifier such as `*+`", "drop the trailing `+`"),
)


def _options(*, capture: bool = True) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    options.never_capture = not capture
    return options


def _translate(pattern: str) -> str:
    """Python spellings RE2 writes differently: `\\Z` is RE2's `\\z` (end of text)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            pair = pattern[i : i + 2]
            out.append("\\z" if pair == "\\Z" else pair)
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


def problem(pattern: str) -> str | None:
    """Why `pattern` is refused (a sentence for the person who wrote it), or None if it is usable."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"the pattern is longer than {MAX_PATTERN_CHARS} characters"
    try:
        re2.compile(_translate(pattern), _options())
        return None
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    except (RecursionError, OverflowError, ValueError) as exc:
        return f"not a usable regular expression ({type(exc).__name__})"
    for marker, what, fix in _BACKTRACKING:
        if marker in detail:
            return (
                f"the pattern uses {what}, which needs backtracking: patterns must run in linear time "
                f"(RE2 syntax), so it is refused; rewrite it ({fix})"
            )
    return f"the pattern is not supported by the linear-time engine (RE2 syntax): {detail}"


def checked(pattern: str) -> str:
    """`pattern` unchanged, or `ValueError` saying why it is refused (for pydantic validators)."""
    why = problem(pattern)
    if why is not None:
        raise ValueError(why)
    return pattern


_NO_MATCH = (-1, -1)
_UNANCHORED, _ANCHOR_BOTH = re2._Anchor.UNANCHORED, re2._Anchor.ANCHOR_BOTH


class LinearPattern:
    """A compiled pattern that matches in time linear in the text."""

    __slots__ = ("_capturing", "_match", "_translated", "pattern")

    def __init__(self, pattern: str, translated: str) -> None:
        self.pattern = pattern
        self._translated = translated
        # Searching needs no groups: without them RE2 answers from its DFA alone. The C++ `Match` is called
        # directly: the wrapper's per-call generator and match object cost more than the search itself.
        self._match = re2.compile(translated, _options(capture=False))._regexp.Match
        self._capturing: Any = None  # compiled with groups on first `findall`

    def _find(
        self, data: bytes, pos: int, end: int, anchor: Any = re2._Anchor.UNANCHORED
    ) -> tuple[int, int] | None:
        """The byte span of the first match in `data[pos:end]`, or None."""
        span = self._match(anchor, data, pos, end)[0]
        return None if span == _NO_MATCH else span

    def search(self, text: str) -> bool:
        """True when `text` contains a match."""
        data = text.encode("utf-8", "surrogatepass")  # inlined: this runs for every argument of every call
        return bool(self._match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)

    def fullmatch(self, text: str) -> bool:
        """True when the whole of `text` matches."""
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._match(_ANCHOR_BOTH, data, 0, len(data))[0] != _NO_MATCH)

    def findall(self, text: str) -> list[Any]:
        """Like `re.findall`: every match, as the group's text (one group) or a tuple of them (several)."""
        if self._capturing is None:
            self._capturing = re2.compile(self._translated, _options())
        found = self._capturing.findall(_utf8(text))
        return [tuple(_text(g) for g in item) if isinstance(item, tuple) else _text(item) for item in found]

    def sub(self, replacement: str, text: str) -> str:
        """`text` with every match replaced by `replacement` (a plain string).

        Bounded work on any text: each search looks at most `2 * MAX_SECRET_BYTES` bytes ahead, and after
        `MAX_REPLACEMENTS` replacements the rest of the text is replaced whole (fail closed: a text that is
        mostly secrets loses its tail rather than leak one).
        """
        if not text:
            return text
        data = _utf8(text)
        size, window = len(data), 2 * MAX_SECRET_BYTES
        out: list[bytes] = []
        done = pos = replaced = 0
        marker = replacement.encode()
        while pos < size:
            end = _boundary(data, min(pos + window, size))
            found = self._find(data, pos, end)
            if found is None:
                if end >= size:
                    break
                # nothing here: move on, keeping an overlap so a match across the edge is still seen whole
                pos = _boundary(data, max(pos + 1, end - MAX_SECRET_BYTES))
                continue
            start, stop = found
            if end < size and start > end - MAX_SECRET_BYTES and start > pos:
                pos = _boundary(data, start)  # it may run past the window: look again from where it starts
                continue
            start, stop = _boundary(data, start), _boundary(data, stop, forward=True)
            if stop == start:  # an empty match replaces nothing
                pos = _boundary(data, start + 1, forward=True)
                continue
            out += [data[done:start], marker]
            done = pos = stop
            replaced += 1
            if replaced >= MAX_REPLACEMENTS and pos < size:
                out.append(marker)
                done = size
                break
        if done == 0:
            return text
        out.append(data[done:])
        return b"".join(out).decode("utf-8", "surrogatepass")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _utf8(text: str) -> bytes:
    # JSON may carry lone surrogates ("\\ud800"): encode them rather than fail on them
    return text.encode("utf-8", "surrogatepass")


def _boundary(data: bytes, index: int, *, forward: bool = False) -> int:
    """`index` moved to the start of a UTF-8 character (backward, or forward)."""
    index = max(0, min(index, len(data)))
    step = 1 if forward else -1
    while 0 < index < len(data) and data[index] & 0xC0 == 0x80:
        index += step
    return index


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> LinearPattern:
    """`pattern` compiled for linear-time matching; `ValueError` (with the reason) if it is refused."""
    checked(pattern)
    return _compiled(pattern)


def _compiled(pattern: str) -> LinearPattern:
    return LinearPattern(pattern, _translate(pattern))


def any_of(patterns: Iterable[str]) -> LinearPattern | None:
    """One pattern matching any of `patterns` (None for none)."""
    parts = [f"(?:{p})" for p in patterns]
    return compile_pattern("|".join(parts)) if parts else None


def literal(text: str) -> str:
    """A pattern matching `text` exactly."""
    return str(re2.escape(text))


def glob_pattern(glob: str) -> str:
    """A shell glob (`*`, `?`, `[abc]`, `[!abc]`, as `fnmatch.fnmatchcase`) as a whole-text pattern."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal `[`, as fnmatch reads it
                out.append(r"\[")
                continue
            out.append(_char_class(glob[i:j]))
            i = j + 1
        else:
            out.append(literal(c))
    return "(?s:" + "".join(out) + ")"


def _char_class(body: str) -> str:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    items, k = [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo <= hi:  # fnmatch drops reversed ranges
                items.append(f"\\x{{{ord(lo):x}}}-\\x{{{ord(hi):x}}}")
            k += 3
        else:
            items.append(f"\\x{{{ord(body[k]):x}}}")
            k += 1
    if not items:  # an empty set: nothing matches it (or, negated, any character)
        return "." if negate else r"[^\x00-\x{10ffff}]"
    return "[" + ("^" if negate else "") + "".join(items) + "]"


def globs(patterns: Iterable[str]) -> LinearPattern:
    """One pattern matching a whole text when any of the globs does."""
    # built here from escaped parts, so always valid; no length limit (a config may list many globs)
    return _compiled("|".join(glob_pattern(p) for p in patterns) or r"[^\x00-\x{10ffff}]")

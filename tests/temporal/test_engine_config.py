"""`[engine]`: validation, clear errors at start, the embedded engine free of temporalio, hostile audit writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.config import load_config
from orchestration.errors import ConfigError, InvalidInputError
from orchestration.temporal.codec import write_from_dict, write_to_dict
from orchestration.temporal.dev import free_port


def test_a_bad_engine_section_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[engine]\nkind = "kafka"\n[agents.a]\ndescription = "a"\ninstructions = "b"\n')
    with pytest.raises(ConfigError, match=r"engine\.kind"):
        load_config(path)


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_an_unreachable_temporal_stops_worker_and_serve_at_start_with_one_line(
    tmp_path: Path, command: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[engine]\nkind = "temporal"\naddress = "127.0.0.1:{free_port()}"\n'
        '[agents.a]\ndescription = "a"\ninstructions = "b"\nmodel = "scripted"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "server", command, "--config", str(config), "--db", str(tmp_path / "a.db")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode != 0
    assert "cannot reach Temporal at 127.0.0.1:" in done.stderr and "dev-temporal" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_embedded_engine_never_imports_temporalio(tmp_path: Path) -> None:
    code = (
        "import anyio, sys\n"
        "from mcp import Client\n"
        "from server.app import build_server\n"
        "from server.settings import Settings\n"
        "from tests.conftest import team\n"
        "async def main():\n"
        f"    async with Client(build_server(Settings(db={str(tmp_path / 'a.db')!r}), config=team(a={{'model': 'scripted'}}))) as c:\n"
        "        r = await c.call_tool('delegate_task', {'agent': 'a', 'task': 't'})\n"
        "        assert r.structured_content['status'] == 'succeeded'\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in sys.modules if m.startswith('temporal')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


RUN = "run_abc"


def good() -> dict:
    return write_to_dict(
        Write(
            [("update steps set status = ? where id = ?", ["succeeded", "step_1"])],
            [Event("step_finished", RUN, {"status": "succeeded"}, "step_1")],
            key=f"{RUN}/3",
        )
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w["statements"].append(["delete from events", []]),
        lambda w: w["statements"].append(["update runs set status = 'x'; drop table events", []]),
        lambda w: w["statements"].append(["update audit_head set seq = 0", []]),
        lambda w: w["statements"][0][1].append({"nested": 1}),
        lambda w: w["events"].append(["step_finished", "run_other", {}, None]),
        lambda w: w.update(key="run_other/1"),
        lambda w: w.update(events=[]),
    ],
)
def test_the_audit_owner_refuses_writes_the_engine_never_makes(change) -> None:
    write = good()
    assert write_from_dict(write, RUN).key == f"{RUN}/3"
    change(write)
    with pytest.raises(InvalidInputError):
        write_from_dict(write, RUN)


def test_a_write_delivered_twice_is_recorded_once(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db") as audit:
        audit.write_sync(Write([], [Event("run_started", RUN, {})]))
        for _ in range(2):
            audit.write_sync(write_from_dict(good(), RUN))
        rows = audit._conn.execute("select kind, event_key from events order by seq").fetchall()  # type: ignore[union-attr]
    assert [tuple(r) for r in rows] == [("run_started", None), ("step_finished", f"{RUN}/3.0")]

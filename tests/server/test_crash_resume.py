"""Kill -9 trials: `concertmaster serve` dies at a chosen point of a run; the next server resumes the run.

Each trial runs the real server over stdio on agents backed by a fake Anthropic Messages API served from this
process. The fake answers deterministically from the request, records every request with a digest of its
body (system, messages, tools), and holds chosen requests until the test has killed the server that sent them:
kill points that need no sleep. A server on the same database then takes the runs over (issue 7, "Durable
runs"). Tool calls in flight are caught with the files fixture's gated tools, open approvals with a policy.

Every reply carries `ref:<digest of its request>`, so the audit tells which requests had their replies
recorded before the kill: none of those may be sent again, and only one in flight may be sent twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from orchestration.approvals import decide_from_cli
from server.cli import main as cli

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-crash-" + "k" * 30
DEADLINE_S = 60.0
"""A safety net for every wait; the waits themselves end on an event or a database condition."""
MODEL = "anthropic:claude-sonnet-4-5"
CALL = re.compile(r"CALL (files__\w+) (\{.*?\})")
"""In a task, what the clerk's first reply asks for: `CALL files__read_file {"name": "a.txt"}`."""
PATTERN_KINDS = {
    "checkpoint",
    "reconciled",
    "escalated",
    "handoff",
    "speaker_selected",
    "chat_terminated",
    "task_ledger",
    "progress_ledger",
    "magentic_reset",
    "magentic_terminated",
    "plan",
    "plan_rejected",
    "subtask_finished",
    "evaluation",
}
"""Events the patterns write: a resumed run must not write them again."""


# -- the fake Messages API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request to the fake, as the script reads it."""

    digest: str
    agent: str
    texts: tuple[str, ...]
    """The text of every message, oldest first."""
    tool_names: tuple[str, ...]
    has_tool_result: bool

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    @property
    def last(self) -> str:
        return self.texts[-1] if self.texts else ""

    @property
    def ref(self) -> str:
        return f"ref:{self.digest[:16]}"


def read_request(body: dict[str, Any]) -> Request:
    material = json.dumps(
        [body.get("system"), body.get("messages"), body.get("tools")], sort_keys=True, separators=(",", ":")
    )
    system = body.get("system") or ""
    found = re.search(r"You are (\w+)\.", system if isinstance(system, str) else json.dumps(system))
    texts = []
    for message in body.get("messages", []):
        blocks = message["content"] if isinstance(message["content"], list) else [message["content"]]
        parts = []
        for block in blocks:
            if isinstance(block, str):
                parts.append(block)
            elif block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                parts.append(str(block.get("content")))
        texts.append("\n".join(parts))
    return Request(
        digest=hashlib.sha256(material.encode()).hexdigest(),
        agent=found.group(1) if found else "?",
        texts=tuple(texts),
        tool_names=tuple(t["name"] for t in body.get("tools") or ()),
        has_tool_result=any(
            isinstance(block, dict) and block.get("type") == "tool_result"
            for block in (body.get("messages") or [{"content": []}])[-1]["content"]
        ),
    )


def script(req: Request) -> tuple[str, list[dict[str, Any]]]:
    """The reply to a request: its text and tool_use blocks. The text carries the request's ref (after any
    ref it quotes)."""
    agent, last, ref = req.agent, req.last, req.ref
    if agent == "clerk" and not req.has_tool_result and (asked := CALL.search(req.texts[0])):
        return ref, [tool_use(req, asked.group(1), json.loads(asked.group(2)))]
    if agent == "clerk":
        return f"clerk is done; the tool said: {last[:200]} {ref}", []
    if (
        agent == "a"
        and "CONSULT" in req.texts[0]
        and "consult_b" in req.tool_names
        and not req.has_tool_result
    ):
        return ref, [tool_use(req, "consult_b", {"message": f"What do you think? ({req.texts[0]})"})]
    if agent == "a" and "CONSULT" in req.texts[0]:
        return f"a, having asked b: {last[:120]} {ref}", []
    if agent == "a" and "transfer_to_b" in req.tool_names:
        return ref, [tool_use(req, "transfer_to_b", {"message": "b, please finish this"})]
    if agent == "m" and "Write the TASK LEDGER" in last:
        return json.dumps({"facts": ["a task"], "guesses": [], "plan": ["a does the work"]}) + f" {ref}", []
    if agent == "m" and "PROGRESS LEDGER" in last:
        worked = any("was asked" in text for text in req.texts[:-1])
        ledger = {
            "is_request_satisfied": worked,
            "is_in_loop": False,
            "is_progress_being_made": True,
            "next_speaker": "a",
            "instruction": "do the work",
            "reason": "a has done it" if worked else "a starts",
        }
        return json.dumps(ledger) + f" {ref}", []
    if agent == "planner" and "Reply with a plan as JSON" in last:
        plan = {
            "subtasks": [
                {"id": "s1", "agent": "a", "task": "the first half", "depends_on": []},
                {"id": "s2", "agent": "b", "task": "the second half", "depends_on": ["s1"]},
            ]
        }
        return json.dumps(plan) + f" {ref}", []
    if agent == "b" and last.startswith("Your turn, b"):
        return f"b agrees with a. {ref} TERMINATE", []
    return f"{agent} did its part after {len(req.texts)} message(s). {ref}", []


def tool_use(req: Request, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{req.digest[:20]}", "name": name, "input": arguments}


@dataclass
class Hold:
    """A request the fake holds (the first one `when` accepts) until the test releases it."""

    when: Callable[[Request], bool]
    arrived: threading.Event = field(default_factory=threading.Event)
    request: Request | None = None

    async def wait(self, what: str = "") -> Request:
        arrived = await anyio.to_thread.run_sync(self.arrived.wait, DEADLINE_S)
        assert arrived and self.request is not None, f"the held request {what} never arrived"
        return self.request


class FakeMessagesAPI:
    """A deterministic Messages API that counts requests and holds chosen ones until the test lets them go."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.holds: list[Hold] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                data = json.dumps(api.answer(body)).encode()
                with contextlib.suppress(OSError):  # the server that asked may be dead by now
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a held request's client was killed: nobody reads the answer

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        req = read_request(body)
        with self._lock:
            self.requests.append(req)
            hold = next((h for h in self.holds if h.request is None and h.when(req)), None)
            if hold is not None:
                hold.request = req
        if hold is not None:
            hold.arrived.set()
            self.release.wait(DEADLINE_S)
        text, calls = script(req)
        return {
            "id": f"msg_{req.digest[:20]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}, *calls],
            "stop_reason": "tool_use" if calls else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 20},
        }

    def hold(self, when: Callable[[Request], bool]) -> Hold:
        """Hold the first request `when` accepts until `release` is set."""
        with self._lock:
            self.holds.append(Hold(when))
            return self.holds[-1]

    def sent(self, run: str) -> Counter[str]:
        """How often each request of a run (by its tag) was sent, by ref."""
        with self._lock:
            return Counter(r.ref[4:] for r in self.requests if run in r.text)

    def __enter__(self) -> FakeMessagesAPI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


# -- the world: a team, a served directory, the database --------------------------------------------------

POLICY = """
default = "allow"
default_reason = "the crash trials allow every tool but writes"

[[rules]]
name = "writes-need-approval"
decision = "require_approval"
tools = ["files.write_file"]
reason = "writes a file"
"""


def team_toml(served: Path, policy: Path) -> str:
    def agent(name: str, description: str, tools: str = "") -> str:
        return (
            f"[agents.{name}]\ndescription = {json.dumps(description)}\n"
            f'instructions = "You are {name}. Be brief."\nmodel = "{MODEL}"\nmax_tokens = 256\n{tools}\n'
        )

    return (
        f"policy = {json.dumps(str(policy))}\n\n"
        "[mcp_servers.files]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = {json.dumps(['-m', 'tests.fixtures.files_server', str(served)])}\n"
        f"cwd = {json.dumps(str(ROOT))}\n"
        "timeout_s = 120\n\n"
        + agent("a", "first worker")
        + agent("b", "second worker")
        + agent("c", "third worker")
        + agent("d", "fourth worker")
        + agent("m", "manager and judge")
        + agent("planner", "plans the work")
        + agent("clerk", "files clerk", 'tools = ["files.*"]')
        + '[teams.pair]\ndescription = "c, then d"\npattern = "sequential"\nagents = ["c", "d"]\n'
    )


@dataclass
class World:
    """A served directory, the audit database, the team config and the environment of every server."""

    tmp: Path
    api: FakeMessagesAPI
    served: Path = field(init=False)
    db: Path = field(init=False)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.served = self.tmp / "served"
        self.served.mkdir()
        (self.served / "a.txt").write_text("hello")
        self.db = self.tmp / "audit.db"
        policy = self.tmp / "policy.toml"
        policy.write_text(POLICY)
        config = self.tmp / "concertmaster.toml"
        config.write_text(team_toml(self.served, policy))
        self.env = {
            **os.environ,
            "CONCERTMASTER_DB": str(self.db),
            "CONCERTMASTER_CONFIG": str(config),
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": self.api.url,
        }

    def server(self) -> Client:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "server", "serve"], env=self.env, cwd=str(ROOT)
        )
        return Client(params, mode="legacy")

    # -- reading what happened
    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def events(self, run_id: str, kind: str | None = None) -> list[sqlite3.Row]:
        if kind is None:
            return self.rows("select * from events where run_id = ? order by seq", run_id)
        return self.rows("select * from events where run_id = ? and kind = ? order by seq", run_id, kind)

    def recorded_refs(self, run_id: str) -> set[str]:
        """The requests whose replies the audit has (by the ref each reply carries)."""
        refs = set()
        for event in self.events(run_id, "model_called"):
            found = re.findall(r"ref:([0-9a-f]{16})", json.loads(event["payload"])["reply"]["text"])
            refs.add(found[-1])  # a reply may quote others; its own ref comes last
        return refs

    def calls(self) -> list[str]:
        path = self.served / ".calls"
        return path.read_text().splitlines() if path.exists() else []

    async def until(self, what: str, condition: Callable[[], bool]) -> None:
        """Wait for a condition on the database or the served directory (polled; the deadline is a net)."""
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            await anyio.sleep(0.02)

    def owner_pid(self, run_id: str) -> int:
        (row,) = self.rows("select owner from runs where id = ?", run_id)
        host, pid, _nonce = row["owner"].split(":")
        assert host == socket.gethostname()
        return int(pid)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with FakeMessagesAPI() as api:
        yield World(tmp_path, api)


# -- starting, killing, following --------------------------------------------------------------------------


async def start(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, {**arguments, "wait_seconds": 0})
    assert not result.is_error, result.content
    return str(result.structured_content["run_id"])


@contextlib.asynccontextmanager
async def doomed_server(world: World) -> AsyncIterator[tuple[Client, Callable[[str], None]]]:
    """A server the block kills with SIGKILL (through the `kill(run_id)` it is given): the client's errors
    about its vanished server are expected then, and only then."""
    killed: list[int] = []

    def kill(run_id: str) -> None:
        pid = world.owner_pid(run_id)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    try:
        async with world.server() as client:
            yield client, kill
            assert killed, "the server was meant to be killed"
    except Exception:
        if not killed:
            raise
    for pid in killed:  # the client reaps its child; a live owner would hold the run until its lease lapses
        await world.until(f"process {pid} to be gone", lambda pid=pid: not Path(f"/proc/{pid}").exists())


async def follow(client: Client, run_id: str, *, until: tuple[str, ...] = ()) -> dict[str, Any]:
    """get_run until the run is done (or reaches a status in `until`)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        result = await client.call_tool("get_run", {"run_id": run_id, "wait_seconds": 2})
        assert not result.is_error, result.content
        run = result.structured_content
        if run["done"] or run["status"] in until:
            return run
        assert time.monotonic() < deadline, f"the run never finished: {run}"


def audit_verifies(db: Path) -> None:
    assert cli(["audit", "verify", "--db", str(db)]) == 0


def check_replay(world: World, run_id: str, tag: str, recorded: set[str]) -> None:
    """Nothing whose result was recorded before the kill was done again, and the audit has each effect once.

    `tag` is in every request of the run; `recorded` are the refs of the replies the audit had at the kill."""
    sent = world.api.sent(tag)
    assert recorded <= sent.keys()
    again = {ref: sent[ref] for ref in recorded if sent[ref] != 1}
    assert not again, f"model calls whose replies were recorded were made again: {again}"
    assert max(sent.values()) <= 2, sent  # only a request in flight at the kill may be sent twice
    assert world.recorded_refs(run_id) == set(sent), "every reply is recorded, once"
    assert len(world.events(run_id, "model_called")) == len(sent)
    assert len(world.events(run_id, "run_resumed")) == 1
    steps = world.rows("select key, status from steps where run_id = ?", run_id)
    assert len({s["key"] for s in steps}) == len(steps), "a step was started twice"
    assert {s["status"] for s in steps} == {"succeeded"}, [tuple(s) for s in steps]
    for kind in ("step_started", "step_finished"):  # a finished step is replayed, not run or ended again
        per_step = Counter(e["step_id"] for e in world.events(run_id, kind))
        assert set(per_step.values()) == {1} and len(per_step) == len(steps), (kind, per_step)
    pattern_events = [
        (e["kind"], e["step_id"], e["payload"]) for e in world.events(run_id) if e["kind"] in PATTERN_KINDS
    ]
    assert len(set(pattern_events)) == len(pattern_events), "a pattern event was written twice"


# -- every pattern, killed during a run's first model call and between two steps of another run -------------


@dataclass(frozen=True)
class Trial:
    tool: str
    arguments: dict[str, Any]
    """The tool's arguments; `{run}` in a text stands for the run's tag (it reaches every model request)."""
    between_steps: Callable[[Request], bool]
    """The request held for the `between_steps` kill point: a model call after a step finished."""
    output: str
    """What the final output contains."""
    after_a_finished_step: bool = True
    """False: the held call comes mid-step, after the step's first reply (and a tool call) was recorded."""

    def for_run(self, tag: str) -> dict[str, Any]:
        return {k: v.replace("{run}", tag) if isinstance(v, str) else v for k, v in self.arguments.items()}


def agent_is(name: str) -> Callable[[Request], bool]:
    return lambda req: req.agent == name


TRIALS = {
    "delegate_task": Trial(
        "delegate_task",
        {"agent": "clerk", "task": 'Read it {run}. CALL files__read_file {"name": "a.txt"}'},
        # one step: its second model call, once its first reply and the tool's result are recorded
        lambda req: req.agent == "clerk" and req.has_tool_result,
        "the tool said: hello",
        after_a_finished_step=False,
    ),
    "run_sequential": Trial(
        "run_sequential",
        # the last member is a sub-team (c then d): killed inside it, after c finished
        {"agents": ["a", "b", "pair"], "task": "Write a haiku together {run}."},
        agent_is("d"),
        "d did its part",
    ),
    "run_concurrent": Trial(
        "run_concurrent",
        {"agents": ["a", "b", "c"], "task": "Answer alone {run}.", "reconcile": "judge", "judge": "m"},
        agent_is("m"),
        "m did its part",
    ),
    "run_handoff": Trial(
        "run_handoff",
        # a consults b: killed during b's step, nested in a's unfinished step
        {"agent": "a", "agents": ["a", "b"], "task": "CONSULT b, then answer {run}."},
        agent_is("b"),
        "a, having asked b: b did its part",
        after_a_finished_step=False,
    ),
    "delegate_task_with_handoffs": Trial(
        "delegate_task",
        {"agent": "a", "task": "Start it, let b finish {run}.", "allow_handoffs": True},
        agent_is("b"),
        "b did its part",
    ),
    "start_group_chat": Trial(
        "start_group_chat",
        {"agents": ["a", "b"], "topic": "Pick a name {run}.", "max_turns": 4},
        agent_is("b"),
        "b agrees with a",
    ),
    "run_magentic": Trial(
        "run_magentic",
        {"goal": "Get it done {run}.", "agents": ["a"], "manager": "m"},
        agent_is("a"),
        "m did its part",
    ),
    "plan_and_execute": Trial(
        "plan_and_execute",
        {"goal": "Do both halves {run}.", "agents": ["a", "b"], "planner": "planner"},
        agent_is("b"),
        "b did its part",
    ),
}


async def test_every_pattern_killed_in_a_model_call_resumes_on_the_next_server_without_repeating_work(
    world: World, subtests: pytest.Subtests
) -> None:
    """One server runs two runs of every pattern tool and is killed when, for each tool, run 1 is in its first
    model call (right after run_started) and run 2 in a model call after a step finished (or mid-step after a
    recorded reply); the next server adopts all of them and finishes each. One server pair for all tools
    keeps the trial cheap; each tool is checked in its own subtest."""
    tags = {(name, n): f"[{name} {n}]" for name in TRIALS for n in (1, 2)}
    holds = {
        (name, n): world.api.hold(
            lambda req, tag=tags[name, n], trial=TRIALS[name], n=n: (
                tag in req.text and (n == 1 or trial.between_steps(req))
            )
        )
        for name, n in tags
    }
    async with doomed_server(world) as (client, kill):
        runs = {
            key: await start(client, TRIALS[key[0]].tool, TRIALS[key[0]].for_run(tag))
            for key, tag in tags.items()
        }
        held = {key: await hold.wait(tags[key]) for key, hold in holds.items()}
        kill(runs["delegate_task", 1])
    world.api.release.set()  # the held calls' server is dead: their answers go nowhere
    recorded = {key: world.recorded_refs(run_id) for key, run_id in runs.items()}
    for (name, n), run_id in runs.items():
        assert world.rows("select status from runs where id = ?", run_id)[0]["status"] == "running", name
        if n == 1:
            assert next(r for r in world.api.requests if tags[name, n] in r.text) == held[name, n]
            continue
        assert recorded[name, n], f"{name} run 2 was meant to be killed after a recorded reply"
        if TRIALS[name].after_a_finished_step:
            finished = world.rows("select * from steps where run_id = ? and status = 'succeeded'", run_id)
            assert finished, f"{name} run 2 was meant to be killed after a finished step"

    async with world.server() as client:
        for name, trial in TRIALS.items():
            with subtests.test(msg=name):
                for n in (1, 2):
                    run = await follow(client, runs[name, n])
                    assert run["status"] == "succeeded", (n, run)
                    assert trial.output in run["output"], (n, run["output"])
                    ref = held[name, n].ref[4:]
                    assert world.api.sent(tags[name, n])[ref] == 2, n  # in flight at the kill: asked again
                    check_replay(world, runs[name, n], tags[name, n], recorded[name, n])
    # one read per delegated run: run 2's recorded result was replayed, not read again
    assert world.calls() == ["read_file a.txt", "read_file a.txt"]
    audit_verifies(world.db)


# -- downstream tool calls in flight at the kill -------------------------------------------------------------


def append(line: str) -> str:
    return f'Log it. CALL files__append_line {{"name": "log.txt", "line": "{line}"}}'


async def test_tool_calls_in_flight_at_the_kill_are_retried_if_read_only_else_a_human_decides(
    world: World,
) -> None:
    """Three runs are in a tool call when the server dies: a read (retried without asking), and two appends
    to a file (the human approves one, which runs again, and denies the other, which is skipped)."""
    read_task = 'Check it [read]. CALL files__slow_read {"name": "a.txt"}'
    starts = {
        "[read]": ("run_sequential", {"agents": ["a", "clerk", "b"], "task": read_task}),
        "[approve]": ("delegate_task", {"agent": "clerk", "task": append("paid invoice 7") + " [approve]"}),
        "[deny]": ("delegate_task", {"agent": "clerk", "task": append("paid invoice 8") + " [deny]"}),
    }
    lines = {
        "[read]": "slow_read a.txt",
        "[approve]": "append_line log.txt paid invoice 7",
        "[deny]": "append_line log.txt paid invoice 8",
    }
    async with doomed_server(world) as (client, kill):
        runs = {tag: await start(client, tool, arguments) for tag, (tool, arguments) in starts.items()}
        await world.until("the three tool calls", lambda: set(lines.values()) <= set(world.calls()))
        for run_id in runs.values():
            assert world.events(run_id, "tool_call_started") and not world.events(run_id, "tool_called")
        kill(runs["[read]"])
    abandoned = {f"abandoned {line}" for line in lines.values()}
    await world.until("the orphaned calls to be given up", lambda: abandoned <= set(world.calls()))
    (world.served / ".gate").write_text("open")  # calls from now on go through at once
    recorded = {tag: world.recorded_refs(run_id) for tag, run_id in runs.items()}

    async with world.server() as client:
        read = await follow(client, runs["[read]"])
        for tag in ("[approve]", "[deny]"):
            parked = await follow(client, runs[tag], until=("awaiting_approval",))
            assert parked["status"] == "awaiting_approval", parked
        questions = {
            q["run_id"]: q
            for q in (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        }
        assert questions.keys() == {runs["[approve]"], runs["[deny]"]}
        for tag in ("[approve]", "[deny]"):
            question = questions[runs[tag]]
            assert question["rule"] == "in_flight" and question["human_only"], question
            assert question["tool"] == "files.append_line"
            assert question["arguments"] == {"name": "log.txt", "line": lines[tag].split(" ", 2)[2]}
            assert "the server stopped during files.append_line" in question["reason"]
            assert "may or may not have happened" in question["reason"]
        assert world.calls().count(lines["[approve]"]) == 1  # not retried while the human thinks
        refused = await client.call_tool(
            "approve_action", {"action_id": questions[runs["[approve]"]]["action_id"], "decision": "approve"}
        )
        assert refused.is_error and "needs a human decision" in refused.content[0].text
        approved = await anyio.run_process(  # the human, at a terminal
            [
                sys.executable,
                *("-m", "server", "approve", questions[runs["[approve]"]]["action_id"]),
                *("--db", str(world.db), "--reason", "it did not go through"),
            ],
            cwd=str(ROOT),
            env=world.env,
            check=False,
        )
        assert approved.returncode == 0, approved.stderr
        await anyio.to_thread.run_sync(
            decide_from_cli, world.db, questions[runs["[deny]"]]["action_id"], "deny", "it went through"
        )
        finished = {tag: await follow(client, runs[tag]) for tag in ("[approve]", "[deny]")}

    assert read["status"] == "succeeded" and "b did its part" in read["output"], read
    assert world.calls().count("slow_read a.txt") == 2 and world.calls().count("read a.txt") == 1
    (result,) = world.events(runs["[read]"], "tool_called")
    assert json.loads(result["payload"])["result"] == "hello"
    assert not world.rows("select * from approvals where run_id = ?", runs["[read]"])

    assert finished["[approve]"]["status"] == "succeeded", finished["[approve]"]
    assert "the tool said: appended to log.txt" in finished["[approve]"]["output"]
    assert world.calls().count(lines["[approve]"]) == 2  # called again, once, after the approval
    assert finished["[deny]"]["status"] == "succeeded", finished["[deny]"]
    assert "may or may not have happened" in finished["[deny]"]["output"]
    assert "it went through" in finished["[deny]"]["output"]
    assert world.calls().count(lines["[deny]"]) == 1  # skipped: never called again
    assert [c for c in world.calls() if c.startswith("appended")] == ["appended log.txt paid invoice 7"]
    assert (world.served / "log.txt").read_text() == "paid invoice 7\n"
    for tag, decision in (("[approve]", "approved"), ("[deny]", "denied")):
        (asked,) = world.rows("select status, channel, rule from approvals where run_id = ?", runs[tag])
        assert tuple(asked) == (decision, "cli", "in_flight")
    for tag, run_id in runs.items():
        check_replay(world, run_id, tag, recorded[tag])
    audit_verifies(world.db)


# -- killed while a policy approval is open -----------------------------------------------------------------


def write(tag: str) -> str:
    return f'Note it {tag}. CALL files__write_file {{"name": "note{tag[-2]}.txt", "content": "remember"}}'


async def test_runs_killed_while_awaiting_approval_keep_their_question_and_ask_it_once(world: World) -> None:
    """Run 1's question is answered on the next server (approve_action); run 2's through the CLI while no
    server runs: the next server applies that decision without asking again."""
    starts = {
        "[run 1]": ("delegate_task", {"agent": "clerk", "task": write("[run 1]")}),
        "[run 2]": ("run_sequential", {"agents": ["a", "clerk"], "task": write("[run 2]")}),
    }
    async with doomed_server(world) as (client, kill):
        runs = {tag: await start(client, tool, arguments) for tag, (tool, arguments) in starts.items()}
        for run_id in runs.values():
            parked = await follow(client, run_id, until=("awaiting_approval",))
            assert parked["status"] == "awaiting_approval", parked
        kill(runs["[run 1]"])
    recorded = {tag: world.recorded_refs(run_id) for tag, run_id in runs.items()}
    asked = {
        tag: world.rows("select id, status from pending_requests where run_id = ?", run_id)
        for tag, run_id in runs.items()
    }
    assert all(len(rows) == 1 and rows[0]["status"] == "pending" for rows in asked.values())
    assert world.calls() == []
    await anyio.to_thread.run_sync(decide_from_cli, world.db, asked["[run 2]"][0]["id"], "approve", "fine")

    async with world.server() as client:
        run = await follow(client, runs["[run 1]"], until=("awaiting_approval",))
        assert run["status"] == "awaiting_approval", run
        (question,) = (await client.call_tool("list_pending_approvals", {})).structured_content[
            "approvals"
        ]  # run 2's was decided while the server was down
        assert question["action_id"] == asked["[run 1]"][0]["id"]  # the same question, adopted
        decision = await client.call_tool(
            "approve_action", {"action_id": question["action_id"], "decision": "approve", "reason": "ok"}
        )
        assert not decision.is_error, decision.content
        finished = {tag: await follow(client, run_id) for tag, run_id in runs.items()}
    for tag, run in finished.items():
        assert run["status"] == "succeeded", (tag, run)
        assert (world.served / f"note{tag[-2]}.txt").read_text() == "remember"
        assert len(world.rows("select * from approvals where run_id = ?", runs[tag])) == 1
        check_replay(world, runs[tag], tag, recorded[tag])
    assert sorted(world.calls()) == ["write_file note1.txt", "write_file note2.txt"]
    audit_verifies(world.db)


async def test_an_approved_call_killed_in_flight_is_asked_about_once_even_across_two_crashes(
    world: World,
) -> None:
    """The policy's question was answered before the call started; the server dies during the call, and the
    next one dies too while the human has not yet answered the in-flight question: the third server asks that
    same question (not the policy's again), and the call happens once."""
    (world.tmp / "policy.toml").write_text(
        POLICY.replace('tools = ["files.write_file"]', 'tools = ["files.write_file", "files.append_line"]')
    )
    line = "append_line log.txt paid invoice 9"
    async with doomed_server(world) as (client, kill):
        run_id = await start(client, "delegate_task", {"agent": "clerk", "task": append("paid invoice 9")})
        parked = await follow(client, run_id, until=("awaiting_approval",))
        (policy_question,) = parked["pending"]
        decided = await client.call_tool(
            "approve_action", {"action_id": policy_question["request_id"], "decision": "approve"}
        )
        assert not decided.is_error, decided.content
        await world.until("the call", lambda: line in world.calls())
        kill(run_id)
    await world.until("the orphaned call to be given up", lambda: f"abandoned {line}" in world.calls())
    (world.served / ".gate").write_text("open")
    recorded = world.recorded_refs(run_id)

    async with doomed_server(world) as (client, kill):
        parked = await follow(client, run_id, until=("awaiting_approval",))
        (question,) = parked["pending"]
        assert question["request_id"] != policy_question["request_id"] and question["human_only"]
        assert "may or may not have happened" in question["question"]
        kill(run_id)
    async with world.server() as client:
        parked = await follow(client, run_id, until=("awaiting_approval",))
        assert [p["request_id"] for p in parked["pending"]] == [question["request_id"]]
        await anyio.to_thread.run_sync(decide_from_cli, world.db, question["request_id"], "approve", "yes")
        run = await follow(client, run_id)
    assert run["status"] == "succeeded", run
    assert world.calls().count(line) == 2 and world.calls().count("appended log.txt paid invoice 9") == 1
    approvals = world.rows(
        "select status, channel, rule from approvals where run_id = ? order by rowid", run_id
    )
    assert [tuple(a) for a in approvals] == [
        ("approved", "tool", "writes-need-approval"),
        ("approved", "cli", "in_flight"),
    ]
    assert len(world.events(run_id, "run_resumed")) == 2
    sent = world.api.sent("paid invoice 9")
    assert all(sent[ref] == 1 for ref in recorded) and set(sent) == world.recorded_refs(run_id)
    audit_verifies(world.db)


async def test_a_run_waiting_for_a_human_outlives_any_number_of_clean_restarts(world: World) -> None:
    """Quitting the host app stops the server cleanly; the run's question must wait through such restarts.
    The automatic-resume cap is for runs that keep crashing their server."""
    config = world.tmp / "concertmaster.toml"
    config.write_text(config.read_text() + "\n[runs]\nmax_auto_resumes = 1\n")
    async with world.server() as client:
        run_id = await start(client, "delegate_task", {"agent": "clerk", "task": write("[run 1]")})
        await follow(client, run_id, until=("awaiting_approval",))
    for _ in range(2):  # the app quits and starts again, twice
        async with world.server() as client:
            run = await follow(client, run_id, until=("awaiting_approval",))
    assert run["status"] == "awaiting_approval", run

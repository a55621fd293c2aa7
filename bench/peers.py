"""concertmaster against langgraph and openai-agents on the same workloads, with a fake model of the same latency.

    python bench/peers.py                # full run: every workload 7 times (one to two minutes)
    python bench/peers.py --quick        # 3 times, fan-outs up to 100 (about a minute)
    python bench/peers.py --repeat 11    # more repetitions: a tighter interval (and a wider min-max)

Needs the optional `bench` extra (`pip install -e ".[bench]"`: openai-agents, langgraph); never run by CI.
Every workload runs R times, interleaved (ours, openai-agents, langgraph, ..., the ideal, ours, ...) so that the
load of this shared machine falls on every side alike; the table gives the median and the spread (min-max) of
each. The ideal is no framework but the floor: the workload's model calls made directly, in its shape and nothing
else, timed like the others. Ours and the ideal are each compared with the best peer (lowest median) by two
verdicts (`bench/noise.py`): the strict rule (the difference of medians must exceed the larger min-max spread)
and a bootstrap 95 % interval of the ratio of medians; where even the ideal is "within noise" of a peer, the
workload cannot tell any framework from that peer, and the table says so.
Each framework's setup (runtime, agents, compiled graph) is outside the timing; only the run is timed.
Every side makes the same number of model calls, each sleeping the same latency L; the calls are counted on
every side and checked against the workload's expectation. Peers write no audit trail: the comparison shows
what concertmaster's durable audit costs on top of an in-memory run. Prints a markdown table and writes
bench/peers.json (raw samples and verdicts included).
"""

import argparse
import asyncio
import gc
import importlib.metadata
import importlib.util
import json
import operator
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import noise
import run as ours

DURABLE_PEER = "langgraph+sqlite"
FRAMEWORKS: tuple[str, ...] = ("concertmaster", "openai-agents", "langgraph")
if importlib.util.find_spec("langgraph.checkpoint.sqlite") is not None:
    FRAMEWORKS += (
        DURABLE_PEER,
    )  # pip install langgraph-checkpoint-sqlite: a peer that also writes each step
PEERS = FRAMEWORKS[1:]
IDEAL = "ideal (bare calls)"
SIDES = (*FRAMEWORKS, IDEAL)
"""Everything timed, in the order of the rotation; the ideal is a floor, never a peer."""
Measure = Callable[[], Awaitable[tuple[float, int]]]
"""One timed run of a workload on one framework: (wall seconds, model calls made)."""


class FakeModel:
    """The peers' model: sleeps the latency, counts the call, answers like the scripted model's default reply."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    async def complete(self, agent: str, prompt: str) -> str:
        self.calls += 1
        await asyncio.sleep(self.latency)
        first_line = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
        return f"[fake {agent}] Done: {first_line[:160]}"


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def plan_layers(layers: int, width: int) -> list[list[str]]:
    """The subtask ids of the planner workload, layer by layer (each depends on the whole layer before)."""
    return [[f"s{layer}_{i}" for i in range(width)] for layer in range(layers)]


# -- concertmaster: the scripted model through the public Runtime API, as bench/run.py drives it ------------------
class Ours:
    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def _run(
        self, members: list[str], body: Any, replies: list[str] | None = None
    ) -> tuple[float, int]:
        model = ours.ScriptedModel(replies or [], latency=self.latency)
        wall, result = await ours.run_body(ours.team(members), body, model=model)
        # a chat that runs out of turns ends "stopped" by design (the last message stands)
        assert result["status"] in ("succeeded", "stopped"), result
        return wall, len(model.requests)

    async def fan_out(self, n: int) -> tuple[float, int]:
        members = names("a", n)
        return await self._run(members, ours.concurrent(members, "t", ours.ConcurrentOptions()))

    async def chain(self, n: int) -> tuple[float, int]:
        members = names("a", n)
        return await self._run(members, ours.sequential(members, "t"))

    async def chat(self, agents: int, rounds: int) -> tuple[float, int]:
        members = names("a", agents)
        options = ours.GroupChatOptions(max_turns=agents * rounds)
        return await self._run(members, ours.group_chat(members, "topic", options))

    async def plan(self, layers: int, width: int) -> tuple[float, int]:
        ids = plan_layers(layers, width)
        subtasks = [
            {
                "id": sid,
                "agent": f"w{i}",
                "task": f"part {layer}.{i}",
                "depends_on": ids[layer - 1] if layer else [],
            }
            for layer, row in enumerate(ids)
            for i, sid in enumerate(row)
        ]
        workers = names("w", width)
        body = ours.plan_and_execute("goal", workers, ours.PlanOptions(planner="planner"))
        return await self._run(["planner", *workers], body, [json.dumps({"subtasks": subtasks})])


# -- openai-agents: Runner.run per agent call, asyncio.gather for parallel ones ---------------------------------
class OpenAIAgents:
    def __init__(self, latency: float) -> None:
        from agents import set_tracing_disabled

        set_tracing_disabled(True)
        self.latency = latency

    def _agents(self, members: list[str]) -> tuple[dict[str, Any], FakeModel]:
        from agents import Agent
        from agents.items import ModelResponse
        from agents.models.interface import Model
        from agents.usage import Usage
        from openai.types.responses import ResponseOutputMessage, ResponseOutputText

        fake = FakeModel(self.latency)

        class Adapter(Model):
            def __init__(self, agent: str) -> None:
                self.agent = agent

            async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any) -> Any:
                last = input if isinstance(input, str) else str(input[-1].get("content", ""))
                text = await fake.complete(self.agent, last)
                message = ResponseOutputMessage(
                    id="m",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
                )
                return ModelResponse(output=[message], usage=Usage(), response_id=None)

            def stream_response(self, *args: Any, **kwargs: Any) -> Any:
                raise NotImplementedError

        agents = {n: Agent(name=n, instructions=f"You are {n}.", model=Adapter(n)) for n in members}
        return agents, fake

    async def fan_out(self, n: int) -> tuple[float, int]:
        from agents import Runner

        # one agent per member, as ours has: one shared Agent for all n runs measured 2-3x slower for n = 1000
        agents, fake = self._agents(names("a", n))
        started = time.perf_counter()
        await asyncio.gather(*(Runner.run(a, "t") for a in agents.values()))
        return time.perf_counter() - started, fake.calls

    async def chain(self, n: int) -> tuple[float, int]:
        from agents import Runner

        agents, fake = self._agents(names("a", n))
        started = time.perf_counter()
        text = "t"
        for agent in agents.values():
            text = str((await Runner.run(agent, text)).final_output)
        return time.perf_counter() - started, fake.calls

    async def chat(self, agents_n: int, rounds: int) -> tuple[float, int]:
        """The closest equivalent of a group chat: a loop of Runner.run over the agents in turn, each given
        the transcript so far (its own messages as assistant, the others' as user labelled with the speaker)."""
        from agents import Runner

        members = names("a", agents_n)
        agents, fake = self._agents(members)
        started = time.perf_counter()
        turns: list[tuple[str, str]] = []
        for turn in range(agents_n * rounds):
            speaker = members[turn % agents_n]
            items: list[Any] = [{"role": "user", "content": "Topic of the discussion: topic"}]
            for who, text in turns:
                own = who == speaker
                items.append(
                    {"role": "assistant" if own else "user", "content": text if own else f"[{who}]: {text}"}
                )
            items.append({"role": "user", "content": f"Your turn, {speaker}: give your contribution."})
            result = await Runner.run(agents[speaker], items)
            turns.append((speaker, str(result.final_output)))
        return time.perf_counter() - started, fake.calls

    async def plan(self, layers: int, width: int) -> tuple[float, int]:
        from agents import Runner

        workers = names("w", width)
        agents, fake = self._agents(["planner", *workers])
        started = time.perf_counter()
        await Runner.run(agents["planner"], "Goal: goal. Reply with a plan.")
        previous: list[str] = []
        for layer in range(layers):
            inputs = "\n\n".join(previous)
            runs = [
                Runner.run(agents[w], f"Your subtask: part {layer}.{i}\n\n{inputs}")
                for i, w in enumerate(workers)
            ]
            previous = [str(r.final_output) for r in await asyncio.gather(*runs)]
        return time.perf_counter() - started, fake.calls


# -- langgraph: a StateGraph per workload, each model call a node ------------------------------------------------
class Outputs(TypedDict):
    outputs: Annotated[list[str], operator.add]


class ChatState(TypedDict):
    messages: Annotated[list[tuple[str, str]], operator.add]
    turn: int


def merged(left: dict[str, str], right: dict[str, str]) -> dict[str, str]:
    return {**left, **right}


class PlanState(TypedDict):
    outputs: Annotated[dict[str, str], merged]


class LangGraph:
    def __init__(self, latency: float, *, durable: bool = False) -> None:
        self.latency = latency
        self.durable = durable
        """Checkpoint every step to SQLite (langgraph-checkpoint-sqlite): the peer's equivalent of our audit."""

    async def _timed(
        self, graph: Any, state: dict[str, Any], fake: FakeModel, limit: int = 25
    ) -> tuple[float, int]:
        config: dict[str, Any] = {"recursion_limit": limit}
        if not self.durable:
            compiled = graph.compile()  # setup, like building our team config: outside the timing
            started = time.perf_counter()
            await compiled.ainvoke(state, config)
            return time.perf_counter() - started, fake.calls
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = Path(tempfile.mkdtemp(prefix="lg-bench-")) / "checkpoints.db"
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()  # setup, like our audit database's creation: outside the timing
            compiled = graph.compile(checkpointer=saver)
            config["configurable"] = {"thread_id": "bench"}
            started = time.perf_counter()
            await compiled.ainvoke(state, config)
            wall = time.perf_counter() - started
        shutil.rmtree(path.parent, ignore_errors=True)
        return wall, fake.calls

    def _node(self, fake: FakeModel, name: str) -> Callable[[Outputs], Awaitable[dict[str, list[str]]]]:
        async def node(state: Outputs) -> dict[str, list[str]]:
            return {"outputs": [await fake.complete(name, state["outputs"][-1] if state["outputs"] else "t")]}

        return node

    async def fan_out(self, n: int) -> tuple[float, int]:
        from langgraph.graph import END, START, StateGraph

        fake, graph = FakeModel(self.latency), StateGraph(Outputs)
        for name in names("a", n):
            graph.add_node(name, self._node(fake, name))
            graph.add_edge(START, name)
            graph.add_edge(name, END)
        return await self._timed(graph, {"outputs": []}, fake)

    async def chain(self, n: int) -> tuple[float, int]:
        from langgraph.graph import END, START, StateGraph

        fake, graph = FakeModel(self.latency), StateGraph(Outputs)
        previous = START
        for name in names("a", n):
            graph.add_node(name, self._node(fake, name))
            graph.add_edge(previous, name)
            previous = name
        graph.add_edge(previous, END)
        return await self._timed(graph, {"outputs": []}, fake, limit=n + 5)

    async def chat(self, agents_n: int, rounds: int) -> tuple[float, int]:
        """One speaker node looping on a turn counter through a conditional edge; the speaker is round robin
        and sees the transcript accumulated in the state."""
        from langgraph.graph import END, START, StateGraph

        members, turns, fake = names("a", agents_n), agents_n * rounds, FakeModel(self.latency)

        async def speaker(state: ChatState) -> dict[str, Any]:
            name = members[state["turn"] % agents_n]
            lines = [
                "Topic of the discussion: topic",
                *(f"[{who}]: {text}" for who, text in state["messages"]),
            ]
            text = await fake.complete(
                name, f"Your turn, {name}: give your contribution.\n" + "\n\n".join(lines)
            )
            return {"messages": [(name, text)], "turn": state["turn"] + 1}

        graph = StateGraph(ChatState)
        graph.add_node("speaker", speaker)
        graph.add_edge(START, "speaker")
        graph.add_conditional_edges("speaker", lambda s: "speaker" if s["turn"] < turns else END)
        return await self._timed(graph, {"messages": [], "turn": 0}, fake, limit=turns + 5)

    async def plan(self, layers: int, width: int) -> tuple[float, int]:
        """A planner node, then the layers as parallel nodes: fan-out edges from the planner, a fan-in edge
        (wait for all) from each whole layer to every node of the next."""
        from langgraph.graph import END, START, StateGraph

        fake, graph, ids = FakeModel(self.latency), StateGraph(PlanState), plan_layers(layers, width)

        async def planner(state: PlanState) -> dict[str, dict[str, str]]:
            return {"outputs": {"plan": await fake.complete("planner", "Goal: goal. Reply with a plan.")}}

        def worker(sid: str, needs: list[str]) -> Callable[[PlanState], Awaitable[dict[str, dict[str, str]]]]:
            async def node(state: PlanState) -> dict[str, dict[str, str]]:
                inputs = "\n\n".join(state["outputs"][d] for d in needs)
                return {"outputs": {sid: await fake.complete(sid, f"Your subtask: {sid}\n\n{inputs}")}}

            return node

        graph.add_node("planner", planner)
        graph.add_edge(START, "planner")
        for layer, row in enumerate(ids):
            for sid in row:
                graph.add_node(sid, worker(sid, ids[layer - 1] if layer else []))
                graph.add_edge(ids[layer - 1] if layer else "planner", sid)
                if layer == layers - 1:
                    graph.add_edge(sid, END)
        return await self._timed(graph, {"outputs": {}}, fake)


# -- the ideal: no framework, the floor every side is measured against -------------------------------------------
class Ideal:
    """Each workload's model calls made directly on the same `FakeModel`, in the workload's shape and nothing
    else: what a framework that costs nothing would measure (the timer overshoot of every sleep included)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def fan_out(self, n: int) -> tuple[float, int]:
        fake = FakeModel(self.latency)
        started = time.perf_counter()
        await asyncio.gather(*(fake.complete(name, "t") for name in names("a", n)))
        return time.perf_counter() - started, fake.calls

    async def chain(self, n: int) -> tuple[float, int]:
        fake = FakeModel(self.latency)
        started = time.perf_counter()
        text = "t"
        for name in names("a", n):
            text = await fake.complete(name, text)
        return time.perf_counter() - started, fake.calls

    async def chat(self, agents_n: int, rounds: int) -> tuple[float, int]:
        members, fake = names("a", agents_n), FakeModel(self.latency)
        started = time.perf_counter()
        messages: list[tuple[str, str]] = []
        for turn in range(agents_n * rounds):
            name = members[turn % agents_n]
            lines = ["Topic of the discussion: topic", *(f"[{who}]: {text}" for who, text in messages)]
            prompt = f"Your turn, {name}: give your contribution.\n" + "\n\n".join(lines)
            messages.append((name, await fake.complete(name, prompt)))
        return time.perf_counter() - started, fake.calls

    async def plan(self, layers: int, width: int) -> tuple[float, int]:
        fake = FakeModel(self.latency)
        started = time.perf_counter()
        await fake.complete("planner", "Goal: goal. Reply with a plan.")
        previous: list[str] = []
        for row in plan_layers(layers, width):
            inputs = "\n\n".join(previous)
            previous = await asyncio.gather(
                *(fake.complete(sid, f"Your subtask: {sid}\n\n{inputs}") for sid in row)
            )
        return time.perf_counter() - started, fake.calls


# -- the workloads and the statistics ---------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    model_calls: int
    """Model calls every framework must make (checked on every run)."""
    critical_path: float
    """Model latencies on the critical path, in L: the wall time of a framework that costs nothing on a timer
    that never overshoots (the ideal side measures what the timer really gives)."""
    per_step: bool
    """Report overhead in ms per step ((wall - critical path) / calls) instead of wall / L."""
    runs: dict[str, Measure]
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def metric(self, wall: float, latency: float) -> float:
        if self.per_step:
            return (wall - self.critical_path * latency) / self.model_calls * 1000
        return wall / latency


def workloads(latency: float, fan_sizes: list[int]) -> list[Workload]:
    sides = {
        "concertmaster": Ours(latency),
        "openai-agents": OpenAIAgents(latency),
        "langgraph": LangGraph(latency),
        DURABLE_PEER: LangGraph(latency, durable=True),
        IDEAL: Ideal(latency),
    }
    sides = {k: v for k, v in sides.items() if k in SIDES}
    out = []
    for n in fan_sizes:
        out.append(
            Workload(
                f"fan-out {n} (wall / L)",
                n,
                1,
                False,
                {k: (lambda s=s, n=n: s.fan_out(n)) for k, s in sides.items()},
                "1 L on the critical path",
            )
        )
    out.append(
        Workload(
            "chain of 20 (overhead ms/step)",
            20,
            20,
            True,
            {k: (lambda s=s: s.chain(20)) for k, s in sides.items()},
            "20 L on the critical path: 0 ms/step of overhead",
        )
    )
    out.append(
        Workload(
            "group chat 4 agents x 5 rounds (wall / L)",
            20,
            20,
            False,
            {k: (lambda s=s: s.chat(4, 5)) for k, s in sides.items()},
            "20 L on the critical path; openai-agents: a loop of Runner.run over the 4 agents with the transcript (no chat primitive)",
        )
    )
    out.append(
        Workload(
            "planner, 20-node plan 4 layers x 5 (wall / L)",
            21,
            5,
            False,
            {k: (lambda s=s: s.plan(4, 5)) for k, s in sides.items()},
            "5 L on the critical path (planner + 4 layers); peers run a fixed plan, ours parses and validates the planner's JSON",
        )
    )
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@dataclass(frozen=True)
class Reading:
    """One side's samples against one peer's on one workload, read by both verdicts (lower is better)."""

    side: str
    peer: str
    strict: noise.Strict
    bootstrap: noise.Bootstrap


def read(w: Workload, side: str, peer: str) -> Reading:
    ours, theirs = w.samples[side], w.samples[peer]
    return Reading(side, peer, noise.strict(ours, theirs), noise.bootstrap(ours, theirs))


def best_peer(w: Workload) -> str:
    """The peer with the lowest median: the one to beat (the ideal is never a peer)."""
    return min(PEERS, key=lambda k: statistics.median(w.samples[k]))


def readings(w: Workload) -> dict[str, Reading]:
    """Ours and the ideal against the best peer, and ours against the durable peer where it runs."""
    best = best_peer(w)
    out = {"ours_vs_best_peer": read(w, "concertmaster", best), "ideal_vs_best_peer": read(w, IDEAL, best)}
    if DURABLE_PEER in PEERS:
        out["ours_vs_durable_peer"] = read(w, "concertmaster", DURABLE_PEER)
    return out


def fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"


def cell(values: list[float]) -> str:
    s = summary(values)
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def bold(verdict: str) -> str:
    return f"**{verdict}**" if verdict in (noise.AHEAD, noise.BEHIND) else verdict


def strict_cell(r: Reading) -> str:
    s = r.strict
    if s.verdict not in (noise.AHEAD, noise.BEHIND):
        side = "ahead" if s.difference >= 0 else "behind"
        return f"{s.verdict}: {side} by {fmt(abs(s.difference))} ≤ spread {fmt(s.spread)}"
    return f"**{s.verdict}** by {fmt(abs(s.difference))} > spread {fmt(s.spread)}"


def bootstrap_cell(r: Reading) -> str:
    b = r.bootstrap
    return f"{bold(b.verdict)}: ×{b.ratio:.3f} [{b.low:.3f}, {b.high:.3f}]"


def blind_spots(done: list[Workload], rule: str) -> str:
    """The line that says where even a framework costing nothing is not ahead of the best peer."""
    verdicts = {w.name: getattr(readings(w)["ideal_vs_best_peer"], rule) for w in done}
    label = {"strict": "the strict rule", "bootstrap": "the bootstrap"}[rule]
    if any(v.verdict == noise.FEW for v in verdicts.values()):
        return f"- {label}: too few samples to tell anything (--repeat {noise.MIN_SAMPLES} or more)"
    blind = [f"{w.name} ({best_peer(w)})" for w in done if verdicts[w.name].verdict != noise.AHEAD]
    if not blind:
        return f"- {label} tells the ideal (zero overhead) ahead of the best peer on every workload"
    return f"- {label} cannot tell a zero-overhead framework (the ideal) ahead of the best peer on: " + (
        "; ".join(blind)
    )


def table(done: list[Workload], versions: dict[str, str], repeat: int) -> str:
    head = " | ".join(f"{k} {versions[k]}" for k in FRAMEWORKS)
    durable = DURABLE_PEER in PEERS
    extra = " ours vs durable peer: strict; bootstrap |" if durable else ""
    lines = [
        f"| workload (median of {repeat}, min–max) | model calls | {head} | {IDEAL} | best peer "
        "| ours vs best peer: strict | ours vs best peer: bootstrap, ours / peer [95 % CI] "
        f"| ideal vs best peer: strict | ideal vs best peer: bootstrap |{extra}",
        "|---|---|" + "---|" * (len(SIDES) + 5) + ("---|" if durable else ""),
    ]
    for w in done:
        r = readings(w)
        ours, ideal = r["ours_vs_best_peer"], r["ideal_vs_best_peer"]
        cells = " | ".join(cell(w.samples[k]) for k in SIDES)
        row = (
            f"| {w.name} | {w.model_calls} | {cells} | {ours.peer} | {strict_cell(ours)} "
            f"| {bootstrap_cell(ours)} | {strict_cell(ideal)} | {bootstrap_cell(ideal)} |"
        )
        if durable:
            d = r["ours_vs_durable_peer"]
            row += f" {bold(d.strict.verdict)}; {bootstrap_cell(d)} |"
        lines.append(row)
    notes = [f"- {w.name}: {w.note}" for w in done if w.note]
    spots = [blind_spots(done, "strict"), blind_spots(done, "bootstrap")]
    return "\n".join([*lines, "", *notes, *spots])


async def warm_up(latency: float) -> None:
    """Pay imports and first-call costs of every framework before anything is timed."""
    for w in workloads(latency, [2]):
        for measure in w.runs.values():
            await measure()


async def main(repeat: int, quick: bool) -> None:
    latency = 0.010
    versions = {
        "concertmaster": importlib.metadata.version("concertmaster"),
        "openai-agents": importlib.metadata.version("openai-agents"),
        "langgraph": importlib.metadata.version("langgraph"),
    }
    if DURABLE_PEER in FRAMEWORKS:
        versions[DURABLE_PEER] = importlib.metadata.version("langgraph-checkpoint-sqlite")
    load_before = os.getloadavg()
    print(
        f"peers on {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"L = {latency * 1000:.0f} ms, {repeat} repetitions interleaved; load average {load_before[0]:.2f}",
        flush=True,
    )
    await warm_up(latency)
    gc.collect()
    gc.freeze()  # every framework's startup objects out of the collector's way alike, as `concertmaster serve` does
    done = []
    for w in workloads(latency, [10, 100] if quick else [10, 100, 1000]):
        w.samples = {k: [] for k in SIDES}
        for _ in range(repeat):
            for k in SIDES:
                gc.collect()  # no framework pays for the garbage of the one before
                wall, calls = await w.runs[k]()
                assert calls == w.model_calls, f"{k}, {w.name}: {calls} model calls, expected {w.model_calls}"
                w.samples[k].append(w.metric(wall, latency))
        done.append(w)
        print(f"  {w.name}: " + ", ".join(f"{k} {cell(w.samples[k])}" for k in SIDES), flush=True)
    load_after = os.getloadavg()
    print()
    print(table(done, versions, repeat))
    print(f"\nload average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "load_average_before": load_before,
        "load_average_after": load_after,
        "latency_ms": latency * 1000,
        "repeat": repeat,
        "versions": versions,
        "workloads": [
            {
                "name": w.name,
                "model_calls": w.model_calls,
                "critical_path_l": w.critical_path,
                "note": w.note,
                "samples": w.samples,
                "stats": {k: summary(v) for k, v in w.samples.items()},
                "best_peer": best_peer(w),
                "verdicts": {
                    name: {
                        "side": r.side,
                        "peer": r.peer,
                        "strict": asdict(r.strict),
                        "bootstrap": asdict(r.bootstrap),
                    }
                    for name, r in readings(w).items()
                },
            }
            for w in done
        ],
    }
    (Path(__file__).parent / "peers.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 repetitions, fan-outs of 10 and 100 only")
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions per workload (default 7; 3 with --quick)"
    )
    args = parser.parse_args()
    missing = [m for m in ("agents", "langgraph") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"peers.py needs the bench extra ({', '.join(missing)} missing): pip install -e '.[bench]'")
    if args.repeat is not None and args.repeat < 1:
        sys.exit("--repeat: give at least 1 repetition per workload")
    # our runs each create an audit database under the temp dir: keep them in one place removed at the end
    tempfile.tempdir = tempfile.mkdtemp(prefix="cm-peers-")
    try:
        asyncio.run(main(args.repeat or (3 if args.quick else 7), args.quick))
    finally:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)

"""The same fan-out and chain on peer frameworks, with a fake model of the same latency.

Needs the optional `bench` extra (`pip install -e ".[bench]"`: openai-agents, langgraph); never needed by CI.
Peers write no audit trail, so the comparison shows what concertmaster's durability and audit cost on top.

    python bench/peers.py [--quick]
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as ours


async def openai_agents(n_fan: int, n_chain: int, latency: float) -> tuple[float, float]:
    from agents import Agent, Runner, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    set_tracing_disabled(True)

    class FakeModel(Model):
        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            await asyncio.sleep(latency)
            message = ResponseOutputMessage(
                id="m",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text="done", annotations=[])],
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    agent = Agent(name="a", instructions="You are a.", model=FakeModel())
    started = time.perf_counter()
    await asyncio.gather(*(Runner.run(agent, "task") for _ in range(n_fan)))
    fan = time.perf_counter() - started
    started = time.perf_counter()
    text = "task"
    for _ in range(n_chain):
        text = str((await Runner.run(agent, text)).final_output)
    return fan, time.perf_counter() - started


async def langgraph_graph(n_fan: int, n_chain: int, latency: float) -> tuple[float, float]:
    import operator
    from typing import Annotated, TypedDict  # evaluated eagerly: langgraph reads the hints

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        outputs: Annotated[list[str], operator.add]

    async def fake_model(state: State) -> dict[str, list[str]]:
        await asyncio.sleep(latency)
        return {"outputs": ["done"]}

    fan = StateGraph(State)
    for i in range(n_fan):
        fan.add_node(f"a{i}", fake_model)
        fan.add_edge(START, f"a{i}")
        fan.add_edge(f"a{i}", END)
    started = time.perf_counter()
    await fan.compile().ainvoke({"outputs": []})
    fan_wall = time.perf_counter() - started
    chain = StateGraph(State)
    previous = START
    for i in range(n_chain):
        chain.add_node(f"a{i}", fake_model)
        chain.add_edge(previous, f"a{i}")
        previous = f"a{i}"
    chain.add_edge(previous, END)
    started = time.perf_counter()
    await chain.compile().ainvoke({"outputs": []})
    return fan_wall, time.perf_counter() - started


async def main(quick: bool) -> None:
    latency, n_chain = 0.010, 20
    sizes = [10, 100] if quick else [10, 100, 1000]
    rows = []
    for n in sizes:
        names = [f"a{i}" for i in range(n)]
        wall, _ = await ours.run_body(
            ours.team(names),
            ours.concurrent(names, "t", ours.ConcurrentOptions()),
            model=ours.ScriptedModel(latency=latency),
        )
        oa_fan, _ = await openai_agents(n, 1, latency)
        lg_fan, _ = await langgraph_graph(n, 1, latency)
        rows.append((f"fan-out {n}, L=10 ms (wall / L)", wall / latency, oa_fan / latency, lg_fan / latency))
    names = [f"a{i}" for i in range(n_chain)]
    wall, _ = await ours.run_body(
        ours.team(names), ours.sequential(names, "t"), model=ours.ScriptedModel(latency=latency)
    )
    _, oa_chain = await openai_agents(1, n_chain, latency)
    _, lg_chain = await langgraph_graph(1, n_chain, latency)
    per = [(w - n_chain * latency) / n_chain * 1000 for w in (wall, oa_chain, lg_chain)]
    rows.append((f"chain of {n_chain}, L=10 ms (overhead ms/step)", *per))
    print("| workload | concertmaster | openai-agents | langgraph |\n|---|---|---|---|")
    for name, a, b, c in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {c:.2f} |")
    (Path(__file__).parent / "peers.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))

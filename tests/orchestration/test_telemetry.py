"""OpenTelemetry spans of real runs, captured with the SDK's in-memory exporter: the tree shape of each pattern."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestration.audit.log import AuditLog
from orchestration.models.base import ModelRequest, ModelResponse
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.delegate import delegate
from orchestration.runtime import Runtime
from tests.audit_world import HOSTILE, TEAM, populate, populate_tools

pytestmark = pytest.mark.anyio
_EXPORTER: InMemorySpanExporter | None = None

Tree = tuple[str, tuple[Any, ...]]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """An in-memory exporter behind the global tracer provider (which OTel lets a process set only once)."""
    global _EXPORTER
    if _EXPORTER is None:
        _EXPORTER = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def trees(
    finished: tuple[ReadableSpan, ...], prefixes: tuple[str, ...] = ("invoke_", "execute_", "await_", "chat")
) -> dict[str, Tree]:
    """The runs' span trees by run id: names only (ours and nested model spans), children sorted by name."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in finished:
        children.setdefault(s.parent.span_id if s.parent else None, []).append(s)

    def tree(s: ReadableSpan) -> Tree:
        kids = [tree(c) for c in children.get(s.context.span_id, []) if c.name.startswith(prefixes)]
        return (s.name, tuple(sorted(kids)))

    return {
        str(s.attributes["concertmaster.run.id"]): tree(s)  # type: ignore[index]
        for s in finished
        if s.name.startswith("invoke_workflow")
    }


def agent(name: str, *kids: Tree) -> Tree:
    return (f"invoke_agent {name}", tuple(sorted(kids)))


async def test_every_pattern_gives_a_run_span_with_its_steps_nested(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    runs = await populate(tmp_path / "audit.db")
    found = trees(spans.get_finished_spans())
    expected = {
        "delegate": ("invoke_workflow delegate", (agent("a"),)),
        "sequential": ("invoke_workflow sequential", (agent("a"), agent("writer"))),
        "concurrent": ("invoke_workflow concurrent", (agent("a"), agent("b"))),
        "handoff": (
            "invoke_workflow handoff",
            (agent("researcher", ("execute_tool transfer_to_writer", ())), agent("writer")),
        ),
        "group_chat": ("invoke_workflow group_chat", (agent("a"), agent("a"), agent("b"))),
        "magentic": (
            "invoke_workflow magentic",
            (*[agent("boss")] * 5, agent("researcher"), agent("writer")),
        ),
        "plan": (
            "invoke_workflow plan",
            (agent("planner"), agent("researcher"), agent("researcher"), agent("writer")),
        ),
        # a sub-team is a step of its parent, its members' steps nested inside it
        "team": (
            "invoke_workflow sequential",
            (agent("a"), agent("duo", agent("researcher"), agent("writer"))),
        ),
    }
    for scenario, shape in expected.items():
        assert found[runs[scenario]] == (shape[0], tuple(sorted(shape[1]))), scenario


async def test_spans_carry_the_run_the_agent_usage_and_cost_but_no_text(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    runs = await populate(tmp_path / "audit.db")
    finished = spans.get_finished_spans()
    chat = [s for s in finished if s.attributes.get("concertmaster.run.id") == runs["group_chat"]]
    (workflow,) = [s for s in chat if s.name.startswith("invoke_workflow")]
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["concertmaster.pattern"] == "group_chat"
    assert workflow.attributes["concertmaster.control"] == "centralized"
    assert workflow.attributes["concertmaster.run.status"] == "stopped"
    assert workflow.attributes["concertmaster.run.stop_reason"] == "max_turns"
    assert workflow.attributes["gen_ai.usage.total_tokens"] == 300
    steps = sorted((s for s in chat if s.name.startswith("invoke_agent")), key=lambda s: s.start_time or 0)
    assert [s.attributes["gen_ai.agent.name"] for s in steps] == ["a", "b", "a"]
    first = steps[0].attributes
    assert (
        first["gen_ai.operation.name"] == "invoke_agent"
        and first["gen_ai.conversation.id"] == runs["group_chat"]
    )
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (40, 60)
    assert first["gen_ai.provider.name"] == "scripted" and first["concertmaster.cost_usd"] == 0.0
    assert str(first["concertmaster.step.id"]).startswith("step_")
    everything = " ".join(str(v) for s in finished for v in s.attributes.values())
    assert "quoted" not in everything and "task of" not in everything and HOSTILE[:10] not in everything


async def test_tool_calls_and_approval_waits_nest_under_the_step(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    run_id = await populate_tools(tmp_path / "audit.db", tmp_path)
    finished = spans.get_finished_spans()
    tool = ("execute_tool files__delete_file", (("await_approval files.delete_file", ()),))
    assert trees(finished)[run_id] == (
        "invoke_workflow delegate",
        (
            agent(
                "clerk",
                ("execute_tool files__nope", ()),
                ("execute_tool files__read_file", ()),
                tool,
                tool,
            ),
        ),
    )
    approvals = [s for s in finished if s.name.startswith("await_approval")]
    assert sorted(s.attributes["concertmaster.approval.approved"] for s in approvals) == [False, True]
    assert {s.attributes["concertmaster.approval.channel"] for s in approvals} == {"elicitation"}
    calls = {s.attributes["gen_ai.tool.name"]: s for s in finished if s.name.startswith("execute_tool")}
    assert calls["files__read_file"].attributes["concertmaster.tool"] == "files.read_file"
    assert calls["files__nope"].attributes["concertmaster.tool.is_error"] is True
    # the run span sits under the MCP tools/call that started it, so a backend shows which call made the run
    (workflow,) = [s for s in finished if s.name == "invoke_workflow delegate"]
    parents = {s.context.span_id: s for s in finished}
    assert workflow.parent is not None and parents[workflow.parent.span_id].name == "tools/call delegate_task"


class Instrumented(ScriptedModel):
    """A provider whose SDK makes its own span per call, as an instrumented Anthropic SDK does."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        with trace.get_tracer("anthropic-sdk").start_as_current_span("chat claude-test"):
            return await super().complete(request)


async def test_a_model_sdks_own_spans_nest_under_the_step_that_called_it(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with Runtime(TEAM, AuditLog(tmp_path / "audit.db"), providers=lambda n, a, c: Instrumented()) as rt:
        run_id = await rt.start_run("delegate", "hi", delegate("a", "hi"))
        await rt.wait(run_id, 30)
    assert trees(spans.get_finished_spans())[run_id] == (
        "invoke_workflow delegate",
        (agent("a", ("chat claude-test", ())),),
    )

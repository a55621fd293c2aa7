"""What every conversation pays for: the tools/list the host model reads (name + description + input schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from server.app import build_server
from server.settings import Settings
from server.tool_schema import compact
from tests.conftest import team

pytestmark = pytest.mark.anyio
CEILING_TOKENS = 4000
TEAM = team(a={"model": "scripted"}, b={"model": "scripted"})


def server(db: Path):
    return build_server(Settings(db=db, default_wait_seconds=10), config=TEAM)


def tokens(tool) -> int:
    schema = json.dumps(tool.input_schema, separators=(",", ":"))
    return (len(tool.name) + len(tool.description or "") + len(schema)) // 4


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tools_list_costs_the_host_model_at_most_4000_tokens(db: Path, mode: str, capsys) -> None:
    async with Client(server(db), mode=mode) as client:
        tools = (await client.list_tools()).tools
    total = sum(tokens(t) for t in tools)
    with capsys.disabled():
        print(
            f"\ntools/list: {len(tools)} tools, ~{total} tokens (chars/4 of name + description + input schema)"
        )
    assert total <= CEILING_TOKENS, sorted(((tokens(t), t.name) for t in tools), reverse=True)


async def test_every_description_starts_with_when_to_use_the_tool(db: Path) -> None:
    async with Client(server(db)) as client:
        tools = (await client.list_tools()).tools
    late = [t.name for t in tools if not (t.description or "").startswith("Use ")]
    assert not late, f"descriptions that do not start with when to use the tool: {late}"
    described = {t.name: t.description for t in tools}
    assert "plan_and_execute" in described["run_magentic"]  # the choice between the two is spelled out


async def test_the_compact_schema_keeps_every_limit_and_the_server_still_validates_them(db: Path) -> None:
    async with Client(server(db)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        limits = tools["run_sequential"].input_schema["properties"]["limits"]
        for name in ("max_steps", "max_turns", "max_handoffs", "max_depth", "max_tool_calls"):
            assert name in limits["description"]
        for name in ("step_timeout_s", "run_timeout_s", "max_tokens", "max_cost_usd"):
            assert name in limits["description"]
        stopped = await client.call_tool(
            "run_sequential", {"agents": ["a", "b"], "task": "t", "limits": {"max_steps": 1}}
        )
        typo = await client.call_tool(
            "run_sequential", {"agents": ["a", "b"], "task": "t", "limits": {"max_stpes": 1}}
        )
        negative = await client.call_tool(
            "run_sequential", {"agents": ["a", "b"], "task": "t", "limits": {"max_steps": -1}}
        )
        bad_check = await client.call_tool(
            "run_sequential", {"agents": ["a", "b"], "task": "t", "checkpoint": {"min_chars": "x"}}
        )
    assert stopped.structured_content["status"] == "stopped"
    assert stopped.structured_content["stop_reason"] == "max_steps"
    assert typo.is_error and "max_stpes" in typo.content[0].text
    assert negative.is_error and "limits.max_steps" in negative.content[0].text
    assert bad_check.is_error and "checkpoint.min_chars" in bad_check.content[0].text


def test_compact_drops_titles_null_unions_and_null_defaults_but_not_properties_named_title() -> None:
    schema = {
        "title": "Args",
        "type": "object",
        "properties": {
            "title": {"title": "Title", "type": "string"},
            "n": {
                "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
                "default": None,
                "title": "N",
            },
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
    }
    assert compact(schema) == {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "n": {"type": "integer", "minimum": 1},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
    }


async def test_output_schemas_write_nullable_fields_as_type_lists_and_still_check_results(db: Path) -> None:
    from jsonschema import Draft202012Validator

    async with Client(server(db), mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool(
            "delegate_task", {"agent": "a", "task": "t"}
        )  # the client validates it
    schema = tools["delegate_task"].output_schema
    assert schema is not None and schema["properties"]["output"]["type"] == ["string", "null"]
    assert '"anyOf": [{"type"' not in json.dumps(schema)
    validator = Draft202012Validator(schema)
    assert result.structured_content is not None and validator.is_valid(result.structured_content)
    assert not validator.is_valid({**result.structured_content, "output": 5})  # a wrong type is still refused
    assert not validator.is_valid({**result.structured_content, "usage": {"input_tokens": "many"}})


def test_type_unions_rewrites_only_unions_of_bare_types() -> None:
    from server.tool_schema import type_unions

    schema = {
        "properties": {
            "anyOf": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
            },  # a field named anyOf
            "mixed": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
        },
        "$defs": {"N": {"anyOf": [{"type": "integer"}, {"type": "number"}]}},
    }
    assert type_unions(schema) == {
        "properties": {
            "anyOf": {"type": ["string", "null"], "default": None},
            "mixed": {
                "anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]
            },  # not a bare type: kept
        },
        "$defs": {"N": {"type": ["integer", "number"]}},
    }

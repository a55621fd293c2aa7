"""Group chats: speaker selection, termination, max_turns resolution, and federated isolation."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.errors import InvalidInputError
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.group_chat import GroupChatOptions, build_team, group_chat
from orchestration.runtime import Runtime
from orchestration.visibility import visible_text
from policies.limits import Limits

pytestmark = pytest.mark.anyio


def config(groups: dict[str, str | None] | None = None) -> TeamConfig:
    groups = groups or {}
    return TeamConfig.model_validate(
        {
            "agents": {
                n: {
                    "description": f"{n} agent",
                    "instructions": f"You are {n}.",
                    "model": "scripted",
                    "group": groups.get(n),
                }
                for n in ("a", "b", "c", "boss")
            }
        }
    )


def said(request: ModelRequest) -> str:
    return f"{request.agent} speaks"


async def run(
    db: Path,
    models: dict,
    options: GroupChatOptions,
    *,
    cfg: TeamConfig | None = None,
    control: str = "centralized",
    agents=("a", "b", "c"),
    limits: Limits | None = None,
) -> dict:
    for name in ("a", "b", "c", "boss"):
        models.setdefault(name, ScriptedModel(respond=said))
    async with Runtime(cfg or config(), AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        run_id = await rt.start_run(
            "group_chat",
            "topic",
            group_chat(list(agents), "pick a name", options),
            control=control,
            limits=limits,
        )
        return await rt.wait(run_id, 10)


def speakers(db: Path, run_id: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "select payload from events where run_id = ? and kind = 'speaker_selected' order by seq",
            (run_id,),
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(r[0])["speaker"] for r in rows]


async def test_round_robin_and_the_termination_phrase(db: Path) -> None:
    models = {"c": ScriptedModel(["We agree on Nova. TERMINATE"])}
    result = await run(db, models, GroupChatOptions())
    assert result["status"] == "succeeded" and result["output"] == "We agree on Nova."
    assert speakers(db, result["id"]) == ["a", "b", "c"]


async def test_the_manager_picks_speakers_and_concludes(db: Path) -> None:
    boss = ScriptedModel(
        [
            '{"next": "c", "reason": "c knows"}',
            'I pick {"next": "a"}',
            '{"done": true, "conclusion": "Nova it is"}',
        ]
    )
    result = await run(db, {"boss": boss}, GroupChatOptions(speaker_selection="manager", manager="boss"))
    assert result["status"] == "succeeded" and result["output"] == "Nova it is"
    assert speakers(db, result["id"]) == ["c", "a"]
    # everyone shares the transcript: a saw c's message
    assert "[c]: c speaks" in boss.requests[2].messages[-1].text


async def test_a_manager_answering_garbage_falls_back_to_round_robin(db: Path) -> None:
    boss = ScriptedModel(
        ["no idea", '{"next": "zed"}'], respond=lambda r: '{"done": true, "conclusion": "x"}'
    )
    result = await run(db, {"boss": boss}, GroupChatOptions(speaker_selection="manager", manager="boss"))
    assert speakers(db, result["id"]) == ["a", "b"]
    conn = sqlite3.connect(db)
    reasons = [
        json.loads(r[0])["reason"]
        for r in conn.execute("select payload from events where kind = 'speaker_selected' order by seq")
    ]
    conn.close()
    assert "'zed' is not a participant" in reasons[1]


async def test_a_chat_that_never_converges_stops_at_max_turns_with_the_last_proposal(db: Path) -> None:
    result = await run(db, {}, GroupChatOptions(max_turns=4))
    assert result["status"] == "stopped" and result["stop_reason"] == "max_turns"
    assert result["output"] == "a speaks" and "last proposal" in result["error"]
    assert speakers(db, result["id"]) == ["a", "b", "c", "a"]


async def test_max_turns_with_a_manager_ends_with_its_summary(db: Path) -> None:
    boss = ScriptedModel(
        respond=lambda r: "So far: Nova leads." if "out of turns" in r.messages[-1].text else "{}"
    )
    result = await run(db, {"boss": boss}, GroupChatOptions(manager="boss"), limits=Limits(max_turns=3))
    assert result["status"] == "stopped" and result["output"] == "So far: Nova leads."
    assert "summarize" in result["error"]


async def test_federated_groups_never_see_each_others_private_messages(db: Path) -> None:
    cfg = config({"a": "red", "b": "blue", "c": "red"})
    models = {
        "a": ScriptedModel(["red secret: budget is 42k\nSHARE: red suggests Nova"]),
        "c": ScriptedModel(["red-only musing about salaries"]),
    }
    result = await run(db, models, GroupChatOptions(max_turns=5), cfg=cfg, control="federated")
    assert result["status"] == "stopped"
    seen_by_b = " ".join(r.system + " ".join(m.text for m in r.messages) for r in models["b"].requests)
    assert "budget is 42k" not in seen_by_b and "salaries" not in seen_by_b
    assert "red suggests Nova" in seen_by_b and "[private message of group red]" in seen_by_b
    seen_by_c = " ".join(m.text for r in models["c"].requests for m in r.messages)
    assert "budget is 42k" in seen_by_c  # same group: the full message


def test_visibility_rules() -> None:
    assert visible_text("x\nSHARE: y", author_group="g", reader_group="h", control="federated") == "y"
    assert visible_text("x", author_group="g", reader_group="h", control="centralized") == "x"
    assert visible_text("x", author_group="g", reader_group="g", control="federated") == "x"


def test_invalid_options_name_the_field() -> None:
    with pytest.raises(InvalidInputError, match="manager"):
        build_team(["a", "b"], "t", {"speaker_selection": "manager"})
    with pytest.raises(InvalidInputError, match="at least 2"):
        build_team(["a"], "t", {})

"""Group chats: speaker selection, termination, max_turns resolution, and federated isolation."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.errors import InvalidInputError
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.group_chat import GroupChatOptions, build_team, group_chat, parse_choice
from orchestration.runtime import Runtime
from policies.limits import Limits

pytestmark = pytest.mark.anyio

NAMES = ("a", "b", "c", "boss")


def config(groups: dict[str, str | None] | None = None, teams: dict[str, Any] | None = None) -> TeamConfig:
    groups = groups or {}
    return TeamConfig.model_validate(
        {
            "agents": {
                n: {
                    "description": f"{n} the expert",
                    "instructions": f"You are {n}.",
                    "model": "scripted",
                    "group": groups.get(n),
                }
                for n in NAMES
            },
            "teams": teams or {},
        }
    )


def said(request: ModelRequest) -> str:
    return f"{request.agent} speaks"


def everything_seen(model: ScriptedModel) -> str:
    """All the text a model was ever given: instructions and every message of every call."""
    return "\n".join(r.system + "\n" + "\n".join(m.text for m in r.messages) for r in model.requests)


async def run(
    db: Path,
    models: dict[str, ScriptedModel],
    options: GroupChatOptions,
    *,
    cfg: TeamConfig | None = None,
    control: str = "centralized",
    agents: tuple[str, ...] = ("a", "b", "c"),
    limits: Limits | None = None,
) -> dict[str, Any]:
    for name in NAMES:
        models.setdefault(name, ScriptedModel(respond=said))
    async with Runtime(cfg or config(), AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        run_id = await rt.start_run(
            "group_chat",
            "pick a name",
            group_chat(list(agents), "pick a name", options),
            control=control,
            limits=limits,
        )
        return await rt.wait(run_id, 10)


def events(db: Path, run_id: str, kind: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "select payload from events where run_id = ? and kind = ? order by seq", (run_id, kind)
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


def speakers(db: Path, run_id: str) -> list[str]:
    return [e["speaker"] for e in events(db, run_id, "speaker_selected")]


# -- round robin and the shared transcript -------------------------------------------------------------------------


async def test_round_robin_goes_in_order_and_everyone_sees_the_topic_and_transcript(db: Path) -> None:
    models: dict[str, ScriptedModel] = {}
    result = await run(db, models, GroupChatOptions(max_turns=5))
    assert speakers(db, result["id"]) == ["a", "b", "c", "a", "b"]
    assert [e["how"] for e in events(db, result["id"], "speaker_selected")] == ["round_robin"] * 5
    first, later = models["a"].requests
    assert first.messages[0].text == "Topic of the discussion: pick a name"
    assert "contribution" in first.messages[-1].text
    # a's second turn: its own message as the assistant, the others' labelled with their names
    roles = [(m.role, m.text) for m in later.messages[:-1]]
    assert roles[1] == ("assistant", "a speaks")
    assert "[b]: b speaks" in roles[2][1] and "[c]: c speaks" in roles[2][1]
    assert "[a]: a speaks" in models["b"].requests[0].messages[0].text


async def test_a_message_with_the_termination_phrase_ends_the_chat(db: Path) -> None:
    models = {"c": ScriptedModel(["We agree on Nova. TERMINATE"])}
    result = await run(db, models, GroupChatOptions())
    assert result["status"] == "succeeded" and result["output"] == "We agree on Nova."
    assert speakers(db, result["id"]) == ["a", "b", "c"]
    assert events(db, result["id"], "chat_terminated") == [
        {"turn": 3, "by": "c", "why": "termination_phrase"}
    ]


async def test_an_agent_echoing_its_request_does_not_end_the_chat(db: Path) -> None:
    # the scripted default reply repeats the first line of the request: that line must not hold the phrase
    models = {n: ScriptedModel() for n in ("a", "b", "c")}
    result = await run(db, models, GroupChatOptions(max_turns=3))
    assert result["status"] == "stopped" and result["stop_reason"] == "max_turns"


async def test_a_custom_termination_phrase_replaces_the_default(db: Path) -> None:
    models = {"a": ScriptedModel(["TERMINATE is not ours"]), "b": ScriptedModel(["Done. <<END>>"])}
    result = await run(db, models, GroupChatOptions(termination_phrase="<<END>>"))
    assert result["status"] == "succeeded" and result["output"] == "Done."
    assert speakers(db, result["id"]) == ["a", "b"]


# -- the manager ---------------------------------------------------------------------------------------------------


async def test_the_manager_picks_speakers_and_declares_the_conclusion(db: Path) -> None:
    boss = ScriptedModel(
        [
            '{"next": "c", "reason": "c knows names"}',
            'I pick ```json\n{"next": "a"}\n```',
            '{"done": true, "conclusion": "Nova it is"}',
        ]
    )
    result = await run(db, {"boss": boss}, GroupChatOptions(speaker_selection="manager", manager="boss"))
    assert result["status"] == "succeeded" and result["output"] == "Nova it is"
    selected = events(db, result["id"], "speaker_selected")
    assert [(e["speaker"], e["how"]) for e in selected] == [("c", "manager"), ("a", "manager")]
    assert selected[0]["reason"] == "c knows names"
    assert events(db, result["id"], "chat_terminated") == [{"turn": 3, "by": "boss", "why": "conclusion"}]
    # the manager is shown the participants with their descriptions, and the transcript
    assert "- a: a the expert" in boss.requests[0].messages[-1].text
    assert "[c]: c speaks" in everything_seen(boss) and '"done": true' in boss.requests[0].messages[-1].text


async def test_a_manager_answering_garbage_falls_back_to_round_robin_and_says_why(db: Path) -> None:
    boss = ScriptedModel(
        ["no idea", '{"next": "zed"}', "[1, 2]"], respond=lambda r: '{"done": true, "conclusion": "x"}'
    )
    result = await run(db, {"boss": boss}, GroupChatOptions(speaker_selection="manager", manager="boss"))
    assert result["status"] == "succeeded" and result["output"] == "x"
    selected = events(db, result["id"], "speaker_selected")
    assert [e["speaker"] for e in selected] == ["a", "b", "c"]
    assert {e["how"] for e in selected} == {"round_robin_fallback"}
    assert "not JSON" in selected[0]["reason"]
    assert "'zed', who is not a participant" in selected[1]["reason"]
    assert "not a JSON object" in selected[2]["reason"]


def test_manager_replies_are_parsed_robustly() -> None:
    agents = ["a", "b"]
    assert parse_choice('{"next": "b", "reason": "r"}', agents).speaker == "b"
    assert parse_choice('{"done": "true", "conclusion": " c "}', agents).conclusion == "c"
    assert parse_choice('{"done": false}', agents).speaker is None
    assert parse_choice('{"next": 3}', agents).speaker is None
    assert parse_choice("", agents).reason == "the manager's reply was not JSON"


# -- max_turns and the default resolution -------------------------------------------------------------------------


async def test_a_chat_that_never_converges_stops_at_max_turns_with_the_last_proposal(db: Path) -> None:
    result = await run(db, {}, GroupChatOptions(max_turns=4))
    assert result["status"] == "stopped" and result["stop_reason"] == "max_turns"
    assert result["output"] == "a speaks" and "last_proposal" in result["error"]
    assert speakers(db, result["id"]) == ["a", "b", "c", "a"]
    (terminated,) = events(db, result["id"], "chat_terminated")
    assert terminated["why"] == "max_turns" and terminated["resolution"] == "last_proposal"


async def test_with_a_manager_max_turns_ends_with_its_summary_and_defaults_to_the_run_limit(db: Path) -> None:
    boss = ScriptedModel(
        respond=lambda r: "So far: Nova leads." if "out of turns" in r.messages[-1].text else "{}"
    )
    result = await run(db, {"boss": boss}, GroupChatOptions(manager="boss"), limits=Limits(max_turns=3))
    assert result["status"] == "stopped" and result["stop_reason"] == "max_turns"
    assert result["output"] == "So far: Nova leads." and "summarize" in result["error"]
    assert speakers(db, result["id"]) == ["a", "b", "c"]
    assert len(boss.requests) == 1  # round robin: the manager only summarises
    assert "[c]: c speaks" in everything_seen(boss)


async def test_a_manager_picking_forever_is_stopped_and_summarises(db: Path) -> None:
    boss = ScriptedModel(
        respond=lambda r: "Still split." if "out of turns" in r.messages[-1].text else '{"next": "b"}'
    )
    options = GroupChatOptions(speaker_selection="manager", manager="boss", max_turns=3)
    result = await run(db, {"boss": boss}, options)
    assert result["status"] == "stopped" and result["output"] == "Still split."
    assert speakers(db, result["id"]) == ["b", "b", "b"]


async def test_last_proposal_can_be_chosen_even_with_a_manager(db: Path) -> None:
    boss = ScriptedModel(respond=lambda r: '{"next": "c"}')
    options = GroupChatOptions(
        speaker_selection="manager", manager="boss", max_turns=2, resolution="last_proposal"
    )
    result = await run(db, {"boss": boss}, options)
    assert result["status"] == "stopped" and result["output"] == "c speaks"
    assert "last_proposal" in result["error"] and len(boss.requests) == 2


# -- federated control ---------------------------------------------------------------------------------------------

RED_SECRET = "red secret: the budget is 42k"
RED_SHARED = "red suggests Nova"


def red_models() -> dict[str, ScriptedModel]:
    return {
        "a": ScriptedModel([f"{RED_SECRET}\nSHARE: {RED_SHARED}"], respond=said),
        "c": ScriptedModel(["red-only musing about salaries"], respond=said),
    }


async def test_federated_groups_never_see_each_others_private_messages(db: Path) -> None:
    cfg = config({"a": "red", "b": "blue", "c": "red"})
    models = red_models()
    result = await run(db, models, GroupChatOptions(max_turns=5), cfg=cfg, control="federated")
    assert result["status"] == "stopped"
    seen_by_b = everything_seen(models["b"])
    assert "42k" not in seen_by_b and "salaries" not in seen_by_b and "red secret" not in seen_by_b
    assert RED_SHARED in seen_by_b and "[c]: [private message of group red]" in seen_by_b
    assert "pick a name" in seen_by_b  # the topic is visible to all
    assert RED_SECRET in everything_seen(models["c"])  # same group: the full message


async def test_a_manager_in_a_group_is_scoped_and_one_without_sees_everything(db: Path) -> None:
    picks = '{"next": "%s"}'
    order = iter(["a", "c", "b", "a"] * 3)
    cfg = config({"a": "red", "b": "blue", "c": "red", "boss": "blue"})
    models = red_models()
    models["boss"] = ScriptedModel(respond=lambda r: picks % next(order))
    options = GroupChatOptions(speaker_selection="manager", manager="boss", max_turns=4)
    result = await run(db, models, options, cfg=cfg, control="federated")
    assert speakers(db, result["id"]) == ["a", "c", "b", "a"]
    seen_by_boss = everything_seen(models["boss"])
    assert "42k" not in seen_by_boss and "salaries" not in seen_by_boss and RED_SHARED in seen_by_boss
    assert "42k" not in everything_seen(models["b"])

    order = iter(["a", "c", "b", "a"] * 3)
    models = red_models()
    models["boss"] = ScriptedModel(respond=lambda r: picks % next(order))
    cfg = config({"a": "red", "b": "blue", "c": "red"})  # boss in no group: the orchestrator
    await run(db, models, options, cfg=cfg, control="federated")
    seen_by_boss = everything_seen(models["boss"])
    assert "42k" in seen_by_boss and "salaries" in seen_by_boss
    assert "42k" not in everything_seen(models["b"])


async def test_without_federated_control_everyone_sees_everything(db: Path) -> None:
    cfg = config({"a": "red", "b": "blue", "c": "red"})
    models = red_models()
    await run(db, models, GroupChatOptions(max_turns=3), cfg=cfg, control="centralized")
    assert RED_SECRET in everything_seen(models["b"])


# -- sub-teams and invalid options -----------------------------------------------------------------------------


async def test_a_sub_team_participant_gets_the_transcript_in_its_task(db: Path) -> None:
    teams = {"duo": {"description": "a pair", "pattern": "sequential", "agents": ["c", "boss"]}}
    models: dict[str, ScriptedModel] = {}
    result = await run(
        db, models, GroupChatOptions(max_turns=3), cfg=config(teams=teams), agents=("a", "b", "duo")
    )
    assert result["status"] == "stopped"
    task = models["c"].requests[0].messages[-1].text
    assert "pick a name" in task and "[a]: a speaks" in task and "[b]: b speaks" in task


async def test_build_team_runs_a_group_chat_from_config_options(db: Path) -> None:
    body = build_team(["a", "b"], "pick a name", {"max_turns": 2, "termination_phrase": "END"})
    async with Runtime(config(), AuditLog(db), providers=lambda n, a, c: ScriptedModel(respond=said)) as rt:
        result = await rt.wait(await rt.start_run("group_chat", "t", body), 10)
    assert result["status"] == "stopped" and result["output"] == "b speaks"


@pytest.mark.parametrize(
    ("members", "options", "fragment"),
    [
        (["a", "b"], {"speaker_selection": "manager"}, "manager"),
        (["a", "b"], {"resolution": "summarize"}, "manager"),
        (["a"], {}, "at least 2"),
        (["a", "a"], {}, "once"),
        (["a", "b"], {"max_turns": 0}, "max_turns"),
        (["a", "b"], {"max_turns": 101}, "max_turns"),
        (["a", "b"], {"speaker_selection": "vote"}, "speaker_selection"),
        (["a", "b"], {"moderator": "boss"}, "moderator"),
    ],
)
def test_invalid_options_are_refused_naming_the_field(
    members: list[str], options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        build_team(members, "t", options)

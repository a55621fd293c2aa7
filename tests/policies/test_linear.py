"""Patterns matched against user or model text run in linear time; patterns that need backtracking are refused.

The attack string froze every client for 43 s with `re` (27 dashes; it doubles every 4 characters). No test
here measures time: the attack runs on 100,000 characters (astronomical for a backtracking engine), in a
subprocess whose timeout is orders of magnitude above what linear matching needs, and the redaction loop's
work is counted.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.config import InvalidInputError, validated
from orchestration.patterns.sequential import Checkpoint, SequentialOptions
from policies import linear
from policies.engine import evaluate
from policies.load import PolicyError, load_policy
from policies.redaction import Redactor
from tests.policies.support import READ, WRITE, act, policy

ROOT = Path(__file__).resolve().parents[2]
ATTACK_27 = "rm " + "--- " * 27 + "x"
ATTACK_100K = "rm " + "--- " * 25_000 + "x"


def test_the_attack_string_goes_through_every_matcher_kind_in_bounded_work() -> None:
    # A subprocess: if matching backtracked, this would never end; the timeout is ~1000x what RE2 needs.
    script = textwrap.dedent(
        """
        import json
        from orchestration.patterns.sequential import Checkpoint, run_checkpoint
        from policies import linear
        from policies.engine import evaluate
        from policies.load import load_policy
        from policies.redaction import Redactor
        from tests.policies.support import WRITE, act, policy

        out = {}
        for n in (27, 1000, 25_000):
            attack = "rm " + "--- " * n + "x"
            for preset in ("default", "strict"):
                decision = evaluate(load_policy(preset), act("shell.run", WRITE, command=attack))
                out[f"{preset}:{n}"] = decision.rule
            user = policy(rules=[{"name": "r", "decision": "deny",
                                  "arguments": {"*": {"regex": "(-+\\\\s+)+/"}}}])
            out[f"user:{n}"] = evaluate(user, act("shell.run", WRITE, command=attack)).outcome
            glob = policy(rules=[{"name": "g", "decision": "deny", "tools": ["*-*-*-*-*-*-*-*-*/"]}])
            out[f"glob:{n}"] = evaluate(glob, act(attack.replace(" ", "-") + ".x", WRITE)).outcome
            redactor = Redactor(patterns=["(-+\\\\s+)+/", "rm\\\\s+(-{1,2}[a-zA-Z-]+\\\\s+)+/"])
            out[f"redacted:{n}"] = redactor.text(attack) == attack
            check = linear.compile_pattern(Checkpoint(must_match="rm\\\\s+(-{1,2}[a-zA-Z-]+\\\\s+)+/").must_match)
            out[f"checkpoint:{n}"] = check.search(attack)
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    out = json.loads(done.stdout)
    for n in (27, 1000, 25_000):
        # not `rm -rf /`: no rule denies it, and every matcher answered
        assert out[f"default:{n}"] != "no-rm-rf-root" and out[f"strict:{n}"] != "no-rm-rf-root"
        assert out[f"user:{n}"] == "require_approval" and out[f"glob:{n}"] == "require_approval"
        assert out[f"redacted:{n}"] is True and out[f"checkpoint:{n}"] is False


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf /",
        "sudo rm -Rf /*",
        "rm -r -f /",
        "rm --recursive --force / ",
        "x; rm -rf /;",
        'bash -c "rm -rf /"',
    ],
)
def test_the_rewritten_rm_rule_still_denies_rm_rf_root(command: str) -> None:
    for preset in ("default", "strict"):
        decision = evaluate(load_policy(preset), act("shell.run", READ, command=command))
        assert (decision.outcome, decision.rule) == ("deny", "no-rm-rf-root"), (preset, command)


@pytest.mark.parametrize(
    "command", ["farm -rf /", "rm -rf ./build", "rm -rf /home/me/tmp", "rm /", "_rm -rf /"]
)
def test_the_rewritten_rm_rule_leaves_other_commands_alone(command: str) -> None:
    decision = evaluate(load_policy("default"), act("shell.run", READ, command=command))
    assert decision.rule != "no-rm-rf-root"


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        (r"rm(?<!\wrm)\s+x", "lookbehind"),
        (r"(a)\1", "backreference"),
        (r"secret(?=\d)", "lookahead"),
        (r"key(?!s)", "negative lookahead"),
        (r"(?>ab|a)c", "atomic group"),
        (r"a*+b", "possessive quantifier"),
    ],
)
def test_patterns_that_need_backtracking_are_refused_with_the_reason(pattern: str, named: str) -> None:
    why = linear.problem(pattern)
    assert why is not None and named in why and "linear time" in why and "rewrite it" in why


def test_a_policy_file_with_a_backtracking_regex_is_refused_naming_file_rule_and_pattern(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[[rules]]\nname = "slow"\ndecision = "deny"\narguments = { cmd = { regex = "(a)\\\\1" } }\n'
    )
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message and "rules[0] (slow).arguments.cmd.regex" in message
    assert "backreference" in message and "(a)\\\\1" in message


def test_redaction_patterns_and_checkpoints_refuse_backtracking_too(tmp_path: Path) -> None:
    path = tmp_path / "red.toml"
    path.write_text('[redaction]\npatterns = ["(?<=key=)\\\\w+"]\n')
    with pytest.raises(PolicyError, match=r"redaction\.patterns: the pattern uses a lookbehind"):
        load_policy(path)
    with pytest.raises(InvalidInputError, match=r"checkpoint\.must_match: the pattern uses a backreference"):
        validated(SequentialOptions, {"checkpoint": {"must_match": r"(\w+) \1"}}, "sequential options")
    with pytest.raises(InvalidInputError, match=r"checkpoint\.must_not_match: .*lookahead"):
        validated(SequentialOptions, {"checkpoint": {"must_not_match": r"a(?=b)"}}, "sequential options")


def test_python_spellings_that_re2_lacks_are_translated_or_refused_clearly() -> None:
    assert linear.compile_pattern(r"done\Z").search("all done") and not linear.compile_pattern(
        r"done\Z"
    ).search("done!")
    assert linear.problem("(") is not None and "not a valid regular expression" in str(linear.problem("("))
    assert "longer than" in str(linear.problem("a" * (linear.MAX_PATTERN_CHARS + 1)))
    assert Checkpoint(must_match=r"^\d+$").must_match == r"^\d+$"


class Counting(linear.LinearPattern):
    """A pattern that counts its searches and the bytes each may look at."""

    __slots__ = ("scanned", "searches")

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern, pattern)
        self.searches = 0
        self.scanned = 0

    def _find(self, data: bytes, pos: int, end: int) -> tuple[int, int] | None:
        self.searches += 1
        self.scanned += end - pos
        return super()._find(data, pos, end)


def counted(pattern: str) -> tuple[linear.LinearPattern, Counting]:
    counter = Counting(pattern)
    return counter, counter


def test_redaction_work_is_linear_in_the_text_even_for_a_pattern_that_scans_far_ahead() -> None:
    window = 2 * linear.MAX_SECRET_BYTES
    # no match: a few windows, each byte looked at about twice
    quiet, count = counted(r"sk-[a-z]{20,}")
    text = "harmless words " * 20_000
    assert quiet.sub("[r]", text) == text
    assert count.scanned <= 2 * len(text) + window
    # `a[^\n]*b|a` makes every match look to the end of the text: quadratic with `re.sub` or re2.sub;
    # here each search looks at most one window ahead, and replacements are capped
    greedy, count = counted(r"a[^\n]*b|a")
    out = greedy.sub("", "a" * 200_000)
    assert out == "" and count.searches <= linear.MAX_REPLACEMENTS + 1
    assert count.scanned <= (linear.MAX_REPLACEMENTS + 1) * window


def test_after_too_many_replacements_the_rest_is_redacted_whole() -> None:
    text = " ".join(f"sk-{'a' * 20}{i}" for i in range(linear.MAX_REPLACEMENTS + 50)) + " tail"
    out = Redactor(patterns=[r"sk-[a-z]{20}\d+"]).text(text)
    assert "sk-" not in out and "tail" not in out and out.endswith("[redacted][redacted]")


def test_a_secret_across_a_window_edge_is_still_redacted_whole() -> None:
    secret = "sk-ant-" + "k" * 40
    for offset in (
        linear.MAX_SECRET_BYTES - 10,
        2 * linear.MAX_SECRET_BYTES - 20,
        3 * linear.MAX_SECRET_BYTES,
    ):
        text = "é" * (offset // 2) + secret + " end"
        out = Redactor().text(text)
        assert secret[:12] not in out and out.endswith("[redacted] end")


# -- properties ------------------------------------------------------------------------------------------
glob_chars = st.sampled_from(list("ab.-_*?[]!é/"))
names = st.text(alphabet=st.sampled_from(list("ab.-_é/!]")), max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=glob_chars, max_size=10), names)
def test_globs_match_exactly_what_fnmatch_matches(glob: str, name: str) -> None:
    assert linear.globs([glob]).fullmatch(name) == fnmatch.fnmatchcase(name, glob)


preset_regexes = sorted(
    {
        cond.regex
        for preset in ("default", "strict")
        for rule in load_policy(preset).rules
        for cond in (rule.arguments or {}).values()
        if cond.regex
    }
)
shell_text = st.text(
    alphabet=st.sampled_from(list("rm -fR/*;&|'\"\ntdopuciaTRUNCATEDROPBLE;x_é")), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(preset_regexes), shell_text)
def test_preset_regexes_on_re2_agree_with_python_re_on_short_text(pattern: str, text: str) -> None:
    import re

    # the old spelling of the rm rule, as Python's re read it (short texts: no blow-up)
    python = pattern.replace(r"\brm", r"rm(?<!\wrm)")
    assert linear.compile_pattern(pattern).search(text) == (re.search(python, text) is not None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["x+", "[0-9a-f]{4,}", "(?i)secret", "[ \t]+", "é+"]))
def test_sub_agrees_with_python_re_where_python_is_fast(text: str, pattern: str) -> None:
    import re

    assert linear.compile_pattern(pattern).sub("#", text) == re.sub(pattern, "#", text)


def test_policy_regex_matches_non_ascii_and_lone_surrogates_without_failing() -> None:
    rules = [{"name": "r", "decision": "deny", "arguments": {"*": {"regex": "é+"}}}]
    assert evaluate(policy(rules=rules), act("a.b", WRITE, x="café")).outcome == "deny"
    assert evaluate(policy(rules=rules), act("a.b", WRITE, x="\ud800 plain")).outcome == "require_approval"

"""The redactor: the secret formats it knows, what it never touches, and properties over random text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.redaction import REDACTED, Redactor, owned

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----"
)
SECRETS = {
    "pem private key": PEM,
    "pem key cut short": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "github fine-grained": "github_pat_11ABCDEFG0abcdefghijkl_MNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvw",
    "github classic": "ghp_" + "a1B2c3D4e5" * 4,
    "stripe live secret": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "stripe restricted": "rk_live_" + "51H8x2eLkdIwHu7ix0Cx",
    "google api key": "AIzaSyA-" + "b" * 31,
    "anthropic": "sk-ant-api03-" + "Q" * 40,
    "openai project": "sk-proj-" + "x1" * 20,
    "aws access key id": "AKIA" + "ABCDEFGHIJKLMNOP",
    "slack": "xoxb-123456789012-abcdefABCDEF",
    "bearer header": "Authorization: Bearer abcdefghijklmnop1234",
    "basic header": "Authorization: Basic dXNlcjpwYXNzd29yZA==",
    "basic header without digits": "authorization: basic dXNlcjpwYXNz",
    "json basic header": '{"Authorization": "Basic dXNlcjpwYXNz"}',
}


def core(secret: str) -> str:
    """A piece of the secret itself (not of its label) that must not survive."""
    value = secret.replace("-----", " ").split()
    longest = max(value, key=len).strip('"{}')
    return longest[len(longest) // 2 - 5 : len(longest) // 2 + 5]


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_known_secret_format_is_redacted(name: str) -> None:
    secret = SECRETS[name]
    out = Redactor(environ={}).text(f"before {secret} after")
    assert REDACTED in out and out.startswith("before ") and out.endswith(" after")
    assert core(secret) not in out, out


def test_a_password_in_a_url_is_redacted_and_the_host_kept() -> None:
    out = Redactor(environ={}).text("db at postgres://admin:hunter2-secret@db.example.com:5432/app")
    assert "hunter2" not in out and "db.example.com:5432/app" in out


@pytest.mark.parametrize(
    "text",
    [
        "a basic understanding of Basic training",
        "https://example.com:443/path?q=1",
        "run_5f3a9c0d2b1e step_0a1b2c3d4e5f",
        "sk-short",
        "the bearer of bad news",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor(environ={}).text(text) == text


def test_values_of_secret_env_vars_are_redacted_even_when_not_ascii() -> None:
    redactor = Redactor(secret_env=["MY_TOKEN"], environ={"MY_TOKEN": "pässwörd-ünïcødé"})
    assert redactor.text("token=pässwörd-ünïcødé;") == "token=[redacted];"


def test_owned_values_are_never_rewritten_but_model_arguments_always_are() -> None:
    broad = Redactor(patterns=["[0-9a-f]{12,}"], environ={})
    payload = {
        "run_id": "run_5f3a9c0d2b1e",
        "digest": "ab" * 32,
        "key": "0.writer",
        "status": "pending",
        "created_at": "2026-11-25T05:24:04.083Z",
        "question": "delete 0123456789abcdef?",
        "arguments": {"id": "0123456789abcdef", "run_id": "0123456789abcdef"},
        "reply": {"calls": [{"id": "toolu_0123456789abcdef", "arguments": {"key": "0123456789abcdef"}}]},
    }
    out = broad.value(payload)
    for name in ("run_id", "digest", "key", "status", "created_at"):
        assert out[name] == payload[name]
    assert out["question"] == "delete [redacted]?"
    assert out["arguments"] == {"id": REDACTED, "run_id": REDACTED}
    assert out["reply"]["calls"][0] == {"id": "toolu_0123456789abcdef", "arguments": {"key": REDACTED}}
    assert owned("lease_expires_at") and owned("parent_step_id") and not owned("output")


# -- properties ------------------------------------------------------------------------------------------
# Text that cannot form or extend a secret: no letters or digits that a pattern could run on into.
plain = st.text(alphabet=st.sampled_from(list(" .,;!?()\n\té€ü😀")), max_size=60)


@settings(max_examples=300, deadline=None)
@given(plain, st.sampled_from(sorted(SECRETS)), plain)
def test_a_secret_anywhere_in_text_is_gone_and_the_rest_is_kept(before: str, name: str, after: str) -> None:
    secret = SECRETS[name]
    out = Redactor(environ={}).text(f"{before} {secret} {after}")
    assert out.startswith(before) and out.endswith(after) and REDACTED in out
    assert core(secret) not in out


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_redaction_is_idempotent_and_never_fails(text: str) -> None:
    redactor = Redactor(patterns=["[0-9a-f]{12,}", "(?i)password\\S*"], environ={})
    once = redactor.text(text)
    assert redactor.text(once) == once


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_redacting_a_json_value_keeps_its_shape_and_keys(value: object) -> None:
    out = Redactor(patterns=["[a-c]+"], environ={}).value(value)

    def shape(v: object) -> object:
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [shape(x) for x in v]
        return type(v).__name__

    assert shape(out) == shape(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["\ud800", "\udfff", "é", "a", "b", " ", "sk-ant-", "k" * 8]), max_size=30))
def test_text_with_lone_surrogates_is_redacted_without_failing(parts: list[str]) -> None:
    # JSON can carry lone surrogates ("\ud800"); redaction must neither fail nor lose the text around a match
    text = "".join(parts)
    out = Redactor(patterns=[".{3}b", "sk-ant-k{8,}"], environ={}).text(text)
    assert isinstance(out, str) and "sk-ant-kkkkkkkk" not in out

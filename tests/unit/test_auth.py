"""Credentials: bearer header parsing and the agents' signed access tokens."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.harness import wait_for
from web import errors
from web.security.auth import SIGNING_SALT, AgentTokens, bearer_token

KEYS = ["k" * 32]


@pytest.mark.parametrize(
    "header, token",
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_bearer_header_yields_a_token(header, token):
    assert bearer_token(header) == token


def refusal(tokens: AgentTokens, header: str | None) -> errors.Unauthorized:
    with pytest.raises(errors.Unauthorized) as caught:
        tokens.verify(header)
    assert caught.value.http_status == 401
    return caught.value


def test_an_issued_token_names_its_machine_and_generation():
    tokens = AgentTokens(KEYS, 3600)
    assert tokens.verify(f"Bearer {tokens.issue('box', 3)}") == ("box", 3)


def test_a_missing_agent_token_is_refused():
    assert refusal(AgentTokens(KEYS, 3600), None).code == "missing_token"


def test_a_token_signed_with_another_key_is_refused_as_invalid():
    forged = AgentTokens(["another key entirely"], 3600).issue("box", 0)
    assert refusal(AgentTokens(KEYS, 3600), f"Bearer {forged}").code == "token_invalid"


def test_a_tampered_token_is_refused_as_invalid():
    tokens = AgentTokens(KEYS, 3600)
    token = tokens.issue("box", 0)
    payload, rest = token.split(".", 1)
    other = tokens.issue("admin", 0).split(".", 1)[0]
    assert refusal(tokens, f"Bearer {other}.{rest}").code == "token_invalid"
    assert refusal(tokens, f"Bearer {token[:-2]}{'AA' if token[-2:] != 'AA' else 'BB'}").code == "token_invalid"
    assert refusal(tokens, "Bearer not-a-token-at-all").code == "token_invalid"


def test_an_expired_token_is_refused_as_expired():
    tokens = AgentTokens(KEYS, 1)
    token = tokens.issue("box", 0)
    wait_for(lambda: _code_or_none(tokens, token) == "token_expired", timeout=5, what="token to expire")


def _code_or_none(tokens: AgentTokens, token: str) -> str | None:
    try:
        tokens.verify(f"Bearer {token}")
    except errors.Unauthorized as error:
        return error.code
    return None


def test_a_validly_signed_token_for_another_audience_is_refused():
    other = URLSafeTimedSerializer(KEYS, salt=SIGNING_SALT).dumps({"aud": "owner", "m": "box", "g": 0})
    assert refusal(AgentTokens(KEYS, 3600), f"Bearer {other}").code == "token_wrong_audience"


def test_tokens_signed_with_an_older_key_stay_valid_after_rotation():
    old = AgentTokens(["old key"], 3600).issue("box", 0)
    rotated = AgentTokens(["old key", "new key"], 3600)
    assert rotated.verify(f"Bearer {old}") == ("box", 0)

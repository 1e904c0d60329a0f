"""OAuth single use under concurrency, against the real server: one authorization code or one refresh
token posted to /token by many clients at once gives exactly one set of tokens. On PostgreSQL the
server runs two gevent workers, so requests race across processes as well as greenlets; SQLite serves
one process (the server refuses several workers on it), so there they race between greenlets. Run it
with CODE_REMOTE_TEST_DATABASE=postgresql too: a read-then-save spend held on SQLite (BEGIN IMMEDIATE)
and failed on PostgreSQL (a refresh token spent twice in 10 of 10 races)."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.database import postgres_wanted
from tests.harness import Server
from tests.oauth_helpers import REDIRECT_URI, answer_consent, pkce_pair, redirect_params

RACERS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    env = {"WEB_CONCURRENCY": "2" if postgres_wanted() else "1", "AUTH_FAILURES_PER_MINUTE": "10000", "CLIENT_REGISTRATIONS_PER_HOUR": "10000"}
    server = Server(tmp_path_factory.mktemp("oauth-race"), env=env).start()
    yield server
    server.stop()


def _approved_code(server: Server) -> tuple[str, str, str]:
    """A fresh client and consent of its own: a reused code revokes what its grant issued."""
    body = {"client_name": "Racer", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    client_id = requests.post(server.url + "/register", json=body, timeout=5).json()["client_id"]
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": server.url + "/",
    }
    url = requests.Request("GET", server.url + "/authorize", params=params).prepare().url
    return client_id, verifier, redirect_params(answer_consent(url, server.token))["code"]


def _race(server: Server, form: dict[str, str]) -> list[requests.Response]:
    """POST the same /token form from RACERS threads released together; every answer."""
    start = threading.Barrier(RACERS)
    answers: list[requests.Response] = []

    def post() -> None:
        session = requests.Session()
        session.get(server.url + "/health", timeout=5)  # connected before the barrier: the posts land together
        start.wait(timeout=10)
        answers.append(session.post(server.url + "/token", data=form, timeout=30))

    threads = [threading.Thread(target=post) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == RACERS
    return answers


def _outcomes(answers: list[requests.Response]) -> tuple[list[dict], list[dict]]:
    won = [a.json() for a in answers if a.status_code == 200]
    lost = [a.json() for a in answers if a.status_code != 200]
    assert all(a.status_code in (200, 400) for a in answers), [a.status_code for a in answers]
    return won, lost


@pytest.mark.parametrize("round_", range(3))
def test_one_code_raced_by_many_clients_is_redeemed_once(server, round_):
    client_id, verifier, code = _approved_code(server)
    form = {"grant_type": "authorization_code", "client_id": client_id, "code": code,
            "redirect_uri": REDIRECT_URI, "code_verifier": verifier, "resource": server.url + "/"}
    won, lost = _outcomes(_race(server, form))
    assert len(won) == 1, f"{len(won)} of {RACERS} redeemed one code"
    assert all(b["error"] == "invalid_grant" and "already used" in b["error_description"] for b in lost)


@pytest.mark.parametrize("round_", range(3))
def test_one_refresh_token_raced_by_many_clients_rotates_once(server, round_):
    client_id, verifier, code = _approved_code(server)
    tokens = requests.post(server.url + "/token", timeout=5, data={
        "grant_type": "authorization_code", "client_id": client_id, "code": code,
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier, "resource": server.url + "/",
    }).json()
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]}
    won, lost = _outcomes(_race(server, form))
    assert len(won) == 1, f"{len(won)} of {RACERS} rotated one refresh token"
    assert all(b["error"] == "invalid_grant" for b in lost)
    # The replays were the sign of a stolen token: the whole grant is revoked, the winner's tokens too.
    again = requests.post(server.url + "/token", timeout=5, data=form | {"refresh_token": won[0]["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

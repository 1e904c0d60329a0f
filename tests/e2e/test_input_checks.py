"""Small input checks against the real server: machine names matched whole, query numbers in ASCII
digits only, failed agent-token checks slowed down like any failed authentication, and OAuth client
registration bounded per address (IPv6 by /64) and in total. Each refusal is precise and audited."""

from __future__ import annotations

import pytest
import requests

from tests.harness import Server
from tests.oauth_helpers import REDIRECT_URI

NOT_ASCII_NUMBERS = ["²", "٣", "５", "1_0", "१", "-1", "1e2", " 5", "5 ", "0x10", "inf", "nan", "", "5\n"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    env = {"AUTH_FAILURES_PER_MINUTE": "10000", "CLIENT_REGISTRATIONS_PER_HOUR": "10000", "POLL_TIMEOUT_SECONDS": "2"}
    server = Server(tmp_path_factory.mktemp("checks"), env=env).start()
    yield server
    server.stop()


def _register(server: Server, machine: str) -> requests.Response:
    return requests.post(server.url + "/api/agent/register", json={"machine": machine}, headers=server.headers(), timeout=5)


@pytest.mark.parametrize("name", ["box\n", "box\r\n", "box\x00", "\nbox", "bóx", "box\u200b", "box ", "ｂox", "x" * 65])
def test_a_machine_name_must_match_whole(server, name):
    response = _register(server, name)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_machine_name", repr(name)
    assert all(m != name for m in server.machines())
    assert any(r["error_code"] == "invalid_machine_name" for r in server.audit(limit=5))


@pytest.mark.parametrize("raw", NOT_ASCII_NUMBERS)
def test_the_audit_limit_takes_ascii_digits_only(server, raw):
    response = requests.get(server.url + "/api/commands", params={"limit": raw}, headers=server.headers(), timeout=5)
    assert response.status_code == 400, (raw, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "invalid_limit" and "ASCII digits" in error["message"]


@pytest.mark.parametrize(("param", "raw"), [(p, r) for p in ("limit", "wait") for r in NOT_ASCII_NUMBERS if r not in ("5 ", " 5")])
def test_poll_numbers_take_ascii_digits_only(server, param, raw):
    token = _register(server, "numbers").json()["token"]
    response = requests.get(server.url + "/api/agent/poll", params={param: raw}, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 400, (param, raw, response.status_code, response.text)
    assert response.json()["error"]["code"] == f"invalid_{param}"
    assert "ASCII digits" in response.json()["error"]["message"]


def test_valid_numbers_still_work(server):
    token = _register(server, "numbers").json()["token"]
    poll = requests.get(server.url + "/api/agent/poll", params={"wait": "0.1", "limit": "99"}, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert poll.status_code == 204
    assert requests.get(server.url + "/api/commands", params={"limit": "7"}, headers=server.headers(), timeout=5).status_code == 200


def test_failed_agent_token_checks_are_slowed_down_and_a_valid_token_still_passes(tmp_path):
    server = Server(tmp_path / "server", env={"AUTH_FAILURES_PER_MINUTE": "3"}).start()
    try:
        token = _register(server, "real").json()["token"]
        bad = [token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "not-a-token", token + "x", ""]
        statuses = []
        for candidate in bad + bad:
            headers = {"Authorization": f"Bearer {candidate}"} if candidate else {}
            statuses.append(requests.get(server.url + "/api/agent/poll?wait=0", headers=headers, timeout=5))
        assert [r.status_code for r in statuses[:3]] == [401, 401, 401]
        assert {r.status_code for r in statuses[3:]} == {429}
        assert statuses[-1].json()["error"]["code"] == "too_many_failed_attempts" and int(statuses[-1].headers["Retry-After"]) >= 1
        assert requests.get(server.url + "/api/agent/poll?wait=0", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 204
        refused = [r for r in server.audit(limit=20) if r["transport"] == "agent"]
        assert {r["error_code"] for r in refused} >= {"token_invalid", "too_many_failed_attempts"}
    finally:
        server.stop()


def _register_client(server: Server, forwarded_for: str) -> requests.Response:
    return requests.post(
        server.url + "/register", json={"redirect_uris": [REDIRECT_URI]}, headers={"X-Forwarded-For": forwarded_for}, timeout=5
    )


def test_client_registrations_count_an_ipv6_64_as_one_address_and_have_a_total_cap(tmp_path):
    env = {"CLIENT_REGISTRATIONS_PER_HOUR": "2", "CLIENT_REGISTRATIONS_TOTAL_PER_HOUR": "5", "TRUSTED_PROXY_HOPS": "1"}
    server = Server(tmp_path / "server", env=env).start()
    try:
        same_64 = ["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd::9"]
        statuses = [_register_client(server, a).status_code for a in same_64]
        assert statuses == [201, 201, 429]
        # Other /64s and IPv4 addresses are counted apart, until the total is reached.
        others = ["2001:db8:1:3::1", "198.51.100.7", "::ffff:198.51.100.8", "203.0.113.9"]
        statuses = [_register_client(server, a) for a in others]
        assert [s.status_code for s in statuses] == [201, 201, 201, 429]
        assert statuses[-1].json()["error"]["code"] == "too_many_registrations"
        assert "CLIENT_REGISTRATIONS_TOTAL_PER_HOUR" in statuses[-1].json()["error"]["message"]
        assert sum(r["error_code"] == "too_many_registrations" for r in server.audit(limit=10)) == 2
    finally:
        server.stop()

"""The agent API in process (Flask test client, real SQLite in tmp_path): credentials and the
lease / start / result contract."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.conftest import replace_config
from tests.harness import TOKEN, wait_for
from web.security.auth import SIGNING_SALT


@pytest.fixture
def config(config):
    return replace_config(config, agent_token_max_age_seconds=1)


def register(client, machine: str = "box") -> str:
    response = client.post("/api/agent/register", json={"machine": machine, "roots": ["/tmp"]}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_register_returns_a_token_and_the_poll_hold(client, config):
    body = client.post("/api/agent/register", json={"machine": "box"}, headers=bearer(TOKEN)).get_json()
    assert body["machine"] == "box" and body["token"] and body["poll_timeout_seconds"] == config.poll_timeout_seconds
    assert body["expires_in_seconds"] == 1


def test_register_with_a_wrong_token_is_refused(client):
    response = client.post("/api/agent/register", json={"machine": "box"}, headers=bearer("wrong-token-0123456789"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert error_code(response) == "invalid_token"


@pytest.mark.parametrize("name", ["", "-starts-with-dash", "has space", "x" * 65, "slash/name"])
def test_register_refuses_a_bad_machine_name(client, name):
    response = client.post("/api/agent/register", json={"machine": name}, headers=bearer(TOKEN))
    assert response.status_code == 400 and error_code(response) == "invalid_machine_name"


def test_an_expired_agent_token_is_refused_with_its_own_code(client):
    token = register(client)
    assert client.get("/api/agent/poll?wait=0", headers=bearer(token)).status_code == 204
    wait_for(lambda: client.get("/api/agent/poll?wait=0", headers=bearer(token)).status_code == 401, timeout=5, what="token to expire")
    response = client.get("/api/agent/poll?wait=0", headers=bearer(token))
    assert error_code(response) == "token_expired" and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_forged_tampered_and_wrong_audience_tokens_get_distinct_codes(client, config):
    token = register(client)
    forged = URLSafeTimedSerializer(["not the server's key"], salt=SIGNING_SALT).dumps({"aud": "agent", "m": "box", "g": 0})
    tampered = ("B" if token[0] != "B" else "C") + token[1:]  # in the signed payload: the signature's last character carries dropped bits
    wrong_audience = URLSafeTimedSerializer(config.agent_signing_keys, salt=SIGNING_SALT).dumps({"aud": "mcp", "m": "box", "g": 0})
    codes = {}
    for name, candidate in {"forged": forged, "tampered": tampered, "wrong_audience": wrong_audience}.items():
        response = client.get("/api/agent/poll?wait=0", headers=bearer(candidate))
        assert response.status_code == 401, name
        codes[name] = error_code(response)
    assert codes == {"forged": "token_invalid", "tampered": "token_invalid", "wrong_audience": "token_wrong_audience"}


def test_the_owner_token_does_not_open_the_agent_api(client):
    register(client)
    response = client.get("/api/agent/poll?wait=0", headers=bearer(TOKEN))
    assert response.status_code == 401 and error_code(response) == "token_invalid"


def test_an_agent_token_does_not_open_mcp_or_the_audit(client):
    token = register(client)
    for response in (client.get("/sse", headers=bearer(token)), client.get("/api/commands", headers=bearer(token))):
        assert response.status_code == 401 and error_code(response) == "invalid_token"


def test_poll_answers_204_when_nothing_is_queued(client):
    response = client.get("/api/agent/poll?wait=0", headers=bearer(register(client)))
    assert response.status_code == 204 and response.data == b""


def test_poll_refuses_a_wait_that_is_not_a_number(client):
    response = client.get("/api/agent/poll?wait=soon", headers=bearer(register(client)))
    assert response.status_code == 400 and error_code(response) == "invalid_wait"


def queue_command(app, machine: str = "box") -> str:
    relay = app.extensions["code_remote"].relay
    return relay.submit(machine, "run_shell_command", {"command": "echo hi"}, timeout_seconds=5).id


def test_a_polled_command_is_started_once_and_its_result_applied_once(app, client):
    token = register(client)
    command_id = queue_command(app)
    polled = client.get("/api/agent/poll?wait=0", headers=bearer(token)).get_json()["commands"]
    assert [(c["id"], c["lease"], c["tool"]) for c in polled] == [(command_id, 1, "run_shell_command")]
    assert polled[0]["arguments"] == {"command": "echo hi"} and polled[0]["timeout_seconds"] == 5
    start = client.post(f"/api/agent/commands/{command_id}/start", json={"lease": 1}, headers=bearer(token))
    assert start.status_code == 200 and start.get_json()["state"] == "running"
    result = {"status": "succeeded", "exit_code": 0, "result": {"stdout": "hi\n", "stderr": "", "exit_code": 0}}
    first = client.post(f"/api/agent/commands/{command_id}/result", json=result, headers=bearer(token))
    assert first.status_code == 200 and first.get_json() == {"id": command_id, "state": "succeeded", "duplicate": False}
    changed = dict(result, status="failed")
    again = client.post(f"/api/agent/commands/{command_id}/result", json=changed, headers=bearer(token))
    assert again.status_code == 200 and again.get_json() == {"id": command_id, "state": "succeeded", "duplicate": True}


def test_start_under_a_wrong_lease_is_a_conflict(app, client):
    token = register(client)
    command_id = queue_command(app)
    client.get("/api/agent/poll?wait=0", headers=bearer(token))
    response = client.post(f"/api/agent/commands/{command_id}/start", json={"lease": 2}, headers=bearer(token))
    assert response.status_code == 409 and error_code(response) == "lease_lost"


def test_a_result_before_start_is_a_conflict(app, client):
    token = register(client)
    command_id = queue_command(app)
    client.get("/api/agent/poll?wait=0", headers=bearer(token))
    response = client.post(f"/api/agent/commands/{command_id}/result", json={"status": "succeeded", "result": {}}, headers=bearer(token))
    assert response.status_code == 409 and error_code(response) == "not_started"


def test_another_machines_command_is_not_found(app, client):
    token = register(client, "box")
    intruder = register(client, "intruder")
    command_id = queue_command(app, "box")
    client.get("/api/agent/poll?wait=0", headers=bearer(token))
    for path, body in ((f"/api/agent/commands/{command_id}/start", {"lease": 1}), (f"/api/agent/commands/{command_id}/result", {"status": "succeeded"})):
        response = client.post(path, json=body, headers=bearer(intruder))
        assert response.status_code == 404 and error_code(response) == "unknown_command"


@pytest.mark.parametrize(
    "body, code",
    [
        ({"lease": "1"}, "invalid_lease"),
        ({"lease": True}, "invalid_lease"),
        ([1], "invalid_lease"),
    ],
)
def test_start_refuses_a_malformed_lease(app, client, body, code):
    token = register(client)
    command_id = queue_command(app)
    response = client.post(f"/api/agent/commands/{command_id}/start", json=body, headers=bearer(token))
    assert response.status_code == 400 and error_code(response) == code


@pytest.mark.parametrize(
    "body, code",
    [
        ({"status": "succeeded", "result": "text"}, "invalid_field"),
        ({"status": "succeeded", "exit_code": "0"}, "invalid_field"),
        ({"status": "done"}, "invalid_status"),
        ([], "invalid_body"),
    ],
)
def test_result_refuses_a_malformed_body(app, client, body, code):
    token = register(client)
    command_id = queue_command(app)
    client.get("/api/agent/poll?wait=0", headers=bearer(token))
    client.post(f"/api/agent/commands/{command_id}/start", json={"lease": 1}, headers=bearer(token))
    response = client.post(f"/api/agent/commands/{command_id}/result", json=body, headers=bearer(token))
    assert response.status_code == 400 and error_code(response) == code


def test_a_body_that_is_not_json_is_a_parse_error(app, client):
    token = register(client)
    response = client.post("/api/agent/commands/x/start", data="{nope", content_type="application/json", headers=bearer(token))
    assert response.status_code == 400 and error_code(response) == "parse_error"

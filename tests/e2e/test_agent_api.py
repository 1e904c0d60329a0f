"""The agent API against the real server, played by hand as curl would: credentials, the long-poll,
and the lease / start / result contract, with commands queued by a real MCP client."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pytest
import requests
from itsdangerous import URLSafeTimedSerializer

from tests.harness import PYTHON, ROOT, TOKEN, Agent, Process, Server, base_env, wait_for
from tests.mcp_client import call_tool
from web.config import Config
from web.security.auth import SIGNING_SALT


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), env={"AUTH_FAILURES_PER_MINUTE": "10000", "POLL_TIMEOUT_SECONDS": "2"}).start()
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(server: Server, machine: str, token: str = TOKEN) -> requests.Response:
    return requests.post(server.url + "/api/agent/register", json={"machine": machine}, headers=bearer(token), timeout=10)


def agent_token(server: Server, machine: str) -> str:
    response = register(server, machine)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def poll(server: Server, token: str, wait: float = 0) -> requests.Response:
    return requests.get(server.url + "/api/agent/poll", params={"wait": wait}, headers=bearer(token), timeout=wait + 10)


def post(server: Server, token: str, command_id: str, action: str, body: Any) -> requests.Response:
    return requests.post(f"{server.url}/api/agent/commands/{command_id}/{action}", json=body, headers=bearer(token), timeout=10)


def code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


class McpCall(threading.Thread):
    """A tool call made with the official MCP client, waiting in the background for its result."""

    def __init__(self, server: Server, tool: str, arguments: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.server, self.tool, self.arguments = server, tool, arguments
        self.result: dict[str, Any] | None = None
        self.start()

    def run(self) -> None:
        self.result = call_tool("sse", self.server.url + "/sse", self.server.token, self.tool, self.arguments, overall_timeout=60)

    def outcome(self) -> dict[str, Any]:
        self.join(60)
        assert self.result is not None, "the MCP call did not return"
        return self.result


def polled_command(server: Server, token: str) -> dict[str, Any]:
    commands = wait_for(lambda: (r := poll(server, token, 1)).status_code == 200 and r.json()["commands"], timeout=20, what="a polled command")
    assert len(commands) == 1
    return commands[0]


def test_register_with_a_wrong_token_is_401(live_server):
    response = register(live_server, "fake", "wrong-token-0123456789abcdef")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert code(response) == "invalid_token"
    assert code(requests.post(live_server.url + "/api/agent/register", json={"machine": "fake"}, timeout=10)) == "missing_token"


def test_forged_tampered_and_wrong_audience_agent_tokens_are_401_with_distinct_codes(live_server):
    real = agent_token(live_server, "fake")
    keys = Config(auth_token=TOKEN).agent_signing_keys
    candidates = {
        "forged": URLSafeTimedSerializer(["a key the server never had"], salt=SIGNING_SALT).dumps({"aud": "agent", "m": "fake", "g": 0}),
        # The first character, of the signed payload: every bit of it counts. (The last one, of the
        # signature, carries bits base64 decoding drops: changing it sometimes changed nothing.)
        "tampered": ("B" if real[0] != "B" else "C") + real[1:],
        "wrong_audience": URLSafeTimedSerializer(keys, salt=SIGNING_SALT).dumps({"aud": "owner", "m": "fake", "g": 0}),
    }
    codes = {}
    for name, token in candidates.items():
        response = poll(live_server, token)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer"), name
        codes[name] = code(response)
    assert codes == {"forged": "token_invalid", "tampered": "token_invalid", "wrong_audience": "token_wrong_audience"}


def test_the_owner_token_is_refused_on_poll(live_server):
    response = poll(live_server, TOKEN)
    assert response.status_code == 401 and code(response) == "token_invalid"


def test_an_agent_token_is_refused_on_sse_and_the_audit(live_server):
    token = agent_token(live_server, "fake")
    for path in ("/sse", "/api/commands"):
        response = requests.get(live_server.url + path, headers=bearer(token), timeout=10)
        assert response.status_code == 401 and code(response) == "invalid_token"


def test_poll_answers_204_when_nothing_is_queued(live_server):
    response = poll(live_server, agent_token(live_server, "fake"), 0.2)
    assert response.status_code == 204 and response.content == b""


def test_the_lease_start_result_contract_end_to_end(live_server):
    token = agent_token(live_server, "fake")
    call = McpCall(live_server, "run_shell_command", {"command": "echo hi", "machine": "fake"})
    command = polled_command(live_server, token)
    assert command["tool"] == "run_shell_command" and command["arguments"] == {"command": "echo hi"}
    command_id, lease = command["id"], command["lease"]

    early = post(live_server, token, command_id, "result", {"status": "succeeded", "result": {}})
    assert early.status_code == 409 and code(early) == "not_started"
    wrong = post(live_server, token, command_id, "start", {"lease": lease + 1})
    assert wrong.status_code == 409 and code(wrong) == "lease_lost"

    intruder = agent_token(live_server, "intruder")
    for action, body in (("start", {"lease": lease}), ("result", {"status": "succeeded"})):
        stolen = post(live_server, intruder, command_id, action, body)
        assert stolen.status_code == 404 and code(stolen) == "unknown_command"

    assert post(live_server, token, command_id, "start", {"lease": lease}).json()["state"] == "running"
    result = {"status": "succeeded", "exit_code": 0, "result": {"stdout": "hi from the fake agent\n", "stderr": "", "exit_code": 0}}
    first = post(live_server, token, command_id, "result", result)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    repeat = post(live_server, token, command_id, "result", {"status": "failed", "error": {"code": "x", "message": "second"}})
    assert repeat.status_code == 200 and repeat.json() == {"id": command_id, "state": "succeeded", "duplicate": True}

    outcome = call.outcome()
    assert not outcome["is_error"] and "hi from the fake agent" in outcome["text"] and "second" not in outcome["text"]
    (row,) = [r for r in live_server.audit() if r["command_id"] == command_id]
    assert row["status"] == "succeeded" and row["machine"] == "fake" and row["exit_code"] == 0


def test_a_command_posted_as_failed_reaches_the_client_as_an_error_result(live_server):
    token = agent_token(live_server, "fake")
    call = McpCall(live_server, "read_file", {"path": "/nowhere/x", "machine": "fake"})
    command = polled_command(live_server, token)
    post(live_server, token, command["id"], "start", {"lease": command["lease"]})
    error = {"code": "path_outside_roots", "message": "/nowhere/x is outside the allowed roots"}
    post(live_server, token, command["id"], "result", {"status": "failed", "error": error})
    outcome = call.outcome()
    assert outcome["is_error"] and "/nowhere/x is outside the allowed roots" in outcome["text"]


def test_an_agent_whose_token_expires_registers_again_and_keeps_serving(tmp_path):
    server = Server(tmp_path / "server", env={"AGENT_TOKEN_MAX_AGE_SECONDS": "1", "POLL_TIMEOUT_SECONDS": "1"}).start()
    agent = None
    try:
        agent = Agent(server, tmp_path / "agent", "box").start()
        wait_for(lambda: "registering again" in agent.process.log(), timeout=20, what="the agent to re-register")
        result = call_tool("sse", server.url + "/sse", server.token, "run_shell_command", {"command": "echo still here"})
        assert not result["is_error"] and "still here" in result["text"]
        refusals = [r for r in server.audit() if r["transport"] == "agent"]
        assert refusals and {r["error_code"] for r in refusals} == {"token_expired"}
    finally:
        if agent:
            agent.stop()
        server.stop()


def test_an_agent_configured_only_by_a_env_file_comes_online(live_server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "agent.env").write_text(
        f"# written by hand, as a user would\nRELAY_URL={live_server.url}\nAUTH_TOKEN='{live_server.token}'\nMACHINE_NAME=dotenv-box\n"
    )
    env = base_env(HOME=str(home), PYTHONPATH=str(ROOT), ALLOWED_ROOTS=str(home), CODE_REMOTE_ENV_FILE=str(tmp_path / "agent.env"))
    agent = Process([PYTHON, "-m", "agent"], env=env, log_path=tmp_path / "agent.log", cwd=tmp_path)
    try:
        wait_for(lambda: live_server.machines().get("dotenv-box", {}).get("online"), timeout=20, what="the .env-configured agent online")
        result = call_tool("sse", live_server.url + "/sse", live_server.token, "run_shell_command", {"command": "echo $HOME", "machine": "dotenv-box"})
        assert not result["is_error"] and str(home) in result["text"]
    finally:
        agent.stop()
    assert live_server.token not in agent.log()


def test_a_env_file_in_the_current_folder_is_not_read(live_server, tmp_path):
    """A project's own .env must not point the agent (a shell on this machine) at another server."""
    if (ROOT / "agent" / ".env").exists():
        pytest.skip("agent/.env exists in this checkout and would be read")
    (tmp_path / ".env").write_text(f"RELAY_URL={live_server.url}\nAUTH_TOKEN={live_server.token}\nMACHINE_NAME=cwd-box\n")
    env = base_env(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("CODE_REMOTE_ENV_FILE", None)
    ran = subprocess.run([PYTHON, "-m", "agent"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and "RELAY_URL is not set" in ran.stderr, ran.stderr
    assert "cwd-box" not in live_server.machines()

"""A machine name cannot be taken over: the real server, real agents with throwaway HOMEs, and an
impostor that holds the enrolment secret. The name is bound at its first enrolment to a key only
its agent holds; without that key a registration is refused (and audited), and the real agent keeps
every command. The owner can hand the name to another agent's key; the displaced agent logs why."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import anyio
import pytest
import requests

from tests.harness import Agent, Server, wait_for
from tests.mcp_client import open_session

ENROLMENT = "takeover-enrolment-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    env = {"AGENT_ENROLMENT_SECRET": ENROLMENT, "AUTH_FAILURES_PER_MINUTE": "10000"}
    server = Server(tmp_path_factory.mktemp("takeover"), env=env).start()
    yield server
    server.stop()


def _agent(server: Server, workdir, name: str = "box") -> Agent:
    return Agent(server, workdir, name, env={"AGENT_ENROLMENT_SECRET": ENROLMENT})


def _key_file(agent: Agent) -> str:
    return os.path.join(agent.home, ".local", "state", "code-remote", "machine.key")


def _register(server: Server, machine: str, **extra) -> requests.Response:
    body = {"machine": machine, "hostname": "impostor", "roots": ["/"], **extra}
    return requests.post(server.url + "/api/agent/register", json=body, headers={"Authorization": f"Bearer {ENROLMENT}"}, timeout=5)


@pytest.fixture(scope="module")
def real(server, tmp_path_factory) -> Agent:
    agent = _agent(server, tmp_path_factory.mktemp("real")).start()
    (agent.home / "who").write_text("the real box\n")
    yield agent
    agent.stop()


def test_the_agent_keeps_its_key_private_in_its_state_folder(real):
    mode = os.stat(_key_file(real)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert len(open(_key_file(real)).read().strip()) >= 32


def _impostor_variants(real: Agent) -> list[tuple[dict, str]]:
    key = open(_key_file(real)).read().strip()
    return [
        ({}, "machine_key_required"),
        ({"key": "k" * 43}, "machine_key_mismatch"),
        ({"key": hashlib.sha256(key.encode()).hexdigest()}, "machine_key_mismatch"),  # what the server stores
        ({"key": key + "x"}, "machine_key_mismatch"),
        ({"key": key[:-1]}, "machine_key_mismatch"),
        ({"key": key.upper() if key.upper() != key else key.lower()}, "machine_key_mismatch"),
        ({"key": " " + key}, "invalid_machine_key"),
        ({"key": None, "machine_key": key}, "machine_key_required"),
    ]


def test_a_second_registration_without_the_key_is_refused_and_the_real_agent_keeps_every_command(server, real):
    variants = _impostor_variants(real)
    refusals: list[requests.Response] = []
    stop = threading.Event()

    def impostor() -> None:
        while not stop.is_set():
            for extra, _ in variants:
                refusals.append(_register(server, "box", **{k: v for k, v in extra.items() if v is not None}))

    thread = threading.Thread(target=impostor)
    thread.start()
    try:
        async def eight_calls(session):
            results = [None] * 8

            async def call(i: int) -> None:
                results[i] = await session.call_tool("run_shell_command", {"command": f"echo call-{i}; cat ~/who", "machine": "box"})

            async with anyio.create_task_group() as group:
                for i in range(8):
                    group.start_soon(call, i)
            return results, await session.call_tool("check_agent_status", {})

        async def main():
            with anyio.fail_after(60):
                async with open_session("sse", server.url + "/sse", server.token) as session:
                    return await eight_calls(session)

        results, status = anyio.run(main)
    finally:
        stop.set()
        thread.join(timeout=30)
    for i, result in enumerate(results):
        assert not result["is_error"] and f"call-{i}" in result["text"] and "the real box" in result["text"], result["text"]
    assert len(refusals) >= len(variants)
    for response, (_, code) in zip(refusals, variants * (len(refusals) // len(variants) + 1)):
        assert response.status_code in (400, 403) and response.json()["error"]["code"] == code, response.text
    # The impostor's host name and roots never replaced the real ones.
    machine = server.machines()["box"]
    assert machine["hostname"] != "impostor" and machine["allowed_roots"] != ["/"]
    assert "impostor" not in status["text"]
    audited = {r["error_code"] for r in server.audit(limit=200) if r["transport"] == "agent"}
    assert {"machine_key_required", "machine_key_mismatch"} <= audited
    mismatch = next(r for r in refusals if r.json()["error"]["code"] == "machine_key_mismatch").json()["error"]["message"]
    assert "/api/machines/box/approve" in mismatch and "key_sha256" in mismatch


def test_the_key_holder_may_register_again_and_that_revokes_older_tokens(server, real):
    key = open(_key_file(real)).read().strip()
    first = _register(server, "spare", key="s" * 40)
    assert first.status_code == 200
    again = _register(server, "spare", key="s" * 40)
    assert again.status_code == 200
    old = requests.get(server.url + "/api/agent/poll?wait=0", headers={"Authorization": f"Bearer {first.json()['token']}"}, timeout=5)
    assert old.status_code == 401 and old.json()["error"]["code"] == "token_revoked"
    assert _register(server, "spare", key=key).status_code == 403  # another agent's key is not this name's


def test_a_name_registered_by_hand_without_a_key_stays_unclaimed_until_an_agent_brings_one(server):
    assert _register(server, "curl-box").status_code == 200
    assert _register(server, "curl-box").status_code == 200
    assert _register(server, "curl-box", key="c" * 40).status_code == 200
    assert _register(server, "curl-box").json()["error"]["code"] == "machine_key_required"


def test_the_owner_hands_the_name_to_a_new_agent_and_the_displaced_one_logs_why(server, tmp_path_factory):
    first = _agent(server, tmp_path_factory.mktemp("first"), "laptop").start()
    second = _agent(server, tmp_path_factory.mktemp("second"), "laptop")
    try:
        second.start(wait_online=False)
        wait_for(lambda: "machine_key_mismatch" in second.process.log(), timeout=20, what="the second agent refused")
        assert "/api/machines/laptop/approve" in second.process.log()
        new_key = open(_key_file(second)).read().strip()
        digest = hashlib.sha256(new_key.encode()).hexdigest()
        for bad in ({}, {"key_sha256": "zz"}, {"key_sha256": digest[:-1]}):
            refused = requests.post(server.url + "/api/machines/laptop/approve", json=bad, headers=server.headers(), timeout=5)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_key_sha256"
        unknown = requests.post(server.url + "/api/machines/nope/approve", json={"key_sha256": digest}, headers=server.headers(), timeout=5)
        assert unknown.status_code == 404
        no_owner = requests.post(server.url + "/api/machines/laptop/approve", json={"key_sha256": digest}, headers={"Authorization": f"Bearer {ENROLMENT}"}, timeout=5)
        assert no_owner.status_code == 401
        approved = requests.post(server.url + "/api/machines/laptop/approve", json={"key_sha256": digest}, headers=server.headers(), timeout=5)
        assert approved.status_code == 200 and approved.json()["key_sha256"] == digest
        wait_for(lambda: "machine_key_mismatch" in first.process.log(), timeout=30, what="the displaced agent to log its refusal")
        wait_for(lambda: "online" if server.machines()["laptop"]["online"] and "for machine 'laptop'" in second.process.log() else None, timeout=30)
        result = anyio.run(_call_on_laptop, server)
        assert not result["is_error"] and str(second.home) in result["text"], result["text"]
    finally:
        first.stop()
        second.stop()


async def _call_on_laptop(server: Server):
    with anyio.fail_after(60):
        async with open_session("sse", server.url + "/sse", server.token) as session:
            return await session.call_tool("run_shell_command", {"command": "echo $HOME", "machine": "laptop"})

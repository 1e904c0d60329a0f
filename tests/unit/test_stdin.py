"""Input for interactive commands on a real SQLite file: queued by send_input, taken by the agent
by offset, closed once; and the agent API's checks of it."""

from __future__ import annotations

import base64

import pytest

from tests.harness import TOKEN
from web import errors
from web.relay import stdin
from web.relay.relay import Relay


@pytest.fixture
def relay(app) -> Relay:
    relay = app.extensions["code_remote"].relay
    relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    return relay


def running(relay: Relay, arguments: dict | None = None):
    command = relay.submit("box", "run_shell_command", arguments or {"command": "cat", "stdin": "pipe"}, timeout_seconds=30)
    (leased,) = relay.claim("box")
    relay.start("box", leased.id, leased.lease_count)
    return relay.get(command.id)


def taken(answer: dict) -> tuple[bytes, bool]:
    return base64.b64decode(answer["data"]), answer["close"]


def test_input_is_taken_from_the_offset_the_agent_has_written_and_closed_once(relay):
    command = running(relay)
    assert relay.stdin.send(command, b"one\n", False) == 4
    assert relay.stdin.send(command, b"two\n", True) == 8
    assert taken(relay.stdin.take("box", command.id, 0, 0)) == (b"one\ntwo\n", True)
    assert taken(relay.stdin.take("box", command.id, 4, 0)) == (b"two\n", True)  # the first 4 bytes acknowledged
    assert taken(relay.stdin.take("box", command.id, 8, 0)) == (b"", True)
    assert relay.stdin.queued(command.id) == (8, True)
    with pytest.raises(errors.ToolError) as refused:
        relay.stdin.send(command, b"late\n", False)
    assert refused.value.code == "input_closed"


def test_nothing_to_take_answers_none_after_the_wait(relay):
    command = running(relay)
    assert relay.stdin.take("box", command.id, 0, 0) is None


def test_an_ended_command_answers_its_state_and_no_input(relay):
    command = running(relay)
    relay.stdin.send(command, b"x", False)
    relay.complete("box", command.id, "succeeded", {"exit_code": 0}, exit_code=0)
    assert relay.stdin.take("box", command.id, 0, 5) == {"state": "succeeded", "offset": 0, "data": "", "close": False}


def test_another_machines_command_gives_it_no_input(relay):
    command = running(relay)
    relay.register("other", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    with pytest.raises(errors.NotFound):
        relay.stdin.take("other", command.id, 0, 0)


def test_a_quiet_mark_after_the_input_answers_the_waiting_call(relay):
    command = running(relay)
    written = relay.stdin.send(command, b"hi\n", False)
    relay.progress("box", command.id, [("stdout", 0, b"? ")], {"stdin": 0, "closed": False})
    assert not stdin.quiet_after(relay.get(command.id), written)  # quiet before the input: not the answer
    relay.progress("box", command.id, [("stdout", 2, b"hi\n")], {"stdin": written, "closed": False})
    after = relay.get(command.id)
    assert stdin.quiet_after(after, written) and not stdin.quiet_after(after, written, closed=True)
    assert stdin.idle_mark(after)["output"] == {"stdout": 5, "stderr": 0}
    assert relay.wait(command.id, 5, until=lambda c: stdin.quiet_after(c, written)).id == command.id


def register(client) -> dict[str, str]:
    response = client.post("/api/agent/register", json={"machine": "box"}, headers={"Authorization": f"Bearer {TOKEN}"})
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def test_the_agent_api_takes_input_and_refuses_bad_offsets_and_marks(client, app):
    headers = register(client)
    command = running(app.extensions["code_remote"].relay)
    assert client.get(f"/api/agent/commands/{command.id}/input?offset=0&wait=0", headers=headers).status_code == 204
    app.extensions["code_remote"].relay.stdin.send(command, b"hi\n", False)
    answer = client.get(f"/api/agent/commands/{command.id}/input?offset=0&wait=0", headers=headers).get_json()
    assert base64.b64decode(answer["data"]) == b"hi\n" and answer["state"] == "running"
    bad = client.get(f"/api/agent/commands/{command.id}/input?offset=-1", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_offset"
    for idle in ({"stdin": "3"}, {"stdin": -1}, {"stdin": 1, "closed": "yes"}, [1]):
        bad = client.post(f"/api/agent/commands/{command.id}/output", json={"chunks": [], "idle": idle}, headers=headers)
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_idle", idle
    assert client.get("/api/agent/commands/nope/input", headers=headers).status_code == 404

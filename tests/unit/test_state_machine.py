"""The command state machine on a real SQLite file: every transition and its log row, leases, loss,
cancellation, streamed output and the per-machine cap. Time-driven transitions are driven through
`sweep(at=...)`, so nothing here waits."""

from __future__ import annotations

import pytest

from tests.conftest import replace_config
from tests.harness import TOKEN
from web import errors
from web.mcp.tools import CallContext
from web.models import (
    CANCELLED,
    EXPIRED,
    LEASED,
    LOST,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Command,
    CommandEvent,
    db,
    now,
)
from web.relay import output
from web.relay.relay import Relay


@pytest.fixture
def config(config):
    return replace_config(
        config, lease_seconds=30.0, lost_after_seconds=20.0, start_deadline_seconds=60.0, max_output_bytes=1000,
        tool_output_budget_bytes=200, tool_wait_seconds=0.05, max_queued_per_machine=3,
    )


@pytest.fixture
def services(app):
    svc = app.extensions["code_remote"]
    svc.relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    return svc


@pytest.fixture
def relay(services) -> Relay:
    return services.relay


def submit(relay: Relay, command: str = "echo hi") -> Command:
    return relay.submit("box", "run_shell_command", {"command": command}, timeout_seconds=5)


def running(relay: Relay, command: str = "echo hi") -> Command:
    submitted = submit(relay, command)
    (leased,) = relay.claim("box")
    return relay.start("box", submitted.id, leased.lease_count)


def path(relay: Relay, command_id: str) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in relay.events(command_id)]


def test_each_transition_is_logged_once_in_order(relay):
    command = running(relay)
    relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0)
    relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0)  # a repeat: no new row
    assert path(relay, command.id) == [("", QUEUED), (QUEUED, LEASED), (LEASED, RUNNING), (RUNNING, SUCCEEDED)]
    assert [e.actor for e in relay.events(command.id)] == ["client", "server", "agent", "agent"]


def test_an_unconfirmed_lease_is_handed_out_again_but_a_started_command_never_is(relay, config):
    relay.leases.config = replace_config(config, lease_seconds=0.0)
    command = submit(relay)
    (first,) = relay.claim("box")
    (second,) = relay.claim("box")  # the first lease ran out unconfirmed
    assert second.lease_count == first.lease_count + 1
    with pytest.raises(errors.Conflict):
        relay.start("box", command.id, first.lease_count)
    relay.start("box", command.id, second.lease_count)
    assert relay.claim("box") == []
    assert path(relay, command.id)[-1] == (LEASED, RUNNING)


def test_a_command_not_started_by_its_deadline_expires_and_may_not_start(relay):
    command = submit(relay)
    (leased,) = relay.claim("box")
    assert relay.sweep(at=command.start_by_at - 1) == []
    assert relay.sweep(at=command.start_by_at) == [command.id]
    assert relay.get(command.id).state == EXPIRED
    with pytest.raises(errors.Conflict):
        relay.start("box", command.id, leased.lease_count)


def test_cancelling_a_queued_command_means_it_never_runs(relay):
    command = submit(relay)
    assert relay.cancel(command.id).state == CANCELLED
    assert relay.claim("box") == []
    assert path(relay, command.id) == [("", QUEUED), (QUEUED, CANCELLED)]


def test_cancelling_a_running_command_tells_its_agent_and_its_result_ends_it(relay):
    command = running(relay)
    assert relay.progress("box", command.id, [])["cancel"] is False
    assert relay.cancel(command.id).state == RUNNING
    assert relay.progress("box", command.id, [])["cancel"] is True
    relay.complete("box", command.id, CANCELLED, {"exit_code": 143, "cancelled": True}, exit_code=143)
    assert relay.get(command.id).state == CANCELLED


def test_a_running_command_whose_agent_falls_silent_is_lost_with_outcome_unknown(relay, config):
    command = running(relay)
    late = relay.sweeper.started_at + config.lost_after_seconds + 30
    assert relay.sweep(at=relay.sweeper.started_at + 1) == []
    assert relay.sweep(at=late) == [command.id]
    lost = relay.get(command.id)
    assert lost.state == LOST and "outcome unknown" in lost.error_message


def test_a_restarted_server_does_not_count_its_own_downtime_against_heartbeats(app, relay, config):
    command = running(relay)
    with db.connection_context():
        Command.update(heartbeat_at=now() - 1000).where(Command.id == command.id).execute()
    restarted = Relay(config)
    assert restarted.sweep() == []
    assert restarted.get(command.id).state == RUNNING


def test_a_late_result_replaces_the_unknown_outcome_of_a_lost_command(relay, config):
    command = running(relay)
    relay.sweep(at=relay.sweeper.started_at + config.lost_after_seconds + 30)
    _, applied = relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0)
    assert applied and relay.get(command.id).state == SUCCEEDED
    assert path(relay, command.id)[-2:] == [(RUNNING, LOST), (LOST, SUCCEEDED)]


def test_a_restarted_agent_reconciles_and_the_commands_it_no_longer_holds_are_lost(relay):
    kept, dropped = running(relay), running(relay)
    assert relay.reconcile("box", [kept.id]) == [dropped.id]
    assert relay.get(kept.id).state == RUNNING
    assert relay.get(dropped.id).state == LOST and "outcome unknown" in relay.get(dropped.id).error_message


def test_output_chunks_are_stored_once_by_offset(relay):
    command = running(relay)
    relay.progress("box", command.id, [("stdout", 0, b"abc")])
    relay.progress("box", command.id, [("stdout", 0, b"abc")])  # a repeat
    relay.progress("box", command.id, [("stdout", 1, b"bcde")])  # overlaps: only "de" is new
    reply = relay.progress("box", command.id, [("stdout", 9, b"zz")])  # a gap: refused, realign
    assert reply["received"] == {"stdout": 5, "stderr": 0}
    stored = relay.get(command.id)
    with db.connection_context():
        assert relay.output.read(stored, "stdout", 0, 100) == b"abcde"


def test_output_past_the_cap_is_counted_but_not_kept(relay):
    command = running(relay)
    relay.progress("box", command.id, [("stdout", 0, b"x" * 800), ("stderr", 0, b"y" * 300)])
    stored = relay.get(command.id)
    assert output.received(stored, "stderr") == 300 and output.stored(stored, "stderr") == 200
    assert "100 more bytes of stderr were not kept" in output.render(relay.output, stored, 10_000)


def test_long_output_shows_head_and_tail_with_how_to_page(relay):
    command = running(relay)
    relay.progress("box", command.id, [("stdout", 0, b"".join(b"line %03d\n" % i for i in range(100)))])
    text = output.render(relay.output, relay.get(command.id), 200)
    assert text.startswith("line 000") and text.endswith("line 099")
    assert "omitted" in text and f"get_command_output(command_id='{command.id}', stream='stdout', offset=100)" in text


def test_past_the_machine_cap_a_submit_is_refused_as_machine_busy(relay):
    for _ in range(3):
        submit(relay)
    with pytest.raises(errors.ToolError) as refused:
        submit(relay)
    assert refused.value.code == "machine_busy"


def test_a_call_that_outlasts_its_wait_answers_with_the_id_and_state_not_an_error(services):
    result = services.toolbox.call("run_shell_command", {"command": "sleep 300"}, CallContext(session_id="s"))
    (command,) = services.relay.commands()
    text = result.content[0].text
    assert not result.is_error and command.id in text and "queued" in text and "get_command_output" in text
    page = services.toolbox.call("get_command_output", {"command_id": command.id}, CallContext())
    assert f"command {command.id} on 'box': queued" in page.content[0].text
    cancelled = services.toolbox.call("cancel_command", {"command_id": command.id}, CallContext())
    assert "never ran" in cancelled.content[0].text and services.relay.get(command.id).state == CANCELLED


def test_a_running_command_is_reported_as_unknown_and_maybe_still_running(services):
    command = running(services.relay, "sleep 300")
    services.relay.progress("box", command.id, [("stdout", 0, b"halfway\n")])
    page = services.toolbox.call("get_command_output", {"command_id": command.id}, CallContext()).content[0].text
    assert "running" in page and "halfway" in page and "still running" in page



@pytest.mark.parametrize(
    "body, code",
    [
        ({"chunks": [{"stream": "stdin", "offset": 0, "data": ""}]}, "invalid_chunk"),
        ({"chunks": [{"stream": "stdout", "offset": -1, "data": ""}]}, "invalid_chunk"),
        ({"chunks": [{"stream": "stdout", "offset": 0, "data": "not base64!"}]}, "invalid_chunk"),
        ({"chunks": "x"}, "invalid_body"),
        ([], "invalid_body"),
    ],
    ids=["unknown-stream", "negative-offset", "not-base64", "chunks-not-a-list", "not-an-object"],
)
def test_bad_output_posts_get_a_precise_error_and_change_nothing(app, client, relay, body, code):
    command = running(relay)
    token = client.post("/api/agent/register", json={"machine": "box"}, headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["token"]
    response = client.post(f"/api/agent/commands/{command.id}/output", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == code
    assert relay.get(command.id).output is None


def test_reconcile_needs_a_list_of_ids(client, relay):
    token = client.post("/api/agent/register", json={"machine": "box"}, headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["token"]
    response = client.post("/api/agent/reconcile", json={"keep": "all"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_body"


def test_a_result_may_carry_its_output_and_a_repeat_stores_it_once(relay):
    command = running(relay)
    relay.progress("box", command.id, [("stdout", 0, b"hel")])  # streamed before the end
    for _ in range(2):
        relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0, chunks=[("stdout", 0, b"hello\n")])
    finished = relay.get(command.id)
    with db.connection_context():
        assert relay.output.read(finished, "stdout", 0, 100) == b"hello\n"

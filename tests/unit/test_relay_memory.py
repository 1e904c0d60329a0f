"""What the relay keeps in memory to spare the database, checked against a second relay on the same
database (as a second server process would be): it must never answer differently."""

from __future__ import annotations

import pytest

from tests.conftest import replace_config
from tests.harness import wait_for
from web import controls
from web.mcp import outcome
from web.models import LEASED, QUEUED, RUNNING, SUCCEEDED
from web.relay.relay import Relay


@pytest.fixture
def relay(app) -> Relay:
    relay = app.extensions["code_remote"].relay
    relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    return relay


@pytest.fixture
def other(relay) -> Relay:
    """Another server process's relay: same database, its own memory."""
    return Relay(relay.config)


def running(relay: Relay, command: str = "echo hi"):
    submitted = relay.submit("box", "run_shell_command", {"command": command}, timeout_seconds=5)
    (leased,) = relay.claim("box")
    return relay.start("box", submitted.id, leased.lease_count)


def test_a_revocation_here_takes_effect_at_once(relay):
    before = relay.token_generation("box")
    relay.revoke("box")
    assert relay.token_generation("box") == before + 1


def test_a_revocation_by_another_process_takes_effect_here_within_a_second_or_so(relay, other):
    before = relay.token_generation("box")
    other.revoke("box")
    wait_for(lambda: relay.token_generation("box") == before + 1, timeout=5, what="the revocation seen by the other process")


def test_an_unknown_machine_has_no_token_generation(relay):
    assert relay.token_generation("ghost") is None


def test_a_machine_registered_by_another_process_is_listed_here_soon(relay, other):
    other.register("late-box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    wait_for(lambda: "late-box" in [m.name for m in relay.machines()], timeout=5, what="the new machine listed")


def test_a_small_output_answers_the_same_from_memory_as_from_the_database(relay, other):
    command = running(relay)
    chunks = [("stdout", 0, "héllo\nwörld\n".encode()), ("stderr", 0, b"warn\n")]
    done, applied = relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0, chunks=chunks)
    assert applied
    here, _ = outcome.describe(relay, done, waited=1)
    there, _ = outcome.describe(other, other.get(command.id), waited=1)
    assert here == there
    shown = controls.shown(here)
    assert "héllo\nwörld" in shown and "⟦stderr⟧\nwarn" in shown and shown.endswith("⟦end of output⟧\n[exit code 0]")


def test_an_output_cut_by_the_cap_is_read_back_with_its_marker(relay, config):
    relay.output.max_bytes = 4
    command = running(relay)
    done, _ = relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0, chunks=[("stdout", 0, b"0123456789")])
    text, _ = outcome.describe(relay, done, waited=1)
    assert text.startswith("0123") and "6 more bytes of stdout were not kept" in text


def test_a_waiter_gets_the_outcome_committed_by_complete(relay):
    command = running(relay)
    relay.complete("box", command.id, SUCCEEDED, {"exit_code": 0}, exit_code=0)
    assert relay.wait(command.id, 1).state == SUCCEEDED


def test_a_lease_after_one_ran_out_is_logged_as_a_new_lease_of_a_leased_command(relay, config):
    relay.leases.config = replace_config(config, lease_seconds=0.0)
    command = relay.submit("box", "run_shell_command", {"command": "echo hi"}, timeout_seconds=5)
    (first,) = relay.claim("box")
    (second,) = relay.claim("box")
    assert (first.lease_count, second.lease_count) == (1, 2)
    events = relay.events(command.id)
    assert [(e.from_state, e.to_state) for e in events] == [("", QUEUED), (QUEUED, LEASED), (LEASED, LEASED)]
    assert events[-1].detail == "lease 2 (previous lease ran out unconfirmed)" and events[1].detail == "lease 1"
    assert relay.start("box", command.id, 2).state == RUNNING
    started = relay.events(command.id)[-1]
    assert (started.from_state, started.to_state, started.actor, started.detail) == (LEASED, RUNNING, "agent", "started under lease 2")


def test_claim_leases_in_submission_order_and_only_up_to_the_limit(relay):
    ids = [relay.submit("box", "run_shell_command", {"command": f"echo {i}"}, timeout_seconds=5).id for i in range(5)]
    first = relay.claim("box", limit=3)
    assert [c.id for c in first] == ids[:3] and {c.state for c in first} == {LEASED}
    assert [c.id for c in relay.claim("box", limit=16)] == ids[3:]


def test_a_held_poll_finds_a_command_queued_by_another_process_though_its_last_claim_found_nothing(relay, other):
    assert relay.poll("box", 0.01) == []  # this process now knows nothing is ready for "box"
    submitted = other.submit("box", "run_shell_command", {"command": "echo hi"}, timeout_seconds=5)
    assert [c.id for c in relay.poll("box", 10)] == [submitted.id]  # re-read within a second, not at the hold's end


def test_a_poll_right_after_a_lease_still_takes_a_command_queued_here_meanwhile(relay):
    first = relay.submit("box", "run_shell_command", {"command": "echo 1"}, timeout_seconds=5)
    assert [c.id for c in relay.poll("box", 10)] == [first.id]
    second = relay.submit("box", "run_shell_command", {"command": "echo 2"}, timeout_seconds=5)
    assert [c.id for c in relay.poll("box", 10)] == [second.id]
    assert relay.poll("box", 0) == []

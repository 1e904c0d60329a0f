"""The relay's queue on a real SQLite file: leases, confirmation, completion and expiry."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from peewee import SqliteDatabase

from tests.conftest import replace_config
from tests.harness import wait_for
from web import errors
from web.models import EXPIRED, LEASED, QUEUED, RUNNING, SUCCEEDED, Command, db, now
from web.relay.lease import LEASE
from web.relay.relay import COUNT_PENDING, Relay
from web.relay.wakeup import RECHECK_SECONDS

LEASE_SECONDS = 0.2


@pytest.fixture
def config(config):
    return replace_config(config, lease_seconds=LEASE_SECONDS)


@pytest.fixture
def relay(app) -> Relay:
    relay = app.extensions["code_remote"].relay
    relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    return relay


def submit(relay: Relay, machine: str = "box") -> Command:
    return relay.submit(machine, "run_shell_command", {"command": "echo hi"}, timeout_seconds=5)


def lease_ran_out(command: Command):
    return lambda: now() > command.lease_expires_at


def test_a_poll_leases_queued_commands_in_order(relay):
    first, second = submit(relay), submit(relay)
    leased = relay.poll("box", 0)
    assert [c.id for c in leased] == [first.id, second.id]
    assert {c.state for c in leased} == {LEASED} and {c.lease_count for c in leased} == {1}


def test_an_unconfirmed_lease_runs_out_and_the_command_is_leased_again(relay):
    command = submit(relay)
    (leased,) = relay.claim("box")
    assert relay.claim("box") == []  # still under its first lease
    wait_for(lease_ran_out(leased), what="lease to run out")
    (again,) = relay.claim("box")
    assert again.id == command.id and again.lease_count == 2


def test_a_started_command_is_never_leased_again(relay):
    submit(relay)
    (leased,) = relay.claim("box")
    assert relay.start("box", leased.id, leased.lease_count).state == RUNNING
    wait_for(lease_ran_out(leased), what="lease to run out")
    assert relay.claim("box") == []


def test_starting_under_an_old_lease_is_refused(relay):
    submit(relay)
    (first,) = relay.claim("box")
    wait_for(lease_ran_out(first), what="lease to run out")
    (second,) = relay.claim("box")
    with pytest.raises(errors.Conflict) as caught:
        relay.start("box", first.id, first.lease_count)
    assert caught.value.code == "lease_lost" and caught.value.http_status == 409
    assert relay.start("box", second.id, second.lease_count).state == RUNNING


def test_a_repeated_start_under_the_same_lease_is_accepted(relay):
    submit(relay)
    (leased,) = relay.claim("box")
    relay.start("box", leased.id, 1)
    assert relay.start("box", leased.id, 1).state == RUNNING


def test_a_command_nobody_started_expires_at_its_start_deadline(relay):
    command = submit(relay)
    assert relay.wait(command.id, 0.05).state == QUEUED  # the waiter giving up changes nothing
    relay.sweep(at=command.start_by_at)
    expired = relay.get(command.id)
    assert expired.state == EXPIRED and expired.error_code == "not_started"
    assert relay.claim("box") == []


def test_a_leased_but_unconfirmed_command_expires_and_may_then_not_be_started(relay):
    command = submit(relay)
    (leased,) = relay.claim("box")
    relay.sweep(at=command.start_by_at)
    assert relay.get(command.id).state == EXPIRED
    with pytest.raises(errors.Conflict):
        relay.start("box", leased.id, leased.lease_count)


def test_a_running_command_is_left_running_when_the_waiter_gives_up(relay):
    command = submit(relay)
    relay.start("box", relay.claim("box")[0].id, 1)
    assert relay.wait(command.id, 0.05).state == RUNNING


def blocked_on(condition: threading.Condition) -> Callable[[], bool]:
    """True once a thread waits on `condition`: a change made after that can reach it only as a wake-up."""
    return lambda: len(condition._waiters) == 1


# A waiter re-reads the database every RECHECK_SECONDS anyway: only an answer well within that
# proves the wake-up worked.
WOKEN_WITHIN_SECONDS = RECHECK_SECONDS / 2


def test_completing_wakes_the_waiter_with_the_result(relay):
    command = submit(relay)
    relay.start("box", relay.claim("box")[0].id, 1)
    finished: list[Command] = []
    waiter = threading.Thread(target=lambda: finished.append(relay.wait(command.id, 10)))
    waiter.start()
    wait_for(blocked_on(relay.wakeups.changed(command.id)._cond), what="the waiter to wait")
    relay.complete("box", command.id, SUCCEEDED, {"stdout": "hi\n", "exit_code": 0}, exit_code=0)
    waiter.join(WOKEN_WITHIN_SECONDS)
    assert not waiter.is_alive(), f"the waiter was not woken within {WOKEN_WITHIN_SECONDS} s"
    assert finished[0].state == SUCCEEDED and finished[0].result["stdout"] == "hi\n"


def test_a_repeated_result_is_acknowledged_and_not_applied_twice(relay):
    command = submit(relay)
    relay.start("box", relay.claim("box")[0].id, 1)
    first, applied = relay.complete("box", command.id, SUCCEEDED, {"stdout": "first"}, exit_code=0)
    again, applied_again = relay.complete("box", command.id, "failed", {"stdout": "second"}, exit_code=1)
    assert (applied, applied_again) == (True, False)
    with db.connection_context():
        stored = Command.get_by_id(command.id)
    assert stored.state == SUCCEEDED and stored.result == {"stdout": "first"} and stored.finished_at == first.finished_at


def test_a_result_before_start_is_refused(relay):
    command = submit(relay)
    relay.claim("box")
    with pytest.raises(errors.Conflict) as caught:
        relay.complete("box", command.id, SUCCEEDED, {}, exit_code=0)
    assert caught.value.code == "not_started"


def test_another_machines_command_looks_missing(relay):
    relay.register("other", hostname="", os_name="", version="", roots=[])
    command = submit(relay)
    (leased,) = relay.claim("box")
    for call in (lambda: relay.start("other", command.id, 1), lambda: relay.complete("other", command.id, SUCCEEDED, {})):
        with pytest.raises(errors.NotFound) as caught:
            call()
        assert caught.value.code == "unknown_command"
    assert relay.claim("other") == []
    with db.connection_context():
        stored = Command.get_by_id(command.id)
    assert (stored.state, stored.machine, stored.result) == (LEASED, "box", None), "the other machine changed nothing"
    assert relay.start("box", leased.id, leased.lease_count).state == RUNNING, "its own machine still can"


def test_an_unknown_result_status_is_refused(relay):
    command = submit(relay)
    with pytest.raises(errors.BadRequest, match="status must be one of"):
        relay.complete("box", command.id, "queued", {})


def test_a_held_poll_is_woken_by_a_submit(relay):
    got: list[list[Command]] = []
    poller = threading.Thread(target=lambda: got.append(relay.poll("box", 10)))
    poller.start()
    wait_for(blocked_on(relay.wakeups.condition("box")), what="poll to be held")
    command = submit(relay)
    poller.join(WOKEN_WITHIN_SECONDS)
    assert not poller.is_alive(), f"the poll was not woken within {WOKEN_WITHIN_SECONDS} s"
    assert [c.id for c in got[0]] == [command.id]


def test_a_machine_counts_online_while_polling_and_offline_after_the_limit(app, relay):
    relay.registry.config = replace_config(relay.config, offline_after_seconds=0.1)
    box = relay.machine("box")
    assert relay.is_online(box)
    wait_for(lambda: not relay.is_online(relay.machine("box")), what="machine to go offline")
    assert relay.status()[0]["online"] is False


def test_queued_commands_of_one_machine_are_not_leased_to_another(relay):
    relay.register("other", hostname="", os_name="", version="", roots=[])
    submit(relay, "box")
    assert relay.claim("other") == []
    assert [c.state for c in relay.commands(machine="box")] == [QUEUED]


def test_a_new_registration_ends_the_machines_held_poll_before_it_can_lease_anything(relay):
    # An agent restarted: its old poll is still held by the server, writing into a dead socket.
    got: list[list[Command]] = []
    stale = threading.Thread(target=lambda: got.append(relay.poll("box", 10)))
    stale.start()
    wait_for(blocked_on(relay.wakeups.condition("box")), what="the stale poll to be held")
    relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    stale.join(WOKEN_WITHIN_SECONDS)
    assert not stale.is_alive(), f"the stale poll was not ended within {WOKEN_WITHIN_SECONDS} s"
    assert got == [[]]
    command = submit(relay)
    assert [c.id for c in relay.poll("box", 0)] == [command.id]


def test_a_new_registration_releases_unconfirmed_leases_to_the_next_poll(relay):
    command = submit(relay)
    (stale,) = relay.claim("box")  # leased to an agent that then restarted
    relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    wait_for(lambda: now() > relay.find(command.id).lease_expires_at, what="the released lease to be in the past")
    (again,) = relay.poll("box", 0)
    assert again.id == command.id and again.lease_count == 2
    with pytest.raises(errors.Conflict):
        relay.start("box", command.id, stale.lease_count)
    assert relay.start("box", command.id, again.lease_count).state == RUNNING


def test_a_new_registration_leaves_running_commands_alone(relay):
    command = submit(relay)
    relay.start("box", relay.claim("box")[0].id, 1)
    relay.register("box", hostname="h", os_name="Linux", version="0.1.0", roots=["/tmp"])
    assert relay.claim("box") == [] and relay.find(command.id).state == RUNNING


def test_a_poll_whose_agent_hung_up_ends_without_leasing_and_the_machine_can_go_offline(relay):
    relay.registry.config = replace_config(relay.config, offline_after_seconds=0.2)
    command = submit(relay)
    assert relay.poll("box", 30, gone=lambda: True) == []
    assert relay.find(command.id).state == QUEUED
    wait_for(lambda: not relay.is_online(relay.machine("box")), what="the machine to go offline")
    assert [c.id for c in relay.poll("box", 0, gone=lambda: False)] == [command.id]


def test_a_machine_s_pending_and_ready_commands_are_found_without_reading_its_history(relay):
    """Every tool call counts the machine's pending commands and every poll leases ready ones:
    through the (machine, state) index, not through all the commands the machine ever ran."""
    indexes = {tuple(index.columns) for index in db.get_indexes("command")}
    assert ("machine", "state") in indexes
    if not isinstance(db.obj, SqliteDatabase):
        return  # PostgreSQL's planner picks by table statistics: the index is what is checked there
    ready = ("box", QUEUED, LEASED, QUEUED, now(), now())
    for text, params in ((COUNT_PENDING, ("box", QUEUED, LEASED, RUNNING)), (LEASE, (LEASED, now(), now(), *ready, 16, *ready))):
        steps = [row[-1] for row in db.execute_sql("EXPLAIN QUERY PLAN " + text, params)]
        plan = " | ".join(steps)
        assert "INDEX command_machine_state (machine=? AND state=?)" in plan, plan
        assert "SCAN" not in plan, plan
        # Each look at the table, the lease's inner SELECT too: through the (machine, state) index, not
        # the (machine, created_at) one that would give the order for free by walking the whole history.
        searches = [step for step in steps if step.startswith("SEARCH command")]
        assert searches and all("command_machine_state (machine=? AND state=?)" in step for step in searches), plan


def test_a_wait_given_the_submitted_record_still_sees_an_outcome_that_came_before_it(relay):
    command = submit(relay)
    (leased,) = relay.poll("box", 0)
    relay.start("box", leased.id, leased.lease_count)
    relay.complete("box", leased.id, SUCCEEDED, {"exit_code": 0}, exit_code=0)
    assert relay.wait(command.id, 0, known=command).state == SUCCEEDED

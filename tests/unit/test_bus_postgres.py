"""Two server processes' worth of parts on one PostgreSQL database, each with its own LISTEN/NOTIFY
bus: wake-ups, registrations and throttles cross between them, and a listener whose connection the
database drops reconnects and re-checks. The database's own 1 s re-check is pushed out of reach here,
so only the bus can have woken what these tests wait on."""

from __future__ import annotations

import threading

import pytest

from migrations import upgrade
from tests import database
from tests.harness import TOKEN, wait_for
from web import errors
from web.bus_postgres import PostgresBus
from web.config import Config
from web.models import LEASED, db, open_database
from web.relay import lease, relay as relay_module, wakeup
from web.relay.relay import Relay
from web.security.shared_throttle import SharedThrottle

pytestmark = pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")

FAR = 60.0  # longer than any wait below: a wait that ends was woken by the bus


@pytest.fixture
def url(monkeypatch):
    url = database.cluster().create_database()
    open_database(url)
    with db.connection_context():
        upgrade(db.obj)
    for module in (lease, relay_module, wakeup):
        monkeypatch.setattr(module, "RECHECK_SECONDS", FAR)
    return url


@pytest.fixture
def buses(url):
    started = [PostgresBus(url), PostgresBus(url)]
    for bus in started:
        bus.start()
        assert bus.wait_connected(10), "the listener connects"
    yield started
    for bus in started:
        bus.close()


def relays(url, buses) -> tuple[Relay, Relay]:
    config = Config(auth_token=TOKEN, database_url=url, poll_timeout_seconds=FAR)
    return Relay(config, buses[0]), Relay(config, buses[1])


def register_box(here: Relay, buses, **facts) -> None:
    """Register 'box' in the first process and wait until the second has heard of it: a registration
    ends the machine's polls everywhere, so a poll begun before the news arrives would end empty."""
    heard = threading.Event()
    buses[1].subscribe("registration", lambda name: heard.set())
    here.register("box", **{"hostname": "h", "os_name": "Linux", "version": "1", "roots": ["/tmp"], **facts})
    assert heard.wait(10), "the other process hears of the registration"


def test_a_notification_published_by_one_process_reaches_the_other_and_not_itself(buses):
    a, b = buses
    got: dict[str, list[str]] = {"a": [], "b": []}
    a.subscribe("command", got["a"].append)
    b.subscribe("command", got["b"].append)
    a.publish("command", "c0ffee")
    wait_for(lambda: got["b"] == ["c0ffee"], timeout=10, what="the other process hears the wake-up")
    assert got["a"] == [], "a process does not wake itself twice through the database"


def test_a_poll_held_in_one_process_is_woken_by_a_command_submitted_in_the_other(url, buses):
    here, there = relays(url, buses)
    register_box(here, buses)
    leased: list = []
    poller = threading.Thread(target=lambda: leased.extend(there.poll("box", FAR - 10)))
    poller.start()
    wait_for(lambda: there.held_polls() == 1, timeout=10, what="the poll is held")
    command = here.submit("box", "run_shell_command", {"command": "true"}, timeout_seconds=5)
    poller.join(20)
    assert not poller.is_alive(), "the held poll ended when the other process queued a command"
    assert [c.id for c in leased] == [command.id] and leased[0].state == LEASED


def test_a_tool_call_waiting_in_one_process_is_woken_by_the_result_posted_to_the_other(url, buses):
    here, there = relays(url, buses)
    here.register("box", hostname="h", os_name="Linux", version="1", roots=["/tmp"])
    command = here.submit("box", "read_file", {"path": "/tmp/x"}, timeout_seconds=5)
    answered: list = []
    waiter = threading.Thread(target=lambda: answered.append(here.wait(command.id, FAR - 10)))
    waiter.start()
    (leased,) = there.claim("box")
    there.start("box", leased.id, leased.lease_count)
    there.complete("box", leased.id, "succeeded", {"content": "hi"})
    waiter.join(20)
    assert not waiter.is_alive() and answered[0].state == "succeeded" and answered[0].result == {"content": "hi"}


def test_a_registration_in_one_process_ends_the_machines_poll_held_in_the_other(url, buses):
    here, there = relays(url, buses)
    register_box(here, buses)
    ended = threading.Event()
    poller = threading.Thread(target=lambda: (there.poll("box", FAR - 10), ended.set()))
    poller.start()
    wait_for(lambda: there.held_polls() == 1, timeout=10, what="the poll is held")
    here.register("box", hostname="h2", os_name="Linux", version="1", roots=["/tmp"])
    assert ended.wait(20), "the superseded agent's poll ended at once in the other process"


def test_a_listener_the_database_disconnects_reconnects_and_every_waiter_rechecks(url, buses):
    a, b = buses
    resyncs, heard = [], []
    b.subscribe("resync", resyncs.append)
    b.subscribe("machine", heard.append)
    before = len(resyncs)
    with db.connection_context():
        db.execute_sql("SELECT pg_terminate_backend(%s)", (b._connection.get_backend_pid(),))
    wait_for(lambda: len(resyncs) > before, timeout=20, what="the listener reconnected and told its waiters to re-read")
    a.publish("machine", "box")
    wait_for(lambda: heard == ["box"], timeout=10, what="wake-ups flow again after the reconnect")


def test_a_process_is_alive_while_its_listener_holds_its_lock(buses):
    a, b = buses
    assert a.alive(b.origin) and b.alive(a.origin)
    b.close()
    wait_for(lambda: not a.alive(b.origin), timeout=10, what="a closed process counts as gone")
    assert not a.alive("") and a.alive(a.origin)


def test_a_throttle_counts_one_limit_across_processes(url):
    here = SharedThrottle(3, 60, scope="auth")
    there = SharedThrottle(3, 60, scope="auth")
    elsewhere = SharedThrottle(3, 60, scope="registrations")
    for throttle in (here, there, here):
        throttle.hit("203.0.113.9")
    with pytest.raises(errors.TooManyRequests) as refused:
        there.hit("203.0.113.9")
    assert "retry in" in str(refused.value) and refused.value.retry_after_seconds >= 1
    there.hit("203.0.113.10")  # another address has its own count
    elsewhere.hit("203.0.113.9")  # and another scope
    for address in ("2001:db8::1", "2001:db8::2", "2001:db8::3"):
        here.hit(address)
    with pytest.raises(errors.TooManyRequests):
        there.hit("2001:db8::ffff")  # an IPv6 /64 counts as one address


def test_a_get_stream_held_by_a_process_that_died_is_taken_over_at_once(buses):
    from web.mcp.shared import SharedSessions

    here, there = SharedSessions(buses[0], 3600), SharedSessions(buses[1], 3600)
    session = here.open("owner", "http")
    assert here.get(session.id, "owner", "http").hold_stream()
    elsewhere = there.get(session.id, "owner", "http")
    assert not elsewhere.hold_stream(), "a second GET stream is refused while its holder lives"
    buses[0].close()  # the holding process dies (kill -9): its liveness lock goes with its connection
    wait_for(lambda: not buses[1].alive(buses[0].origin), timeout=10, what="the holder to be seen gone")
    assert elsewhere.hold_stream(), "taken over at once, not two keep-alives later"
    here.get(session.id, "owner", "http").release_stream()  # the old holder's late clean-up
    assert not here.get(session.id, "owner", "http").hold_stream(), "the new holder's claim survives it"

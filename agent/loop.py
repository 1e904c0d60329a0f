"""The agent's main loop: recover, register, long-poll, run commands concurrently, deliver results.

On start the agent ends the process groups a previous run left behind (agent/reaper.py), delivers the
results in its outbox, and tells the server which commands it still holds (`reconcile`), so the
server marks the others lost rather than waiting on them. It then polls for as many commands as it has
free slots, confirms each with `start` before running it (a command id it has already run is never run
again), streams its output, and keeps its result in the outbox until the server acknowledges it
(agent/delivery.py).

Network trouble is retried with exponential backoff and full jitter, capped; an outage is logged once
when it starts and once when it ends. No answer makes the agent spin: an empty answer that comes at once
(a draining or broken server, a proxy answering for it) is waited out with growing, jittered pauses,
and each poll asks for the server's hold less up to a fifth at random, so that agents reconnecting
together after a restart do not keep polling in step. The first SIGTERM/SIGINT stops polling and lets running commands
finish for a short while; a second one exits at once.
"""

from __future__ import annotations

import logging
import platform
import queue
import random
import signal
import threading
import time
from typing import Any

import requests

from agent import VERSION, escapes, operations, reaper
from agent.client import RelayClient, RelayError, classify
from agent.config import AgentConfig
from agent.delivery import INLINE_OUTPUT_BYTES, Delivery, OutputStreamer
from agent.interactive import InputPump, Interaction
from agent.masking import Secrets
from agent.outbox import StateDir
from agent.policy import PathPolicy
from agent.shell import OutputSpool

log = logging.getLogger("agent")
SHUTDOWN_GRACE_SECONDS = 10.0
# A poll cut after being held this long was a working connection dropped by a middlebox, not an outage.
DROPPED_POLL_MIN_SECONDS = 1.0
DROPPED_POLL_JITTER_SECONDS = 0.5
# Pauses between attempts to confirm a lease (about 8 s in all, well within a lease's 30 s).
START_RETRY_PAUSES = (0.25, 0.5, 1.0, 2.0, 4.0)


# A poll asks for the server's hold less up to this fraction, at random: after a server restart every
# agent reconnects in the same second, and equal holds would keep their polls ending together.
POLL_HOLD_JITTER = 0.2
# An empty answer sooner than this before the asked hold ended came "at once": see _empty_too_soon.
EARLY_ANSWER_SLACK_SECONDS = 1.0
EARLY_ANSWERS_LOGGED = 3  # consecutive empty answers that came at once before the agent says so


class Backoff:
    """Exponential delays with jitter, capped: uniform between `floor` x and all of the current step
    (base x 2^failures). Full jitter (floor 0) for network trouble; a floor keeps a minimum pause."""

    def __init__(self, cap: float, base: float = 0.5, floor: float = 0.0) -> None:
        self.cap, self.base, self.floor, self.failures = cap, base, floor, 0

    def next_delay(self) -> float:
        self.failures += 1
        step = min(self.cap, self.base * 2 ** min(self.failures, 16))
        return random.uniform(step * self.floor, step)

    def reset(self) -> None:
        self.failures = 0


def _empty_too_soon(elapsed: float, hold: float) -> bool:
    """Whether an answer with nothing new came "at once": well before the hold asked for ended, or in
    under a second whatever the hold. A server answers so when it drains for a restart (every agent
    it held would poll again in the same instant), when it is broken, or when a proxy answers for it;
    polling again at once would spin."""
    return elapsed < max(EARLY_ANSWER_SLACK_SECONDS, hold - EARLY_ANSWER_SLACK_SECONDS)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.policy = PathPolicy.for_config(config)
        facts = {
            "hostname": platform.node(),
            "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
            "version": VERSION,
            "roots": list(self.policy.roots),
        }
        # What no result may carry; the client adds each agent token the server issues.
        self.secrets = Secrets(config.secret_values)
        self.client = RelayClient(config, facts=facts, secrets=self.secrets)
        self.stopping = threading.Event()
        # Commands run on daemon worker threads, so that exiting never waits on a stuck command. A
        # worker is reused for the next command rather than a thread started for each one.
        self._slots = threading.BoundedSemaphore(config.max_concurrent_commands)
        self._work: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._idle_workers = 0  # workers waiting for work, less the commands already queued for them
        self._idle_lock = threading.Lock()
        self._running = 0
        self._running_lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._seen: dict[str, float] = {}
        self._seen_lock = threading.Lock()
        self._outage_since: float | None = None
        self.state = StateDir(config.state_dir)
        self.delivery = Delivery(self.client, self.state, config.output_chunk_bytes)
        self._outbox_waiting = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def handle(signum, _frame):
            if self.stopping.is_set():
                log.warning("second signal: exiting now")
                raise SystemExit(1)
            log.info("received %s: finishing running commands, then exiting", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> None:
        """Poll until stopped. The poll runs in its own thread so a signal is acted on at once."""
        log.info(
            "agent %s for machine %r -> %s (roots: %s)",
            VERSION, self.config.machine_name, self.config.relay_url, ", ".join(self.policy.roots),
        )
        reaped = reaper.reap(self.state, self.config.kill_grace_seconds)
        if reaped:
            log.warning("ended %d command(s) a previous run left running; the server will report them lost", len(reaped))
        self.state.drop_orphan_spools()
        poller = threading.Thread(target=self._poll_forever, name="poller", daemon=True)
        poller.start()
        threading.Thread(target=self._deliver_forever, name="outbox", daemon=True).start()
        while not self.stopping.wait(0.5):
            if not poller.is_alive():
                break
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        log.info("agent stopped (%d commands still running)", self._running)

    def _recover(self) -> None:
        """Deliver what the outbox holds, then tell the server which commands this agent still has."""
        self.delivery.flush()
        lost = self.client.reconcile([entry["id"] for entry in self.state.pending()])
        if lost:
            log.warning("the server marked %d command(s) of a previous run lost: outcome unknown", len(lost))

    def _free_slots(self) -> int:
        with self._running_lock:
            return self.config.max_concurrent_commands - self._running

    def _poll_forever(self) -> None:
        backoff = Backoff(self.config.backoff_max_seconds)
        # Empty answers that came at once (a draining server, a broken one, a proxy answering for it):
        # waited out with jitter (0.125-0.25 s the first time, doubling), so that no answer makes a fleet spin.
        too_soon = Backoff(self.config.backoff_max_seconds, base=0.125, floor=0.5)
        recovered = False
        while not self.stopping.is_set():
            polled_at = time.monotonic()
            self._slot_freed.clear()  # before counting: a command ending from here on wakes the wait below
            free = self._free_slots()
            if free <= 0:
                # Lease only what can start now; the rest stays queued until a command ends. (A fixed
                # 0.1 s nap here capped a busy machine at its slot count per 0.1 s: 160 commands/s.)
                self._slot_freed.wait(1.0)
                continue
            try:
                if not recovered:
                    self._recover()
                    recovered = True
                hold = self.client.poll_timeout_seconds * random.uniform(1 - POLL_HOLD_JITTER, 1)
                commands = self.client.poll(hold_seconds=hold, limit=free)
            except (requests.RequestException, RelayError) as error:
                if isinstance(error, RelayError) and not error.retryable and not error.needs_register:
                    log.error("server refused the agent: %s", error)
                kind, reason = classify(error)
                if kind == "dropped" and time.monotonic() - polled_at >= DROPPED_POLL_MIN_SECONDS:
                    # A held poll cut by a proxy or load balancer: the link works, poll again soon.
                    log.info("held poll was cut after %.0f s (%s); polling again", time.monotonic() - polled_at, reason)
                    # A restart cuts every agent's poll at once: a little jitter spreads their return.
                    self.stopping.wait(random.uniform(0, DROPPED_POLL_JITTER_SECONDS))
                    continue
                if kind in ("proxy_refused", "tls") and self._outage_since is None:
                    log.error("%s", reason)  # retrying will not help until the settings change
                self._outage(error)
                self.stopping.wait(backoff.next_delay())
                continue
            except Exception:  # a defect or an answer nothing here foresaw: never the end of the poller
                log.exception("unexpected error while polling; retrying with backoff")
                self.stopping.wait(backoff.next_delay())
                continue
            backoff.reset()
            self._recovered()
            started = 0
            for command in commands:
                if self._first_time(command["id"], command.get("lease", 0)):
                    self._slots.acquire()
                    with self._running_lock:
                        self._running += 1
                    self._dispatch(command)
                    started += 1
            if started or not _empty_too_soon(time.monotonic() - polled_at, hold):
                if too_soon.failures >= EARLY_ANSWERS_LOGGED:
                    log.info("polls are held again after %d answers that came at once", too_soon.failures)
                too_soon.reset()
                continue
            delay = too_soon.next_delay()
            if too_soon.failures == EARLY_ANSWERS_LOGGED:
                log.warning(
                    "the server answered %d polls at once with nothing new; polling again with growing pauses (now %.1f s)",
                    too_soon.failures, delay,
                )
            self.stopping.wait(delay)

    def _dispatch(self, command: dict[str, Any]) -> None:
        """Hand a command to an idle worker, or start one (at most one per slot)."""
        self._work.put(command)
        with self._idle_lock:
            if self._idle_workers > 0:
                self._idle_workers -= 1
                return
        threading.Thread(target=self._work_forever, name="command", daemon=True).start()

    def _work_forever(self) -> None:
        while True:
            self._execute(self._work.get())

    def _first_time(self, command_id: str, lease: int) -> bool:
        key = f"{command_id}:{lease}"
        with self._seen_lock:
            if key in self._seen:
                return False
            now = time.monotonic()
            self._seen[key] = now
            if len(self._seen) > 10000:
                for old in [k for k, t in self._seen.items() if now - t > 3600]:
                    del self._seen[old]
            return True

    def _outage(self, error: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("lost contact with %s: %s; retrying with backoff", self.config.relay_url, _describe(error))

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.info("reconnected to %s after %.0f s", self.config.relay_url, time.monotonic() - self._outage_since)
            self._outage_since = None

    # --- one command ----------------------------------------------------------------------------

    def _execute(self, command: dict[str, Any]) -> None:
        try:
            self._execute_one(command)
        except Exception:
            log.exception("command %s failed unexpectedly", command.get("id"))
        finally:
            with self._idle_lock:  # idle before the slot is free, so no extra worker is started for it
                self._idle_workers += 1
            with self._running_lock:
                self._running -= 1
            self._slots.release()
            self._slot_freed.set()

    def _confirm(self, command: dict[str, Any]) -> bool:
        """Confirm the lease before running, retrying a confirmation the network or a stopping server
        lost (a repeated confirmation of the same lease is accepted): given up, the command would wait
        for its lease to run out. A refusal (lease lost, cancelled) is final."""
        command_id = command["id"]
        for pause in (*START_RETRY_PAUSES, None):
            try:
                self.client.start(command)
                return True
            except RelayError as error:
                if not error.retryable or pause is None:
                    log.info("command %s not started: %s", command_id, error.message)
                    return False
                problem = error.message
            except requests.RequestException as error:
                if pause is None:  # unconfirmed: the lease runs out and the server hands it out again
                    log.warning("could not confirm command %s: %s", command_id, _describe(error))
                    return False
                problem = _describe(error)
            log.info("confirming command %s failed (%s); trying again", command_id[:8], problem)
            if self.stopping.wait(random.uniform(pause / 2, pause)):
                return False
        return False

    def _execute_one(self, command: dict[str, Any]) -> None:
        command_id, tool = command["id"], command["tool"]
        if self.state.holds(command_id):
            log.warning("command %s was already run by this agent; not running it again", command_id[:8])
            return
        if not self._confirm(command):
            return
        started = time.monotonic()
        options: dict[str, Any] = {}
        streamer = spool = interaction = None
        running = self.state.claim_running(command_id)  # the on-disk dedupe, before anything runs
        try:
            if tool == "run_shell_command":
                cancel = threading.Event()
                spool = OutputSpool(self.state.spool_paths(command_id), memory_bytes=INLINE_OUTPUT_BYTES)
                cookie = escapes.new_cookie()  # recorded, so that a restarted agent finds what escaped
                options = {
                    "spool": spool,
                    "cancel": cancel,
                    "cookie": cookie,
                    "on_start": lambda pgid: running.record_group(pgid, reaper.start_ticks(pgid), cookie),
                }
                if (command.get("arguments") or {}).get("stdin") == "pipe":
                    interaction = options["stdin"] = Interaction()
                    pump = InputPump(self.client, command_id, interaction)

                    def on_start(pgid: int, pump: InputPump = pump) -> None:
                        running.record_group(pgid, reaper.start_ticks(pgid))
                        pump.start()  # only once the process exists, the owner's policy having allowed it

                    options["on_start"] = on_start
                streamer = OutputStreamer(
                    self.delivery, command_id, cancel, self.config.progress_seconds, before_start=spool.spill, interaction=interaction
                )
                options["on_tick"] = streamer.tick
            elif tool == "search":
                # No output, but a heartbeat that brings news of a cancel_command (agent/search.py stops).
                cancel = threading.Event()
                streamer = OutputStreamer(self.delivery, command_id, cancel, self.config.progress_seconds)
                options = {"cancel": cancel, "on_tick": streamer.tick}
            try:
                body = operations.outcome(tool, command.get("arguments") or {}, float(command.get("timeout_seconds", 30)), self.config, self.policy, secrets=self.secrets, **options)
            finally:
                if interaction is not None:
                    interaction.end()
                if streamer is not None:
                    streamer.stop()
            spooled = spool is not None and not self.delivery.inline_output(command_id, body, spool.held())
            self.state.put(command_id, body, spooled=spooled, durable=False)  # hardened below if the post fails
        finally:
            running.close()
        self.state.finished_running(command_id)
        log.info("command %s (%s) %s in %.0f ms", command_id, tool, body["status"], (time.monotonic() - started) * 1000)
        if not self.delivery.deliver({"id": command_id, "body": body, "spooled": spooled}):
            self.state.harden(command_id)
            self._outbox_waiting.set()

    def _deliver_forever(self) -> None:
        """Retry undelivered results, with backoff, until the outbox is empty; repeats are safe."""
        backoff = Backoff(self.config.backoff_max_seconds, base=0.2)
        while not self.stopping.is_set():
            self._outbox_waiting.wait(5.0)
            if self.stopping.is_set():
                return
            self._outbox_waiting.clear()
            if self.delivery.flush():
                self._outbox_waiting.set()
                self.stopping.wait(backoff.next_delay())
            else:
                backoff.reset()


def _describe(error: Exception) -> str:
    """A one-line reason without URLs' credentials or response bodies."""
    return classify(error)[1]

"""Scale-out as a PaaS runs it: 3 instances from the Procfile's web line, each with WEB_CONCURRENCY=2, on
one PostgreSQL database, behind nginx doing round robin with no session affinity; 2 agents poll through
nginx (tests/cluster.py). One cluster serves the whole module; tests that kill or restart instances
leave every instance running again."""

from __future__ import annotations

import collections
import threading
import time

import anyio
import pytest
import requests

from tests import database, node_clients
from tests.cluster import Cluster, procfile
from tests.harness import process_alive, wait_for
from tests.mcp_client import open_session
from tests.node_clients import inspector_call_tool, inspector_list_tools, mcp_remote_cmd
from web.models import TERMINAL_STATES as TERMINAL

pytestmark = pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    # No kept-alive client connections to the balancer: its reload (taking an instance out of the
    # rotation) closes its old worker's idle ones, and a request a client sends on one at that moment
    # fails before any instance sees it. A platform's router changes its table without doing that.
    with Cluster(tmp_path_factory.mktemp("cluster"), instances=3, agents=2, web_concurrency=2, client_keepalive=False).start() as running:
        yield running


def _all_running(cluster: Cluster) -> None:
    for instance in cluster.instances:
        if not instance.alive():
            instance.start()


def test_each_instance_runs_the_procfile_web_line_with_two_workers(cluster):
    for instance in cluster.instances:
        assert instance.argv == ["/bin/sh", "-c", procfile()["web"]]
        assert instance.env["WEB_CONCURRENCY"] == "2" and instance.env["DATABASE_URL"].startswith("postgresql://")
        assert len(instance.worker_pids()) == 2
        assert "database already current" in instance.log(), "the release phase migrated before any instance started"
    assert len({instance.port for instance in cluster.instances}) == 3


def test_nginx_spreads_requests_over_every_instance_and_agents_poll_through_it(cluster):
    before = len(cluster.balancer.upstreams())
    for _ in range(30):
        assert requests.get(cluster.url + "/health", timeout=5).status_code == 200
    hits = collections.Counter(cluster.balancer.upstreams()[before:])
    assert set(hits) == {f"127.0.0.1:{instance.port}" for instance in cluster.instances}, hits
    assert max(hits.values()) - min(hits.values()) <= 3, f"round robin, no affinity: {hits}"
    for agent in cluster.agents:
        assert agent.env["RELAY_URL"] == cluster.url
    assert "POST /api/agent/register" in cluster.balancer.access_log.read_text()


def test_an_instance_killed_with_sigkill_leaves_nginx_serving_and_comes_back_on_its_port(cluster):
    victim = cluster.instances[0]
    pids = [victim.pid, *victim.worker_pids()]
    try:
        victim.kill()
        assert not any(process_alive(pid) for pid in pids), "kill -9 takes the master and its workers"
        answers = [requests.get(cluster.url + "/health", timeout=5).status_code for _ in range(12)]
        assert answers == [200] * 12, "nginx passes requests to the instances still up"
    finally:
        _all_running(cluster)
    assert victim.alive() and len(victim.worker_pids()) == 2 and victim.pid not in pids
    wait_for(lambda: f"127.0.0.1:{victim.port}" in _upstreams_of(cluster, 12), timeout=20, what="nginx to use the restarted instance")


def _upstreams_of(cluster: Cluster, requests_made: int) -> set[str]:
    before = len(cluster.balancer.upstreams())
    for _ in range(requests_made):
        requests.get(cluster.url + "/health", timeout=5)
    return set(cluster.balancer.upstreams()[before:])


def test_teardown_ends_every_process(tmp_path):
    small = Cluster(tmp_path, instances=1, agents=1, web_concurrency=2).start()
    pids = [small.instances[0].pid, *small.instances[0].worker_pids(), small.balancer.process.proc.pid,
            small.agents[0].process.proc.pid]
    small.stop()
    assert not any(process_alive(pid) for pid in pids)


# --- MCP through the load balancer: every transport, every client, a crash and a rolling deploy -----

TRANSPORTS = [
    ("sse", "/sse", {}),
    ("http", "/mcp", {"mode": "legacy", "handshake_version": "2025-11-25"}),
    ("http", "/mcp", {}),
]
TRANSPORT_IDS = ["sse", "mcp-2025-11-25", "mcp-default"]


def _burst(cluster: Cluster, transport: str, path: str, kwargs: dict, *, sessions: int, calls: int,
           command=lambda n, k: f"echo s{n}-{k}") -> tuple[list[str], list[str]]:
    """`sessions` sessions at once through nginx, `calls` calls each, alternating machines; the first
    line of every answer, and every failure (a session that could not open or a call that raised)."""
    answers: list[str] = []
    failures: list[str] = []
    machines = [agent.name for agent in cluster.agents]

    async def one(n: int) -> None:
        try:
            async with open_session(transport, cluster.url + path, cluster.token, **kwargs) as session:
                for k in range(calls):
                    arguments = {"command": command(n, k), "machine": machines[(n + k) % len(machines)]}
                    result = await session.call_tool("run_shell_command", arguments)
                    if result["is_error"]:
                        failures.append(f"session {n} call {k}: {result['text'][:300]}")
                    else:
                        answers.append(result["text"].split("\n", 1)[0])
        except Exception as error:  # counted, so one failure does not hide the others
            failures.append(f"session {n}: {type(error).__name__}: {error}"[:300])

    async def main() -> None:
        with anyio.fail_after(150):
            async with anyio.create_task_group() as group:
                for n in range(sessions):
                    group.start_soon(one, n)

    anyio.run(main)
    return answers, failures


@pytest.mark.parametrize("transport,path,kwargs", TRANSPORTS, ids=TRANSPORT_IDS)
def test_16_concurrent_sessions_through_nginx_are_all_answered_by_either_agent(cluster, transport, path, kwargs):
    answers, failures = _burst(cluster, transport, path, kwargs, sessions=16, calls=3)
    assert failures == []
    assert sorted(answers) == sorted(f"s{n}-{k}" for n in range(16) for k in range(3))
    machines = {row["machine"] for row in cluster.audit(limit=48) if row["tool"] == "run_shell_command"}
    assert machines == {agent.name for agent in cluster.agents}


@pytest.mark.parametrize("transport", ["sse", "http"])
def test_the_inspector_cli_works_through_nginx(cluster, transport):
    url = cluster.url + ("/sse" if transport == "sse" else "/mcp")
    for agent in cluster.agents:
        result = inspector_call_tool(url, "run_shell_command", {"command": f"echo inspector-{agent.name}", "machine": agent.name},
                                     transport=transport, headers=cluster.headers())
        assert result.get("isError") is not True, result
        assert result["content"][0]["text"].startswith(f"inspector-{agent.name}")
    assert len(inspector_list_tools(url, transport=transport, headers=cluster.headers())) >= 5


@pytest.mark.parametrize("path,transport", [("/mcp", "http-only"), ("/sse", "sse-only")], ids=["http-only", "sse-only"])
def test_mcp_remote_works_through_nginx(cluster, tmp_path, path, transport):
    argv = mcp_remote_cmd(cluster.url + path, transport=transport, headers=cluster.headers())
    env = node_clients.isolated_env(tmp_path, inherit=False)

    async def scenario() -> list[str]:
        texts = []
        with anyio.fail_after(90):
            async with open_session("stdio", argv=argv, env=env, cwd=str(tmp_path), mode="legacy",
                                    errlog=open(tmp_path / "mcp-remote.log", "w")) as session:
                for n in range(6):  # several requests: they spread over every instance
                    agent = cluster.agents[n % 2]
                    result = await session.call_tool("run_shell_command", {"command": f"echo remote-{n}", "machine": agent.name})
                    assert not result["is_error"], result["text"]
                    texts.append(result["text"].split("\n", 1)[0])
        return texts

    assert anyio.run(scenario) == [f"remote-{n}" for n in range(6)]


def _commands_with(cluster: Cluster, marker: str) -> list[tuple[str, str]]:
    """(id, state) of every command whose shell command mentions `marker`, read from the database."""
    import psycopg2

    with psycopg2.connect(cluster.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, state FROM command WHERE arguments::text LIKE %s", (f"%{marker}%",))
        return cursor.fetchall()


def _kept_answers(cluster: Cluster, marker: str) -> int:
    """How many answer streams record a command of the burst: each such call can be resumed anywhere."""
    import psycopg2

    with psycopg2.connect(cluster.database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM mcp_stream s JOIN command c ON s.request::text LIKE '%%' || c.id || '%%' "
            "WHERE c.arguments::text LIKE %s",
            (f"%{marker}%",),
        )
        return cursor.fetchone()[0]


def _runs(cluster: Cluster, log_name: str) -> collections.Counter:
    lines = []
    for agent in cluster.agents:
        path = agent.home / log_name
        if path.exists():
            lines += path.read_text().split()
    return collections.Counter(lines)


def test_an_instance_killed_during_a_burst_of_50_commands_runs_none_twice_and_every_caller_is_answered(cluster):
    """kill -9 of one instance (master and workers) while 50 calls wait on their commands over /mcp
    (handshake revision, resumable): every call gets its answer, from another instance if its own
    died (the official client resumes with Last-Event-ID there), every command ends terminal, and
    none ran twice."""
    marker = f"burst{time.monotonic_ns()}"
    started = threading.Event()
    victim = cluster.instances[1]

    def command(n: int, k: int) -> str:
        return f"echo {marker}-{n} >> ~/{marker}.log; sleep 1.5; echo done-{n}"

    def killer() -> None:
        if started.wait(60):
            victim.kill()

    def watch() -> None:  # every call waits on its command in a resumable answer, and some are running
        wait_for(lambda: _kept_answers(cluster, marker) >= 50 and sum(_runs(cluster, f"{marker}.log").values()) >= 10,
                 timeout=90, interval=0.05, what="the burst's commands queued and running")
        started.set()

    threads = [threading.Thread(target=killer), threading.Thread(target=watch, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        # A call whose lease died in the killed poll's answer is answered after the tool wait (25 s)
        # from wherever it resumes: give the client longer than that.
        answers, failures = _burst(cluster, "http", "/mcp",
                                   {"mode": "legacy", "handshake_version": "2025-11-25", "read_timeout": 90},
                                   sessions=50, calls=1, command=command)
    finally:
        threads[0].join(90)
        _all_running(cluster)
    assert started.is_set(), "the instance was killed while the burst was running"
    runs = _runs(cluster, f"{marker}.log")
    assert [line for line, count in runs.items() if count > 1] == [], "no command ran twice"
    wait_for(lambda: all(state in TERMINAL for _, state in _commands_with(cluster, marker)), timeout=90,
             what="every command of the burst to end")
    assert failures == [], f"{len(failures)} of 50 callers got no answer: {failures[:3]}"
    assert len(_commands_with(cluster, marker)) == 50
    # A call answers with the command's output, or, where the instance holding the agent's poll died
    # with the lease in its answer (the command then waits for its lease to expire), with the
    # command's id and how to follow it; either way the command then ran, once.
    for answer in answers:
        assert answer.startswith("done-") or ("get_command_output(command_id=" in answer and "Do not run it again" in answer), answer
    assert sorted(_runs(cluster, f"{marker}.log")) == sorted(f"{marker}-{n}" for n in range(50))
    assert all(state == "succeeded" for _, state in _commands_with(cluster, marker))


def test_a_rolling_restart_of_every_instance_fails_no_mcp_call_and_sse_clients_reconnect(cluster):
    """A deploy: each instance in turn is taken out of the load balancer's rotation, gets SIGTERM,
    exits and starts again, while 8 /mcp clients call in a loop and an SSE client opens a new session
    whenever its stream ends. Calls waiting on that instance finish there or resume elsewhere."""
    stop = threading.Event()
    results = collections.Counter()
    problems: list[str] = []
    sse_sessions = [0]

    async def mcp_client(n: int, kwargs: dict) -> None:
        k = 0
        try:
            async with open_session("http", cluster.url + "/mcp", cluster.token, **kwargs) as session:
                while not stop.is_set():
                    result = await session.call_tool("run_shell_command", {"command": f"echo r{n}-{k}", "machine": cluster.agents[n % 2].name})
                    if result["is_error"] or not result["text"].startswith(f"r{n}-{k}"):
                        problems.append(f"client {n} call {k}: {result['text'][:200]}")
                    results["mcp"] += 1
                    k += 1
        except Exception as error:
            problems.append(f"client {n} call {k}: {type(error).__name__}: {error}"[:300])

    async def sse_client() -> None:
        while not stop.is_set():
            try:
                async with open_session("sse", cluster.url + "/sse", cluster.token) as session:
                    sse_sessions[0] += 1
                    while not stop.is_set():
                        await session.call_tool("run_shell_command", {"command": "echo sse", "machine": cluster.agents[0].name})
                        results["sse"] += 1
            except Exception:
                results["sse reconnects"] += 1
                await anyio.sleep(0.2)

    async def main() -> None:
        modes = [{"mode": "legacy", "handshake_version": "2025-11-25"}, {}]
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(mcp_client, n, modes[n % 2])
            group.start_soon(sse_client)
            await anyio.to_thread.run_sync(restart_all)
            stop.set()

    def restart_all() -> None:
        wait_for(lambda: results["mcp"] >= 16, timeout=60, what="the load to run")
        for instance in cluster.instances:
            before = results["mcp"]
            cluster.balancer.route(instance.port, on=False)  # the router first, then SIGTERM
            code = instance.terminate(timeout=40)
            assert code == 0, f"{instance.name} exited {code} on SIGTERM:\n{instance.log()[-2000:]}"
            instance.start()
            cluster.balancer.route(instance.port, on=True)
            wait_for(lambda: results["mcp"] >= before + 8 or problems, timeout=60, what=f"calls answered after {instance.name} restarted")

    try:
        anyio.run(main)
    finally:
        _all_running(cluster)
    refused = [line for line in cluster.balancer.access_log.read_text().splitlines() if line.split()[2].startswith("5")]
    why = [line for line in cluster.balancer.error_log.read_text(errors="replace").splitlines() if "upstream" in line]
    assert problems == [], f"{problems} {refused} {why[-5:]}"
    assert results["mcp"] >= 40 and results["sse"] > 0
    assert sse_sessions[0] >= 2, "the SSE client lost its stream to a restart and opened a new session"

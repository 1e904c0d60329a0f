"""Relay benchmark: `run_shell_command "echo hi"` through the whole stack, client -> server -> agent -> client.

Starts the real stack on 127.0.0.1 (gunicorn + gevent server on a throwaway SQLite database, one real
agent with a throwaway HOME), then for each transport (`/sse`, and Streamable HTTP `/mcp` when the server
has it), each client and each concurrency runs a fixed number of calls, with a time cap per row. A row at
concurrency C opens C sessions, each keeping one call in flight.

Two clients, so that the server's figures are not hidden by the client's own cost:
  official  the `mcp` Python SDK client, as in the end-to-end tests (tests/mcp_client.py)
  raw       a bare JSON-RPC client on httpx2: one POST per call, answers read off the stream

The database starts with a history (`--history`, default 20 000 finished commands of the benchmark's
machine, with their audit rows and transition logs), as a relay has after months of use: a statement
that reads a machine's history instead of an index shows here, not only on a user's server.

Per row it prints p50/p95/p99 latency, calls/s, and the CPU each process spent per call (server worker,
agent including the shells it ran, this client process), and the server worker's RSS before and after.
The machine may be shared: every row is run `--repeat` times, interleaved, and the median is printed
with the spread of calls/s across repeats.

    .venv/bin/python scripts/bench.py                     # every transport the server has, both clients
    .venv/bin/python scripts/bench.py --calls 1000 --transport sse --client raw --repeat 5
    .venv/bin/python scripts/bench.py --database postgresql     # on a throwaway local PostgreSQL cluster
    .venv/bin/python scripts/bench.py --database postgresql --instances 3   # through nginx, as a PaaS runs it

`--baseline REV` runs every row also against commit REV's server and agent, interleaved, and prints this
checkout's figures over REV's: a change is judged against the commit before it in one run
(scripts/bench_baseline.py).

`--floor` runs every row also against the official `mcp` SDK's own server running the tools in-process
(scripts/bench_floor.py), interleaved, adds `read_file` rows at c=1, and prints the relay's figures over
the floor's with the targets.

`--idle N` measures idle scale instead (scripts/bench_idle.py): N/2 idle SSE streams and N/2 held agent
polls on one worker, a c=8 load without and with them held, the worker's RSS per idle client and the
event loop's worst pause from the loop-lag probe on /metrics.

Then, unless `--tool-files 0`, rows for the coding tools (scripts/bench_tools.py): `search` with and
without `rg` and `edit_file` on a tree of 10 000 files, p50 and p95.

`--instances N` runs the stack as a PaaS does (tests/cluster.py): N instances from the Procfile's web line,
each with `--web-concurrency` workers, on one database, behind nginx doing round robin; the client and
the agent both go through nginx. The server CPU column then sums every worker of every instance, and a
`proxy` column gives nginx's. With 2 instances or more it also measures the cross-instance wake-up
(scripts/bench_wakeup.py: a command submitted on one instance to a poll held on another, bypassing
nginx) and prints its p50/p95.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import httpx2
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_idle  # noqa: E402
import bench_tools  # noqa: E402
import bench_wakeup  # noqa: E402
import bench_baseline  # noqa: E402
import bench_layouts  # noqa: E402
from bench_floor import FloorServer, print_ratios  # noqa: E402
from bench_profile import Profiles  # noqa: E402
from bench_views import live_views  # noqa: E402
from tests import database  # noqa: E402
from tests.cluster import Cluster  # noqa: E402
from tests.harness import Agent, Server  # noqa: E402
from tests.mcp_client import open_session  # noqa: E402
from web.models import SUCCEEDED, Command, CommandEvent, ToolCall, open_database  # noqa: E402

TOOL, ARGUMENTS = "run_shell_command", {"command": "echo hi"}
# What a row calls: the tool's name and arguments (read_file's path is set once the agent's folder exists).
TOOLS: dict[str, tuple[str, dict[str, Any]]] = {"echo": (TOOL, ARGUMENTS), "read_file": ("read_file", {"path": ""})}
READ_FILE_TEXT = "hi from the bench\n" + "".join(f"line {n} of a small text file\n" for n in range(2, 41))
RAW_PROTOCOL_VERSION = "2025-11-25"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_SECONDS = 60.0  # a row's untimed first call per session


@dataclasses.dataclass
class BenchSession:
    """One open MCP session: `call()` makes one tool call; `protocol` is the revision it speaks."""

    call: Callable[[], Awaitable[str]]
    protocol: str


# --- processes ---------------------------------------------------------------------------------


def proc_field(pid: int, name: str) -> int:
    """A `kB` figure such as VmRSS or VmHWM from /proc/<pid>/status, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of the children it has waited for (the agent's shells)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def revision() -> str:
    """The commit benchmarked, marked when the work tree has changes, so runs can be compared."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no git checkout"
    return commit + (" with local changes" if dirty else "")


def gunicorn_worker(master_pid: int) -> int:
    """The pid of the single gunicorn worker (the master only supervises)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {len(children)}: set WEB_CONCURRENCY=1")
    return int(children[0])


def fill_history(database_url: str, machine: str, count: int) -> None:
    """`count` finished commands of `machine`, each with its audit row and four transition rows."""
    database = open_database(database_url)
    t = time.time() - 30 * 86400
    with database.connection_context():
        for first in range(0, count, 500):
            commands, events, calls = [], [], []
            for i in range(first, min(first + 500, count)):
                at, command_id = t + i, f"{i:032x}"
                commands.append({
                    "id": command_id, "machine": machine, "tool": TOOL, "arguments": ARGUMENTS, "state": SUCCEEDED,
                    "timeout_seconds": 30.0, "created_at": at, "leased_at": at, "lease_expires_at": at + 10,
                    "lease_count": 1, "started_at": at, "finished_at": at + 0.005, "start_by_at": at + 60,
                    "heartbeat_at": at, "exit_code": 0, "result": {"exit_code": 0, "stdout_bytes": 3, "stderr_bytes": 0},
                })
                events += [{"command_id": command_id, "at": at, "from_state": a, "to_state": b, "actor": "server"}
                           for a, b in (("", "queued"), ("queued", "leased"), ("leased", "running"), ("running", SUCCEEDED))]
                calls.append({"created_at": at, "finished_at": at + 0.01, "machine": machine, "tool": TOOL,
                              "arguments": ARGUMENTS, "status": SUCCEEDED, "exit_code": 0, "command_id": command_id})
            with database.atomic():
                Command.insert_many(commands).execute()
                CommandEvent.insert_many(events).execute()
                ToolCall.insert_many(calls).execute()
    database.close()


# --- clients -----------------------------------------------------------------------------------


def check_text(text: str, tool: str = "echo") -> str:
    if not (text.startswith("hi") if tool == "echo" else "hi from the bench" in text):
        raise RuntimeError(f"unexpected tool result: {text[:200]!r}")
    return text


@asynccontextmanager
async def official_session(transport: str, url: str, token: str, tool: str = "echo") -> AsyncIterator[BenchSession]:
    name, arguments = TOOLS[tool]
    async with open_session(transport, url, token) as session:

        async def call() -> str:
            result = await session.call_tool(name, arguments)
            if result["is_error"]:
                raise RuntimeError(f"tool error: {result['text'][:200]}")
            return check_text(result["text"], tool)

        yield BenchSession(call, session.protocol_version)


def tool_text(message: dict[str, Any], tool: str = "echo") -> str:
    if "error" in message:
        raise RuntimeError(f"JSON-RPC error: {message['error']}")
    result = message["result"]
    if result.get("isError"):
        raise RuntimeError(f"tool error: {result['content']}")
    return check_text(result["content"][0]["text"], tool)


def request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


INITIALIZE_PARAMS = {
    "protocolVersion": RAW_PROTOCOL_VERSION,
    "capabilities": {},
    "clientInfo": {"name": "code-remote-bench", "version": "0"},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


async def sse_events(response: httpx2.Response) -> AsyncIterator[tuple[str, str]]:
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


@asynccontextmanager
async def raw_sse_session(url: str, token: str, tool: str = "echo") -> AsyncIterator[BenchSession]:
    """GET /sse, then POST each request to the announced endpoint and await its answer on the stream."""
    headers = {"Authorization": f"Bearer {token}"}
    waiting: dict[int, Any] = {}
    ids = itertools.count(1)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)))
        stream = await stack.enter_async_context(http.stream("GET", url))
        stream.raise_for_status()
        events = sse_events(stream)
        kind, endpoint = await anext(events)
        assert kind == "endpoint", kind
        post_url = str(httpx2.URL(url).join(endpoint))

        async def read_answers() -> None:
            async for kind, data in events:
                if kind == "message":
                    message = json.loads(data)
                    slot = waiting.pop(message.get("id"), None)
                    if slot is not None:
                        slot[1] = message
                        slot[0].set()

        async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
            request_id = next(ids)
            slot = waiting[request_id] = [anyio.Event(), None]
            (await http.post(post_url, json=request(request_id, method, params))).raise_for_status()
            await slot[0].wait()
            return slot[1]

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_answers)
            await ask("initialize", INITIALIZE_PARAMS)
            (await http.post(post_url, json=INITIALIZED)).raise_for_status()

            async def call() -> str:
                name, arguments = TOOLS[tool]
                return tool_text(await ask("tools/call", {"name": name, "arguments": arguments}), tool)

            yield BenchSession(call, RAW_PROTOCOL_VERSION)
            tasks.cancel_scope.cancel()


def http_answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a Streamable HTTP POST, sent as JSON or as an SSE stream."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for block in response.text.split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
            if data:
                message = json.loads(data)
                if "id" in message:
                    return message
        raise RuntimeError("no JSON-RPC answer in the event stream")
    return response.json()


@asynccontextmanager
async def raw_http_session(url: str, token: str, tool: str = "echo") -> AsyncIterator[BenchSession]:
    """initialize (handshake revision), then one POST /mcp per call carrying the session id."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": RAW_PROTOCOL_VERSION,
    }
    ids = itertools.count(1)
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        response = await http.post(url, json=request(next(ids), "initialize", INITIALIZE_PARAMS))
        http_answer(response)
        http.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        (await http.post(url, json=INITIALIZED)).raise_for_status()

        async def call() -> str:
            name, arguments = TOOLS[tool]
            params = {"name": name, "arguments": arguments}
            return tool_text(http_answer(await http.post(url, json=request(next(ids), "tools/call", params))), tool)

        yield BenchSession(call, RAW_PROTOCOL_VERSION)
        await http.delete(url)


def session_factory(client: str, transport: str, base_url: str, token: str, tool: str = "echo"):
    url = base_url + ("/sse" if transport == "sse" else "/mcp")
    mcp_transport = "sse" if transport == "sse" else "http"
    if client == "official":
        return lambda: official_session(mcp_transport, url, token, tool)
    return lambda: (raw_sse_session if transport == "sse" else raw_http_session)(url, token, tool)


def has_streamable_http(server: Server) -> bool:
    """Whether this server answers `initialize` on POST /mcp (the session it opens is ended at once)."""
    headers = {**server.headers(), "Accept": "application/json, text/event-stream"}
    response = requests.post(server.url + "/mcp", json=request(1, "initialize", INITIALIZE_PARAMS), headers=headers, timeout=10)
    session_id = response.headers.get("mcp-session-id")
    if response.status_code != 200 or not session_id:
        return False
    requests.delete(server.url + "/mcp", headers={**headers, "Mcp-Session-Id": session_id}, timeout=10)
    return True


# --- one row -----------------------------------------------------------------------------------


async def run_row(open_one, concurrency: int, calls: int, time_cap: float, cpu: Callable[[], list[float]],
                  views=None) -> dict[str, Any]:
    """`calls` calls over `concurrency` sessions with one call in flight each; latencies in ms.

    `cpu()` reads the CPU seconds of each process, before and after the timed calls only (opening
    sessions and warming them up are left out). `views()`, if given, opens dashboard live views held
    for the whole row."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = [calls]
    seen: list[int] = []
    async with AsyncExitStack() as stack:
        try:
            if views is not None:
                seen = await stack.enter_async_context(views())
            sessions = [await stack.enter_async_context(open_one()) for _ in range(concurrency)]
            for session in sessions:  # warm each session up, untimed
                with anyio.fail_after(WARM_UP_SECONDS):
                    await session.call()
        except Exception as error:  # a row whose sessions cannot open is reported, and the run goes on
            while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                error = error.exceptions[0]
            return {"latencies": [], "errors": [f"opening {concurrency} sessions: {type(error).__name__}: {error}"],
                    "protocol": "-", "elapsed": 1.0, "capped": False, "cpu_ms": [0.0] * len(cpu()), "view_events": []}

        async def worker(call: Callable[[], Awaitable[str]]) -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                started = time.perf_counter()
                try:
                    await call()
                except Exception as error:  # counted and shown; the row goes on
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append((time.perf_counter() - started) * 1000)

        cpu_before, started = cpu(), time.perf_counter()
        with anyio.move_on_after(time_cap) as cap:
            async with anyio.create_task_group() as tasks:
                for session in sessions:
                    tasks.start_soon(worker, session.call)
        elapsed, cpu_after = time.perf_counter() - started, cpu()
        view_events = list(seen)
    done = max(1, len(latencies))
    if views is not None and latencies and not all(view_events):
        errors.append(f"a dashboard live view received no event while calls were relayed: {view_events}")
    return {
        "latencies": latencies,
        "errors": errors,
        "protocol": sessions[0].protocol,
        "elapsed": elapsed,
        "capped": cap.cancelled_caught,
        "cpu_ms": [(after - before) * 1000 / done for before, after in zip(cpu_before, cpu_after)],
        "view_events": view_events,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# What --idle sets on its server, printed with the figures: room for the idle clients on one worker, and
# /metrics (for the loop-lag probe). The per-address cap (MAX_CONNECTIONS_PER_ADDRESS) is left as it is.
IDLE_SETTINGS = ("WEB_CONCURRENCY", "WORKER_CONNECTIONS", "METRICS_TOKEN")


def idle_settings(server: Server, idle: int) -> None:
    """One worker with room for `idle` connections beyond the load, and the open-files limit raised
    (inherited by the server and the idle holder) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = idle + 2000
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise SystemExit(f"--idle {idle} needs {wanted} open files; the hard limit is {hard} (raise it: ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    server.env.update(WEB_CONCURRENCY="1", WORKER_CONNECTIONS=str(idle + 1000), METRICS_TOKEN="idle-bench-metrics-token-0123456789")


# --- the whole run -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per row (default 300)")
    parser.add_argument("--transport", choices=["auto", "sse", "http"], default="auto",
                        help="auto: /sse, and /mcp when the server has it (default)")
    parser.add_argument("--client", choices=["both", "official", "raw"], default="both")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated (default 1,8,32)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every row; medians are printed (default 3)")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per row before it is cut short")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                        help="postgresql: a throwaway local cluster, as CODE_REMOTE_TEST_DATABASE=postgresql gives the tests")
    parser.add_argument("--history", type=int, default=20000,
                        help="finished commands of the machine already in the database (default 20000)")
    parser.add_argument("--access-log", choices=["on", "off"], default="on", help="gunicorn's access log (on, as deployed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder with the server and agent logs")
    parser.add_argument("--instances", type=int, default=0,
                        help="N instances from the Procfile behind nginx round robin (default: one server, no proxy)")
    parser.add_argument("--web-concurrency", type=int, default=None,
                        help="gunicorn workers per instance with --instances (default 2 on PostgreSQL, 1 on SQLite)")
    parser.add_argument("--live-views", type=int, default=0,
                        help="also run every row with N dashboard live views open, interleaved (default 0: none)")
    parser.add_argument("--wakeups", type=int, default=30,
                        help="cross-instance wake-up samples with --instances 2 or more (default 30; 0 skips)")
    parser.add_argument("--tool-files", type=int, default=10000,
                        help="also time search (with and without rg) and edit_file on a tree of N files (default 10000; 0 skips)")
    parser.add_argument("--tool-calls", type=int, default=20, help="calls per tool row (default 20)")
    parser.add_argument("--profile", action="store_true",
                        help="record the server worker(s) and the agent with py-spy through the rows and print their top "
                             "functions (scripts/bench_profile.py)")
    parser.add_argument("--layouts", metavar="DB:N,...",
                        help="also run every row, interleaved, against these deployments of this checkout, e.g. "
                             "postgresql:1,postgresql:3 (scripts/bench_layouts.py), and print every pair's ratios")
    parser.add_argument("--baseline", metavar="REV",
                        help="also run every row, interleaved, against commit REV's server and agent (one server, "
                             "not with --instances; scripts/bench_baseline.py) and print this checkout's figures over its")
    parser.add_argument("--floor", action="store_true",
                        help="also run every row, interleaved, against the official mcp SDK's own server running the tools "
                             "in-process (scripts/bench_floor.py), add read_file rows at c=1, and print the ratios")
    parser.add_argument("--idle", type=int, default=0,
                        help="instead of the rows: N idle clients (N/2 SSE streams, N/2 held agent polls) on one worker, and "
                             "a c=8 load without and with them held, interleaved (scripts/bench_idle.py)")
    parser.add_argument("--idle-hold", type=float, default=30.0,
                        help="seconds the idle clients are held before the load row with them (default 30: every stream's "
                             "keep-alive and every poll's re-poll fall in it)")
    args = parser.parse_args()
    if args.idle and (args.instances or args.database != "sqlite"):
        parser.error("--idle measures one worker on SQLite, as the issue's target is set: drop --instances and --database")
    if args.web_concurrency is None:
        args.web_concurrency = 2 if args.database == "postgresql" else 1
    if args.instances and args.database == "sqlite" and args.instances * args.web_concurrency > 1:
        parser.error("SQLite serves one process: --instances 1 --web-concurrency 1, or --database postgresql")
    levels = [int(c) for c in args.concurrency.split(",")]
    clients = ["official", "raw"] if args.client == "both" else [args.client]

    workdir = Path(tempfile.mkdtemp(prefix="code-remote-bench-"))
    database.MODE = args.database
    server = agent = cluster = floor = profiles = None
    baseline = baseline_agent = None
    layouts = bench_layouts.parse(args.layouts or "")
    # Every server the run starts (the relay, a baseline, other layouts) gets the same settings.
    server_env = {"ACCESS_LOG": "1" if args.access_log == "on" else "0"}
    stacks: list = []
    if args.baseline and args.instances:
        parser.error("--baseline runs one server; leave out --instances")
    try:
        if args.instances:
            cluster = Cluster(workdir / "cluster", instances=args.instances, agents=0, web_concurrency=args.web_concurrency,
                              database_kind=args.database, env=server_env)
            cluster.start()
            target, database_url = cluster, cluster.database_url
        else:
            server = Server(workdir / "server", env=server_env)
            if args.idle:
                idle_settings(server, args.idle)
            server.start()
            target, database_url = server, server.database_url
        fill_history(database_url, "bench", args.history)
        agent = Agent(target, workdir / "agent", "bench").start()
        workers = ([pid for instance in cluster.instances for pid in instance.worker_pids()] if cluster
                   else [gunicorn_worker(server.process.proc.pid)])
        agent_pid = agent.process.proc.pid
        read_path = agent.scratch / "bench-read.txt"
        read_path.write_text(READ_FILE_TEXT)
        TOOLS["read_file"] = ("read_file", {"path": str(read_path)})
        if args.floor:
            floor = FloorServer(workdir / "floor.log").start()
        if args.baseline:
            code = workdir / "baseline-code"
            baseline_label = f"commit {bench_baseline.export(args.baseline, code)}"
            baseline = Server(workdir / "baseline", root=code, env=server_env)
            baseline.start()
            fill_history(baseline.database_url, "bench", args.history)
            # Its roots include this agent's scratch folder, so that both read the same file.
            baseline_agent = Agent(baseline, workdir / "baseline-agent", "bench", root=code,
                                   env={"ALLOWED_ROOTS": os.pathsep.join([str(agent.home), str(agent.scratch)])}).start()
            baseline_workers = [gunicorn_worker(baseline.process.proc.pid)]
        for n, (kind, count) in enumerate(layouts):
            stacks.append(bench_layouts.Stack(workdir / f"layout-{n}", kind, count, args.history, fill_history=fill_history,
                                              cpu_seconds=cpu_seconds, worker_of=gunicorn_worker,
                                              roots=os.pathsep.join([str(agent.home), str(agent.scratch)]), env=server_env))
        proxy_pid = cluster.balancer.process.proc.pid if cluster else None

        def cpu() -> list[float]:
            figures = [sum(cpu_seconds(w) for w in workers), cpu_seconds(agent_pid), time.process_time()]
            return figures + ([cpu_seconds(proxy_pid)] if proxy_pid else [])

        def rss(field: str) -> float:
            return sum(proc_field(w, field) for w in workers) / 1024

        transports = ["sse", "http"] if args.transport == "auto" else [args.transport]
        if args.transport == "auto" and not has_streamable_http(target):
            print("Streamable HTTP /mcp: not served by this server; SSE only")
            transports = ["sse"]
        view_counts = [0, args.live_views] if args.live_views else [0]
        tools = [("echo", n) for n in levels] + ([("read_file", 1)] if args.floor else [])
        primary = bench_layouts.name(args.database, args.instances or 1, behind_nginx=bool(cluster))
        targets = ["relay"] + (["floor"] if args.floor else []) + (["baseline"] if baseline else []) + [stack.name for stack in stacks]
        rows = [(t, c, n, v, tool, where) for t in transports for c in clients for tool, n in tools
                for v in (view_counts if tool == "echo" else [0]) for where in targets]
        rss_before = rss("VmRSS")
        load_before = os.getloadavg()
        layout = (f"{args.instances} instance(s) x {args.web_concurrency} worker(s) behind nginx round robin"
                  if cluster else f"one server, server worker pid {workers[0]}")
        print(f"code-remote {revision()}; {os.cpu_count()} CPUs, load {load_before[0]:.2f}; {args.calls} calls per row, "
              f"{args.repeat} repeats, {args.database} holding {args.history} finished commands, access log {args.access_log}; "
              f"{layout} (RSS {rss_before:.1f} MB), agent pid {agent_pid}")
        if floor:
            print(f"floor: {floor.describe()}; its CPU is in the server column")
        if baseline:
            print(f"baseline: {baseline_label}, server worker pid {baseline_workers[0]}, agent pid {baseline_agent.process.proc.pid}")
        for stack in stacks:
            print(f"layout {stack.name}: server worker pids {', '.join(map(str, stack.workers))}, agent pid {stack.agent.process.proc.pid}"
                  f"; 'relay' rows are {primary}")
        if args.idle:
            settings = ", ".join(f"{k}={'(set)' if k == 'METRICS_TOKEN' else server.env[k]}" for k in IDLE_SETTINGS)
            print(f"idle: server settings {settings}; "
                  f"open files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; load: {args.client if args.client != 'both' else 'raw'} "
                  f"client over {transports[0]}, c=8, {args.calls} calls per row; idle clients held {args.idle_hold:g} s before it")
            client = args.client if args.client != "both" else "raw"
            TOOLS["echo"] = (TOOL, {**ARGUMENTS, "machine": "bench"})  # the idle agents are machines too
            errors = bench_idle.measure(
                target=server, workdir=workdir, idle=args.idle, repeat=args.repeat, hold=args.idle_hold,
                metrics_token=server.env["METRICS_TOKEN"], worker_rss=lambda: rss("VmRSS"), percentile=percentile,
                row=lambda: anyio.run(run_row, session_factory(client, transports[0], server.url, server.token), 8, args.calls,
                                      args.time_cap, cpu),
            )
            if errors:
                print(f"{len(errors)} errors; first: {errors[0]}")
            return 1 if errors else 0

        def floor_cpu() -> list[float]:
            return [cpu_seconds(floor.pid), 0.0, time.process_time()] + ([0.0] if proxy_pid else [])

        def baseline_cpu() -> list[float]:
            return [sum(cpu_seconds(w) for w in baseline_workers), cpu_seconds(baseline_agent.process.proc.pid), time.process_time()]

        serving_by = {"relay": (target, cpu), "floor": (floor, floor_cpu), "baseline": (baseline, baseline_cpu),
                      **{stack.name: (stack, stack.cpu) for stack in stacks}}

        results: dict[tuple, list[dict[str, Any]]] = {row: [] for row in rows}
        if args.profile:
            profiles = Profiles(workdir, {**{f"server worker {pid}": pid for pid in workers}, f"agent {agent_pid}": agent_pid})
            profiles.start()
        for repeat in range(args.repeat):
            for row in rows:
                transport, client, concurrency, views, tool, where = row
                opener = (lambda v=views: live_views(target.url, target.token, v)) if views else None
                serving, serving_cpu = serving_by[where]
                outcome = anyio.run(run_row, session_factory(client, transport, serving.url, serving.token, tool),
                                    concurrency, args.calls, args.time_cap, serving_cpu, opener)
                results[row].append(outcome)
                print(f"  run {repeat + 1} {transport:4} {client:8} {tool:9} {where:5} c={concurrency:<3} views={views} "
                      f"p50 {percentile(outcome['latencies'], 0.5):6.1f} ms  "
                      f"{len(outcome['latencies']) / outcome['elapsed']:6.0f} calls/s"
                      + (f"  {len(outcome['errors'])} errors, first: {outcome['errors'][0][:160]}" if outcome["errors"] else "")
                      + ("  (time cap hit)" if outcome["capped"] else ""), flush=True)
        if profiles:
            profiles.stop()
        print_table(results, proxy=bool(proxy_pid), labels={"relay": primary} if stacks else None)
        if args.live_views:
            print_views(results)
        if floor:
            print_ratios(results, percentile)
        if baseline:
            bench_baseline.print_ratios(results, percentile, baseline_label)
        if stacks:
            renamed = {(*key[:5], primary if key[5] == "relay" else key[5]): runs for key, runs in results.items()}
            bench_layouts.print_ratios(renamed, percentile, [primary] + [stack.name for stack in stacks])
        if profiles:
            profiles.print_summary()
        print(f"\nserver worker RSS: {rss_before:.1f} MB before, {rss('VmRSS'):.1f} MB after "
              f"(peak {rss('VmHWM'):.1f} MB{f', summed over {len(workers)} workers' if len(workers) > 1 else ''}); "
              f"load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}")
        errors = [e for runs in results.values() for run in runs for e in run["errors"]]
        if args.tool_files > 0:
            try:
                bench_tools.print_rows(bench_tools.measure(target, workdir, args.tool_files, args.tool_calls), args.tool_files, percentile)
            except Exception as error:  # reported and counted; the table above stands
                errors.append(f"tool rows: {type(error).__name__}: {error}")
                print(f"tool rows failed: {errors[-1]}")
        clusters = [c for c in [cluster] + [stack.cluster for stack in stacks] if c is not None and len(c.instances) >= 2]
        for measured in clusters[:1] if args.wakeups > 0 else []:
            a, b = measured.instances[0], measured.instances[1]
            try:
                wakeups = bench_wakeup.measure(a.url, b.url, measured.token, args.wakeups)
                print(f"cross-instance wake-up (submit on {a.name} to poll answered on {b.name}, {len(wakeups)} samples): "
                      f"p50 {percentile(wakeups, 0.5):.1f} ms, p95 {percentile(wakeups, 0.95):.1f} ms, "
                      f"max {max(wakeups):.1f} ms")
            except Exception as error:  # reported and counted; the table above stands
                errors.append(f"cross-instance wake-up: {type(error).__name__}: {error}")
                print(f"cross-instance wake-up (submit on {a.name} to poll answered on {b.name}): failed: {errors[-1]}")
        if errors:
            print(f"{len(errors)} calls failed; first: {errors[0]}")
        return 1 if errors else 0
    finally:
        if profiles:
            profiles.stop()
        for part in (agent, server, cluster, floor, baseline_agent, baseline, *stacks):
            if part:
                part.stop()
        database.shutdown()
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


SERVED_BY = {"floor": "SDK floor", "relay": "relay", "baseline": "baseline"}


def print_table(results: dict[tuple, list[dict[str, Any]]], *, proxy: bool = False, labels: dict[str, str] | None = None) -> None:
    """Medians over the repeats; calls/s also with its min-max, the measure of how noisy the run was."""
    columns = 4 if proxy else 3
    print(f"\n{'':48}{'latency ms':^20}  {'calls/s':^19}  {'CPU ms per call':^{22 + 7 * (columns - 3)}}")
    print(f"{'transport':9} {'client':8} {'revision':10} {'conc':>4} {'views':>5} {'calls':>5}  {'p50':>6} {'p95':>6} {'p99':>6}  "
          f"{'median':>7} {'min-max':>11}  {'server':>7} {'agent':>6} {'client':>7}" + (f" {'proxy':>6}" if proxy else "")
          + "  errors  tool      served by")
    for (transport, client, concurrency, views, tool, where), runs in results.items():
        def median(figure: Callable[[dict[str, Any]], float]) -> float:
            return statistics.median(figure(run) for run in runs)

        rates = [len(run["latencies"]) / run["elapsed"] for run in runs]
        cpu = [median(lambda run, i=i: run["cpu_ms"][i]) for i in range(columns)]
        latency = [median(lambda run, f=f: percentile(run["latencies"], f)) for f in (0.50, 0.95, 0.99)]
        print(
            f"{transport:9} {client:8} {runs[0]['protocol']:10} {concurrency:4} {views:5} "
            f"{int(median(lambda run: len(run['latencies']))):5}  "
            f"{latency[0]:6.1f} {latency[1]:6.1f} {latency[2]:6.1f}  "
            f"{statistics.median(rates):7.0f} {f'{min(rates):.0f}-{max(rates):.0f}':>11}  "
            f"{cpu[0]:7.2f} {cpu[1]:6.2f} {cpu[2]:7.2f}" + (f" {cpu[3]:6.2f}" if proxy else "")
            + f"  {sum(len(run['errors']) for run in runs):6}  {tool:9} {(labels or {}).get(where) or SERVED_BY.get(where, where)}"
        )


def print_views(results: dict[tuple, list[dict[str, Any]]]) -> None:
    """Per row, calls/s with the live views open over calls/s without, run by run (the same run's
    figures, interleaved), and the events each view received per relayed call."""
    print("\nwith dashboard live views open (ratio of calls/s to the same row without views, per repeat):")
    for (transport, client, concurrency, views, tool, where), runs in results.items():
        if not views:
            continue
        base = results[(transport, client, concurrency, 0, tool, where)]
        ratios = [(len(w["latencies"]) / w["elapsed"]) / max(1e-9, len(b["latencies"]) / b["elapsed"]) for w, b in zip(runs, base)]
        per_call = [sum(run["view_events"]) / max(1, len(run["latencies"])) / views for run in runs]
        print(f"  {transport:4} {client:8} c={concurrency:<3} {views} views: ratio median {statistics.median(ratios):.2f} "
              f"(runs {', '.join(f'{r:.2f}' for r in ratios)}); {statistics.median(per_call):.1f} events per call per view")


if __name__ == "__main__":
    sys.exit(main())

"""The floor for scripts/bench.py `--floor`: the official `mcp` SDK's own server running the same tools
in-process, with no relay, no agent and no database.

Run as a script it serves, on one port, SSE (`GET /sse` + `POST /messages/`) and Streamable HTTP
(`/mcp`) from one `mcp.server.mcpserver.MCPServer` under uvicorn, with two tools:

  run_shell_command(command)   `/bin/sh -c command` as a subprocess, answering its stdout
  read_file(path)              the file's text

A relayed call can at best match this: the same client, the same protocol, the tool's own work, and
nothing between. `FloorServer` starts it as a child process for the bench; `print_ratios` prints the
relay's figures over the floor's, run by run (the rows are interleaved, so both met the same load).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

# (figure, concurrency, tool, what the issue asks of relay / floor): the targets printed next to the ratios.
TARGETS = {("p50", 1, "echo"): ("<=", 1.5), ("calls/s", 32, "echo"): (">=", 1.0), ("p50", 1, "read_file"): ("<=", 2.0)}


def build_app():
    """The Starlette app: the MCPServer's Streamable HTTP app (whose lifespan runs its session
    manager) with the same server's SSE routes added."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("code-remote-floor")

    @server.tool()
    async def run_shell_command(command: str) -> str:
        """Run a shell command and answer its output."""
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        return stdout.decode(errors="replace") + stderr.decode(errors="replace")

    @server.tool()
    def read_file(path: str) -> str:
        """Read a text file."""
        return Path(path).read_text(errors="replace")

    app = server.streamable_http_app(streamable_http_path="/mcp")
    app.router.routes.extend(server.sse_app(sse_path="/sse", message_path="/messages/").routes)
    return app


class FloorServer:
    """The floor as a child process on a free loopback port; `pid` for its CPU figures."""

    def __init__(self, log_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "floor-needs-no-token"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def describe(self) -> str:
        return f"the official mcp {version('mcp')} MCPServer under uvicorn {version('uvicorn')}, tools in-process, pid {self.pid}"

    def start(self) -> FloorServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, __file__, "--port", str(self.port)], cwd=ROOT,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the floor server exited ({self.process.returncode}); see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the floor server did not listen on {self.port} within 30 s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def figure_ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], figure: str,
                  percentile: Callable[[list[float], float], float]) -> tuple[float, float, list[float]]:
    """For two targets' runs of one row, repeat by repeat: the median `figure` ("p50" or "calls/s") of
    each, and the per-repeat ratios ours/theirs (a repeat where theirs is 0 left out). The rows are
    interleaved, so the repeats with the same index met the same load."""
    def value(run: dict[str, Any]) -> float:
        return percentile(run["latencies"], 0.5) if figure == "p50" else len(run["latencies"]) / run["elapsed"]

    a, b = [value(r) for r in ours], [value(r) for r in theirs]
    return statistics.median(a), statistics.median(b), [x / y for x, y in zip(a, b) if y > 0]


def print_ratios(results: dict[tuple, list[dict[str, Any]]], percentile: Callable[[list[float], float], float]) -> None:
    """Relay over floor for each row the floor also ran: p50 (lower is better) and calls/s (higher is
    better), the median of the per-repeat ratios, with both medians and the issue's target if any."""
    print("\nagainst the floor (Code Remote / the SDK's in-process server; median of per-repeat ratios):")
    for (transport, client, concurrency, views, tool, target), runs in results.items():
        floor = results.get((transport, client, concurrency, views, tool, "floor"))
        if target != "relay" or views or not floor:
            continue
        for figure in ("p50", "calls/s"):
            ours, theirs, ratios = figure_ratios(runs, floor, figure, percentile)
            if not ratios:
                continue
            ratio = statistics.median(ratios)
            goal = TARGETS.get((figure, concurrency, tool))
            verdict = ""
            if goal:
                met = ratio <= goal[1] if goal[0] == "<=" else ratio >= goal[1]
                verdict = f"  target {goal[0]} {goal[1]:g}: {'met' if met else 'NOT met'}"
            unit = " ms" if figure == "p50" else ""
            print(f"  ratio {transport:4} {client:8} {tool:9} c={concurrency:<3} {figure:7} "
                  f"{ours:7.1f}{unit} vs {theirs:7.1f}{unit}: {ratio:5.2f}x"
                  f" (runs {', '.join(f'{r:.2f}' for r in ratios)}){verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the bench's floor: the SDK's own server, tools in-process")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""Cross-instance wake-up: how long a command submitted on instance A takes to reach a poll held on instance B.

Driven with plain HTTP requests straight at the two instances, bypassing the load balancer, so each
step is known to land where it should:

  1. a probe machine registers on B (`POST /api/agent/register`) and holds a poll there
     (`GET /api/agent/poll?wait=25`);
  2. after `settle` seconds (the poll has reached its wait by then: on loopback it takes a few ms),
     an MCP client on A calls `run_shell_command` for the probe (Streamable HTTP, handshake revision);
  3. the time from sending that call to B's poll answering with the command is one sample;
  4. the probe starts the command and posts its result on B, and A's tool call must answer with it.

With wake-ups shared between processes this is a notification's round trip; with wake-ups in each
process's memory only, B finds the command at its next database re-check (up to a second).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from typing import Any

import requests

PROTOCOL = "2025-11-25"
PROBE = "wake-probe"
MARK = "woken-on-b"


def _answer(response: requests.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a Streamable HTTP POST, sent as JSON or as an event stream."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for block in response.text.split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
            if data and "id" in json.loads(data):
                return json.loads(data)
        raise RuntimeError("no JSON-RPC answer in the event stream")
    return response.json()


class McpOn:
    """A Streamable HTTP session (handshake revision) on one instance."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.ids = url + "/mcp", itertools.count(1)
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                                  "MCP-Protocol-Version": PROTOCOL})
        params = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "code-remote-bench", "version": "0"}}
        response = self.http.post(self.url, json=self._request("initialize", params), timeout=30)
        _answer(response)
        self.http.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=30).raise_for_status()

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}

    def call(self, command: str) -> str:
        params = {"name": "run_shell_command", "arguments": {"command": command, "machine": PROBE}}
        message = _answer(self.http.post(self.url, json=self._request("tools/call", params), timeout=60))
        if "error" in message:
            raise RuntimeError(f"JSON-RPC error: {message['error']}")
        return message["result"]["content"][0]["text"]

    def close(self) -> None:
        self.http.delete(self.url, timeout=10)
        self.http.close()


class ProbeOn:
    """A stand-in agent on one instance: its own registration, polls and results."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.http = url + "/api/agent", requests.Session()
        response = self.http.post(self.url + "/register", json={"machine": PROBE}, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {response.json()['token']}"

    def poll(self) -> list[dict[str, Any]]:
        response = self.http.get(self.url + "/poll", params={"wait": 25, "limit": 1}, timeout=40)
        response.raise_for_status()
        return response.json()["commands"] if response.status_code == 200 else []

    def finish(self, command: dict[str, Any], stdout: bytes) -> None:
        self.http.post(f"{self.url}/commands/{command['id']}/start", json={"lease": command["lease"]}, timeout=30).raise_for_status()
        body = {"status": "succeeded", "exit_code": 0, "result": {"exit_code": 0},
                "output": [{"stream": "stdout", "offset": 0, "data": base64.b64encode(stdout).decode()}]}
        self.http.post(f"{self.url}/commands/{command['id']}/result", json=body, timeout=30).raise_for_status()


def measure(a_url: str, b_url: str, token: str, samples: int, *, settle: float = 0.1) -> list[float]:
    """`samples` wake-up times in ms, submit on `a_url` to poll answered on `b_url`."""
    probe, client = ProbeOn(b_url, token), McpOn(a_url, token)
    times: list[float] = []
    try:
        for n in range(samples):
            polled: dict[str, Any] = {}

            def hold() -> None:
                try:
                    polled["commands"] = probe.poll()
                    polled["at"] = time.perf_counter()
                except Exception as error:  # reported by the main thread
                    polled["error"] = error

            holder = threading.Thread(target=hold, daemon=True)
            holder.start()
            holder.join(settle)  # the poll reaches its wait within a few ms on loopback
            if not holder.is_alive():
                raise RuntimeError(f"the probe's poll on B ended before anything was submitted: {polled}")
            answer: dict[str, Any] = {}
            caller = threading.Thread(target=lambda: answer.update(text=client.call(f"echo {MARK}-{n}")), daemon=True)
            submitted = time.perf_counter()
            caller.start()
            holder.join(40)
            if polled.get("error") or not polled.get("commands"):
                raise RuntimeError(f"B's poll did not get the command submitted on A: {polled}")
            times.append((polled["at"] - submitted) * 1000)
            probe.finish(polled["commands"][0], f"{MARK}-{n}\n".encode())
            caller.join(60)
            if f"{MARK}-{n}" not in answer.get("text", ""):
                raise RuntimeError(f"A's tool call did not answer with B's result: {answer}")
    finally:
        client.close()
    return times

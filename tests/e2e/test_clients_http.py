"""Real MCP clients drive all five tools through /mcp and /sse against the real server and agent:
the official Python client in every negotiation mode, the MCP Inspector CLI and mcp-remote."""

from __future__ import annotations

import json

import anyio
import pytest

from tests import node_clients
from tests.mcp_client import McpSession, open_session
from tests.node_clients import inspector_call_tool, inspector_list_tools, mcp_remote_cmd
from tests.stream_cutter import StreamCutter

FIVE_TOOLS = {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"}


@pytest.fixture(scope="module")
def node_ready():
    try:
        node_clients.node_modules_dir()
    except node_clients.NodeClientsMissing as error:
        pytest.skip(str(error))


async def drive_five_tools(s: McpSession, agent, tag: str) -> None:
    """Every tool once, as a model would call them, checking what comes back."""
    assert FIVE_TOOLS <= set(await s.tool_names())
    status = json.loads((await s.call_tool("check_agent_status", {}))["text"])
    assert any(m["name"] == "box" and m["online"] for m in status["machines"])
    shell = await s.call_tool("run_shell_command", {"command": f"echo {tag}; exit 3"})
    assert not shell["is_error"] and shell["text"].startswith(tag) and "[exit code 3]" in shell["text"]
    target = str(agent.home / f"{tag}.txt")
    written = await s.call_tool("write_file", {"path": target, "content": f"héllo {tag}\n"})
    assert not written["is_error"], written["text"]
    assert (await s.call_tool("read_file", {"path": target}))["text"] == f"héllo {tag}\n"
    listing = await s.call_tool("list_directory", {"path": str(agent.home)})
    assert f"{tag}.txt" in listing["text"]


def run_with_official_client(url: str, token: str, agent, tag: str, **kwargs) -> str:
    async def scenario() -> str:
        with anyio.fail_after(60):
            async with open_session(url=url, token=token, **kwargs) as s:
                await drive_five_tools(s, agent, tag)
                return s.protocol_version

    return anyio.run(scenario)


def test_official_client_default_mode_speaks_2026_07_28_over_streamable_http(live_server, live_agent):
    version = run_with_official_client(live_server.url + "/mcp", live_server.token, live_agent, "modern", transport="http")
    assert version == "2026-07-28"
    rows = [r for r in live_server.audit() if r["arguments"].get("command") == "echo modern; exit 3"]
    assert rows and rows[0]["transport"] == "http" and rows[0]["exit_code"] == 3


@pytest.mark.parametrize("revision", ["2025-03-26", "2025-06-18", "2025-11-25"])
def test_official_client_pinned_to_a_handshake_revision_uses_a_session(live_server, live_agent, revision):
    tag = "legacy" + revision.replace("-", "")
    version = run_with_official_client(
        live_server.url + "/mcp", live_server.token, live_agent, tag, transport="http", mode="legacy", handshake_version=revision
    )
    assert version == revision
    rows = [r for r in live_server.audit() if r["arguments"].get("command") == f"echo {tag}; exit 3"]
    assert rows and rows[0]["transport"] == "http" and rows[0]["session_id"]


def test_official_client_over_sse_still_works(live_server, live_agent):
    assert run_with_official_client(live_server.url + "/sse", live_server.token, live_agent, "oldsse", transport="sse") == "2025-11-25"


@pytest.mark.parametrize("transport,path", [("http", "/mcp"), ("sse", "/sse")])
def test_inspector_cli_drives_the_tools(live_server, live_agent, node_ready, transport, path):
    url = live_server.url + path
    headers = live_server.headers()
    assert FIVE_TOOLS <= {t["name"] for t in inspector_list_tools(url, transport=transport, headers=headers)}
    target = str(live_agent.home / f"inspector-{transport}.txt")
    calls = [
        ("check_agent_status", {}),
        ("run_shell_command", {"command": f"echo inspector-{transport}"}),
        ("write_file", {"path": target, "content": "from the inspector\n"}),
        ("read_file", {"path": target}),
        ("list_directory", {"path": str(live_agent.home)}),
    ]
    texts = {}
    for name, arguments in calls:
        result = inspector_call_tool(url, name, arguments, transport=transport, headers=headers)
        assert result.get("isError") is not True, result
        texts[name] = result["content"][0]["text"]
    assert texts["run_shell_command"].startswith(f"inspector-{transport}")
    assert texts["read_file"] == "from the inspector\n"
    assert f"inspector-{transport}.txt" in texts["list_directory"]


@pytest.mark.parametrize(
    "path,transport",
    [("/mcp", "http-only"), ("/sse", "sse-only"), ("/sse", None)],
    ids=["http-only", "sse-only", "sse-url-default-falls-back"],
)
def test_mcp_remote_drives_the_tools(live_server, live_agent, node_ready, tmp_path, path, transport):
    argv = mcp_remote_cmd(live_server.url + path, transport=transport, headers=live_server.headers())
    env = node_clients.isolated_env(tmp_path, inherit=False)
    tag = f"remote{(transport or 'default').replace('-', '')}"

    async def scenario():
        with anyio.fail_after(90):
            async with open_session("stdio", argv=argv, env=env, cwd=str(tmp_path), mode="legacy", errlog=open(tmp_path / "mcp-remote.log", "w")) as s:
                await drive_five_tools(s, live_agent, tag)

    anyio.run(scenario)
    rows = [r for r in live_server.audit() if r["arguments"].get("command") == f"echo {tag}; exit 3"]
    assert rows and rows[0]["transport"] == ("http" if path == "/mcp" else "sse")


def test_official_client_resumes_a_long_call_whose_stream_was_cut(live_server, live_agent):
    """A tool call's answer stream is cut mid-call (after its priming event): the official client
    reconnects with Last-Event-ID, gets the result on the resumed stream, and the command ran once."""
    marker = f"resumed-{live_agent.name}-{id(live_server)}"
    cutter = StreamCutter(live_server.port)

    async def scenario() -> dict:
        with anyio.fail_after(60):
            async with open_session("http", cutter.url + "/mcp", live_server.token, mode="legacy", handshake_version="2025-11-25") as s:
                assert s.protocol_version == "2025-11-25"
                cutter.cut_after(b"id: ")
                return await s.call_tool("run_shell_command", {"command": f"sleep 2; echo {marker}"})

    try:
        result = anyio.run(scenario)
    finally:
        cutter.close()
    assert cutter.cuts == 1
    assert not result["is_error"] and result["text"].startswith(marker), result
    assert "resumes answer stream" in live_server.process.log()
    rows = [r for r in live_server.audit() if marker in r["arguments"].get("command", "")]
    assert [(r["status"], r["exit_code"]) for r in rows] == [("succeeded", 0)]
